"""The notification log: per-user increasing seq, written in the transaction of the change it reports."""

from __future__ import annotations

from django.conf import settings
from django.db import models

# A job ends once: these are notified once per job. The others (queued, in progress) once per attempt: a job
# that is retried is queued and in progress again, and its owner sees that.
TERMINAL_EVENTS = ("video.completed", "video.failed", "video.cancelled")


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
            # At most one visible notification per terminal (job, event) (DESIGN §2), and per (job, event,
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

    def __str__(self) -> str:
        return f"{self.user_id}: {self.last_seq}"
