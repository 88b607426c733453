from django import forms
from django.contrib import admin

from notifications import webhooks
from notifications.models import Notification, WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("user", "seq", "event", "job", "created_at")
    list_filter = ("event",)
    search_fields = ("user__username",)
    readonly_fields = ("user", "seq", "event", "job", "payload", "created_at")

    def has_add_permission(self, request) -> bool:
        return False  # written by the state machine only


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    # `detail` (the address refused, the connection error) is for staff; the owner's API shows `error` only.
    readonly_fields = (
        "number",
        "started_at",
        "finished_at",
        "status_code",
        "latency_ms",
        "error",
        "detail",
        "response_excerpt",
    )

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("notifications.view_webhookdelivery")  # the log is part of the delivery


class WebhookEndpointForm(forms.ModelForm):
    """Staff edit an endpoint under the API's checks (its URL above all: deliveries carry the owner's data)."""

    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "event_types", "disabled_at")

    def clean(self):
        data = super().clean()
        fields = {name: data.get(name, getattr(self.instance, name)) for name in ("name", "url", "event_types")}
        try:
            data["name"], data["url"], data["event_types"] = webhooks.endpoint_fields_clean(**fields)
        except webhooks.Invalid as exc:
            self.add_error(exc.param if exc.param in self.fields else None, str(exc))
        return data


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("public_id", "user", "name", "url", "disabled_at", "failing_since", "created_at")
    list_filter = (("disabled_at", admin.EmptyFieldListFilter),)
    search_fields = ("public_id", "user__username", "url")
    # The secret signs deliveries: staff never see it (the owner rotates it through the API).
    exclude = ("secret", "previous_secret")
    readonly_fields = ("public_id", "user", "failing_since", "disabled_reason", "previous_secret_expires_at")

    def has_add_permission(self, request) -> bool:
        return False  # owners create endpoints through the API (their secret is shown to them only)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event_id", "event_type", "endpoint", "status", "attempts", "next_attempt_at", "created_at")
    list_filter = ("status", "event_type")
    search_fields = ("event_id", "endpoint__public_id", "endpoint__user__username")
    inlines = [AttemptInline]
    actions = ["replay"]

    def get_readonly_fields(self, request, obj=None):
        # Every field: change permission means the replay action only (the Support group holds it).
        return [field.name for field in self.opts.fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Send again (same webhook-id)", permissions=["change"])
    def replay(self, request, queryset) -> None:
        for delivery in queryset:
            webhooks.replay(delivery=delivery)
        self.message_user(request, f"{queryset.count()} deliveries queued again.")
