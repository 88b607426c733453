"""Erasing a job's user text (its prompt, an appeal's words) from the copies the notification log made of it.

A notification's payload is the video as it was when the notification was written, and a webhook delivery's
body is that payload as sent; emails are rendered from the payload when they are sent. Blanking the text in
both rows leaves every id, status and time as it was, so clients resuming from their last seq and receivers
deduplicating by webhook-id see nothing else change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from notifications.models import Notification, WebhookDelivery

USER_TEXT_FIELDS = ("prompt", "message")  # the video's prompt; an appeal's words


def _blanked(data: object) -> bool:
    """Blank the user text of one payload in place; whether anything changed."""
    if not isinstance(data, dict):
        return False
    changed = False
    for field in USER_TEXT_FIELDS:
        if data.get(field):
            data[field] = ""
            changed = True
    return changed


def erase_job_text(*, job_ids: Iterable[int]) -> int:
    """In the caller's transaction: blank the user text in the notifications of these jobs and in the webhook
    bodies made from them. Returns how many rows changed."""
    notes = list(Notification.objects.filter(job_id__in=list(job_ids)).only("pk", "payload"))
    changed = [note for note in notes if _blanked(note.payload)]
    Notification.objects.bulk_update(changed, ["payload"], batch_size=500)
    deliveries = list(
        WebhookDelivery.objects.filter(notification_id__in=[note.pk for note in notes]).only("pk", "body")
    )
    rewritten = []
    for delivery in deliveries:
        try:
            event = json.loads(delivery.body)
        except ValueError:
            continue
        if _blanked(event.get("data")):
            delivery.body = json.dumps(event, separators=(",", ":"))
            rewritten.append(delivery)
    WebhookDelivery.objects.bulk_update(rewritten, ["body"], batch_size=500)
    return len(changed) + len(rewritten)
