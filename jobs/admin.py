from __future__ import annotations

from django.contrib import admin, messages

from jobs import services
from jobs.models import Account, ApiKey, Job, JobEvent, Runner
from moderation.models import ModerationDecision


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "from_state", "to_state", "reason", "actor", "attempt")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ModerationDecisionInline(admin.TabularInline):
    model = ModerationDecision
    extra = 0
    can_delete = False
    fields = ("created_at", "stage", "verdict", "policy", "reasons")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "public_id",
        "user",
        "state",
        "model",
        "size",
        "seconds",
        "attempt",
        "progress",
        "created_at",
    )
    list_filter = ("state", "model")
    search_fields = ("public_id", "user__username", "user__email", "prompt")
    list_select_related = ("user",)
    inlines = (JobEventInline, ModerationDecisionInline)
    actions = ("cancel_jobs",)
    # State changes go through services only (the transition table), never through the form.
    readonly_fields = tuple(f.name for f in Job._meta.fields)
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    # Saving or deleting through the form would bypass the state machine (and race a runner's fenced
    # writes): jobs are viewed here and changed only through actions that call the services.
    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Cancel selected jobs", permissions=["view"])
    def cancel_jobs(self, request, queryset) -> None:
        done = 0
        for job in queryset:
            try:
                services.job_cancel(job_id=job.pk, actor=f"staff:{request.user.pk}")
                done += 1
            except (services.TransitionError, services.LostJob):
                pass  # already finished
        self.message_user(request, f"Cancelled {done} job(s).", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "user", "name", "created_at", "revoked_at")
    search_fields = ("user__username", "prefix")
    readonly_fields = ("prefix", "key_hash", "created_at")


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("user", "tier")
    list_filter = ("tier",)
    search_fields = ("user__username",)


@admin.register(Runner)
class RunnerAdmin(admin.ModelAdmin):
    list_display = ("name", "slots", "model_names", "started_at", "last_seen_at")
    readonly_fields = ("name", "slots", "model_names", "started_at", "last_seen_at")

    def has_add_permission(self, request) -> bool:
        return False  # runners register themselves
