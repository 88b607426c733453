from django.contrib import admin

from moderation.models import ModerationDecision


@admin.register(ModerationDecision)
class ModerationDecisionAdmin(admin.ModelAdmin):
    list_display = ("job", "stage", "action", "policy", "created_at")
    list_filter = ("stage", "action", "policy")
    search_fields = ("job__public_id",)
    readonly_fields = ("job", "stage", "action", "policy", "reasons", "created_at")

    def has_add_permission(self, request) -> bool:
        return False  # written by the state machine only
