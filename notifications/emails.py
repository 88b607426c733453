"""Email: a video's end, told to its owner through Django's email backend (console unless SMTP is set).

Which events are emailed is the user's preference (notification_preferences), by default EMAIL_DEFAULT_EVENTS.
The EmailDelivery row is written in the transaction of the notification, with a cpu task; it exists once per
notification, so once per (job, terminal event), and its task sends only while the row is pending under its
lock: a duplicate or retried task sends nothing more. A send that fails is retried on EMAIL_RETRY_SCHEDULE by
the dispatcher's sweep. (A worker killed between the SMTP server's acceptance and the row's update would send
it again: at-least-once.)
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import unicodedata

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from jobs.prepared import Prepared
from notifications import outbox
from notifications.models import EmailDelivery, Notification, NotificationPreference
from notifications.outbound import clean_text
from videogen import metrics

log = logging.getLogger(__name__)
Status = EmailDelivery.Status
EMAIL = NotificationPreference.Channel.EMAIL
IN_FLIGHT_SECONDS = 120
SEND_TASK = "notifications.tasks.send_email"
# What can be emailed: a video's outcome, and the moderation events once they exist.
EMAILABLE = (
    "video.completed",
    "video.failed",
    "video.cancelled",
    "video.moderation_blocked",
    "video.held_for_review",
    "video.appeal_decided",
    "webhook_endpoint.disabled",
)
SUBJECTS = {
    "video.completed": "Your video is ready",
    "video.failed": "Your video could not be made",
    "video.cancelled": "Your video was cancelled",
    "video.moderation_blocked": "Your video was blocked by moderation",
    "video.held_for_review": "Your video is waiting for a moderator",
    "video.appeal_decided": "Your appeal was decided",
    "webhook_endpoint.disabled": "A webhook endpoint of yours was disabled",
}


def preferences(user_id: int) -> dict[str, bool]:
    """Each emailable event type: whether this user gets it by email."""
    chosen = dict(
        NotificationPreference.objects.filter(user_id=user_id, channel=EMAIL).values_list("event_type", "enabled")
    )
    default = set(settings.EMAILS["DEFAULT_EVENTS"])
    return {event: chosen.get(event, event in default) for event in EMAILABLE}


def set_preferences(*, user_id: int, choices: dict[str, bool]) -> dict[str, bool]:
    for event, enabled in choices.items():
        NotificationPreference.objects.update_or_create(
            user_id=user_id, channel=EMAIL, event_type=event, defaults={"enabled": enabled}
        )
    return preferences(user_id)


@functools.cache
def _email_of() -> Prepared:
    """Every notification asks (most users have no address): compiled once (jobs.prepared)."""
    users = get_user_model()
    return Prepared(users, lambda user_id: users.objects.filter(pk=user_id).values_list("email")[:1])


def outbox_for(note: Notification) -> bool:
    """Called in the transaction that wrote `note`: its email, if the owner gets this event by email."""
    if note.event not in EMAILABLE:
        return False
    found = _email_of().fetch(user_id=note.user_id)
    to = found[0][0] if found else ""
    if not to or not preferences(note.user_id)[note.event]:
        return False
    delivery = EmailDelivery.objects.create(
        notification=note, to=to, next_attempt_at=timezone.now() + dt.timedelta(seconds=IN_FLIGHT_SECONDS)
    )
    outbox.send(SEND_TASK, delivery.pk, 0)
    return True


_BLANKS = {"Cc", "Zs", "Zl", "Zp"}  # control characters and every kind of space or line break


def subject(text: str, *, limit: int = 100) -> str:
    """One header line: a prompt's newlines, tabs and control characters (a header may hold none: Django refuses
    the message) become single spaces, and the line is cut at `limit` characters."""
    flat = " ".join("".join(" " if unicodedata.category(ch) in _BLANKS else ch for ch in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def message(delivery: EmailDelivery) -> EmailMessage:
    note = delivery.notification
    data = note.payload or {}
    if note.event == "webhook_endpoint.disabled":
        about = data.get("url", "")
        lines = [
            f"{SUBJECTS[note.event]}: {about}",
            "",
            f"Why: {data.get('reason', '')}",
            "",
            "Update it (POST /v1/webhook_endpoints/{id}) to enable it again; its failed deliveries can be replayed.",
        ]
    elif note.event == "video.appeal_decided":
        about = data.get("video_id", "")
        rerun = data.get("rerun_video_id")
        lines = [
            f"{SUBJECTS[note.event]}: {data.get('status', '')}.",
            "",
            f"Video: {about}",
            f"It runs again as {rerun}." if rerun else "The rejection stands.",
            "",
            f"Open it: {settings.EMAILS['PUBLIC_BASE_URL'].rstrip('/')}/#{rerun or about}",
        ]
    else:
        about = data.get("prompt", "")
        lines = [f"{SUBJECTS[note.event]}.", "", f"Prompt: {about}", f"Video: {data.get('id', '')}"]
        if data.get("error"):
            lines.append(f"Why: {data['error'].get('message', '')}")
        lines += ["", f"Open it: {settings.EMAILS['PUBLIC_BASE_URL'].rstrip('/')}/#{data.get('id', '')}"]
    lines += ["", "(You can turn these emails off in your notification preferences.)"]
    return EmailMessage(
        subject=subject(f"{SUBJECTS[note.event]}: {about}"),
        body="\n".join(lines),
        to=[delivery.to],
        # The same Message-ID on every attempt: a receiving server that saw it already may drop the copy.
        headers={"Message-ID": f"<notification-{note.pk}@videogen>"},
    )


def send(*, delivery_id: int, attempts: int) -> str:
    with transaction.atomic():
        delivery = (
            EmailDelivery.objects.select_for_update().select_related("notification").filter(pk=delivery_id).first()
        )
        if delivery is None or delivery.status != Status.PENDING or delivery.attempts != attempts:
            return "skipped"
        number = attempts + 1
        EmailDelivery.objects.filter(pk=delivery_id).update(
            attempts=number, next_attempt_at=timezone.now() + dt.timedelta(seconds=IN_FLIGHT_SECONDS)
        )
    try:
        message(delivery).send()
    except Exception as exc:
        schedule = settings.EMAILS["RETRY_SCHEDULE"]
        error = clean_text(f"{type(exc).__name__}: {exc}")[:500]  # the server's words: stored as clean text
        log.warning("email %s attempt %s failed: %s", delivery_id, number, error)
        if number > len(schedule):
            EmailDelivery.objects.filter(pk=delivery_id).update(status=Status.FAILED, error=error, next_attempt_at=None)
            metrics.EMAIL_DELIVERIES.labels("failed").inc()
            return "failed"
        retry_at = timezone.now() + dt.timedelta(seconds=schedule[number - 1])
        EmailDelivery.objects.filter(pk=delivery_id).update(error=error, next_attempt_at=retry_at)
        metrics.EMAIL_DELIVERIES.labels("retrying").inc()
        return "retrying"
    sent_at = timezone.now()
    EmailDelivery.objects.filter(pk=delivery_id).update(status=Status.SENT, sent_at=sent_at, error="")
    metrics.EMAIL_DELIVERIES.labels("sent").inc()
    metrics.EMAIL_LAG.observe(max(0.0, (sent_at - delivery.notification.created_at).total_seconds()))
    return "sent"


def enqueue_due(*, limit: int = 100) -> int:
    """The dispatcher's sweep: emails whose retry is due, or whose task was lost."""
    return outbox.resend_due(EmailDelivery, SEND_TASK, in_flight_seconds=IN_FLIGHT_SECONDS, limit=limit)
