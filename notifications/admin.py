from django.contrib import admin

from notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("user", "seq", "event", "job", "created_at")
    list_filter = ("event",)
    search_fields = ("user__username",)
    readonly_fields = ("user", "seq", "event", "job", "payload", "created_at")

    def has_add_permission(self, request) -> bool:
        return False  # written by the state machine only
