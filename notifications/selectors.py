from __future__ import annotations

from notifications.models import Notification


def notifications_after(*, user_id: int, after_seq: int, limit: int = 100) -> list[Notification]:
    return list(Notification.objects.filter(user_id=user_id, seq__gt=after_seq).order_by("seq")[:limit])


def notification_dict(note: Notification) -> dict:
    return {
        "object": "notification",
        "seq": note.seq,
        "event": note.event,
        "created_at": int(note.created_at.timestamp()),
        "data": note.payload,
    }
