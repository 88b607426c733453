"""The notification log: per-user increasing seq, written in the transaction of the change it reports."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Notification(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    seq = models.PositiveBigIntegerField()
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    event = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["user", "seq"], name="notification_user_seq_uniq"),
            # At most one visible notification per (job, event) (DESIGN §2).
            models.UniqueConstraint(fields=["job", "event"], name="notification_job_event_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}#{self.seq} {self.event}"


class NotificationCounter(models.Model):
    """The last seq handed out per user; its row lock serialises concurrent writers for one user."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True)
    last_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.last_seq}"
