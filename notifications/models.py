"""The notification log: per-user increasing seq, written in the transaction of the change it reports."""

from __future__ import annotations

import base64
import secrets

from django.conf import settings
from django.db import models

# A job ends once: these are notified once per job. The others (queued, in progress) once per attempt: a job
# that is retried is queued and in progress again, and its owner sees that.
TERMINAL_EVENTS = ("video.completed", "video.failed", "video.cancelled")
# What the notification centre counts as unread: what a user is told about, not every step of a video.
NOTEWORTHY_EVENTS = (
    *TERMINAL_EVENTS,
    "video.moderation_blocked",
    "video.held_for_review",
    "video.appeal_decided",
    "webhook_endpoint.disabled",
)


class Notification(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    seq = models.PositiveBigIntegerField()
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    event = models.CharField(max_length=64)
    attempt = models.PositiveIntegerField(default=0)  # the job's attempt when it was written
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["user", "seq"], name="notification_user_seq_uniq"),
            # At most one visible notification per terminal (job, event), and per (job, event,
            # attempt) for the others.
            models.UniqueConstraint(
                fields=["job", "event"],
                condition=models.Q(event__in=TERMINAL_EVENTS),
                name="notification_job_terminal_uniq",
            ),
            models.UniqueConstraint(
                fields=["job", "event", "attempt"],
                condition=~models.Q(event__in=TERMINAL_EVENTS),
                name="notification_job_event_attempt_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}#{self.seq} {self.event}"


class NotificationCounter(models.Model):
    """The last seq handed out per user; its row lock serialises concurrent writers for one user."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True)
    last_seq = models.PositiveBigIntegerField(default=0)
    # Everything up to here the user has seen (the notification centre's "mark read").
    read_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.last_seq}"


def new_endpoint_id() -> str:
    return "we_" + secrets.token_hex(12)


def new_signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


class WebhookEndpoint(models.Model):
    """A user's webhook receiver (OpenAI-compatible `/v1/webhook_endpoints`). The signing secret is kept as is:
    Standard Webhooks signs with it (HMAC), so it cannot be stored hashed; it is shown only on create and rotate."""

    public_id = models.CharField(max_length=40, default=new_endpoint_id, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints", db_index=False
    )
    name = models.CharField(max_length=200)
    url = models.CharField(max_length=2000)  # checked by notifications.outbound, not a form field
    event_types = models.JSONField(default=list)
    secret = models.CharField(max_length=100, default=new_signing_secret)
    # After a rotation the old secret signs too until this time, so receivers can switch without a gap.
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # Failing deliveries since (reset by a success); disabled after a 410 or WEBHOOK_DISABLE_AFTER_SECONDS of it.
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["user", "id"], name="webhook_endpoint_user_idx")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.url}"


class WebhookDelivery(models.Model):
    """One event to one endpoint: the outbox row, written in the transaction of the change it reports, and the
    delivery state of that (event, channel) pair. `event_id` is the webhook-id of every attempt."""

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for its first or next attempt
        DELIVERED = "delivered"
        DEAD = "dead"  # every attempt failed, or the endpoint was disabled or deleted

    # (endpoint, id) and (notification, endpoint) below index both keys.
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, null=True, blank=True, related_name="+", db_index=False
    )
    event_id = models.CharField(max_length=40, default=new_event_id, unique=True)
    event_type = models.CharField(max_length=64)
    body = models.TextField()  # the exact JSON sent (and signed) every attempt
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        constraints = [
            # One delivery per (event, endpoint): a retried task or a duplicate message never makes a second one.
            models.UniqueConstraint(
                fields=["notification", "endpoint"],
                condition=models.Q(notification__isnull=False),
                name="webhook_delivery_once",
            )
        ]
        indexes = [
            models.Index(fields=["endpoint", "id"], name="webhook_delivery_endpoint_idx"),
            models.Index(
                fields=["next_attempt_at"], name="webhook_delivery_due_idx", condition=models.Q(status="pending")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.event_type} -> {self.endpoint_id} [{self.status}]"


class WebhookAttempt(models.Model):
    """Every try of a delivery: what the receiver answered, how fast, or why nothing was sent. Written when the
    attempt is claimed (unfinished: on the wire, counted against its owner's bound) and finished with its answer."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)  # what the endpoint's owner sees: generic
    detail = models.CharField(max_length=500, blank=True)  # what staff see: addresses, ports, exceptions

    class Meta:
        ordering = ["id"]
        indexes = [
            # The attempts on the wire, counted per user at each claim.
            models.Index(
                fields=["started_at"], name="webhook_attempt_open_idx", condition=models.Q(finished_at__isnull=True)
            )
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id}#{self.number} {self.status_code or self.error}"


class NotificationPreference(models.Model):
    """A user's choice for one channel and event type; without a row the channel's default holds (in-app is
    always on: the log is the truth every channel reads)."""

    class Channel(models.TextChoices):
        EMAIL = "email"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    event_type = models.CharField(max_length=64)
    enabled = models.BooleanField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "channel", "event_type"], name="notification_preference_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.channel} {self.event_type}: {'on' if self.enabled else 'off'}"


class EmailDelivery(models.Model):
    """The email one notification causes: at most one per notification, so one per (job, terminal event)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"  # every attempt failed

    notification = models.OneToOneField(Notification, on_delete=models.CASCADE, related_name="email")
    to = models.CharField(max_length=254)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name = "email delivery"
        verbose_name_plural = "email deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"], name="email_delivery_due_idx", condition=models.Q(status="pending")
            )
        ]

    def __str__(self) -> str:
        return f"{self.notification_id} -> {self.to} [{self.status}]"
