from __future__ import annotations

from notifications.models import NOTEWORTHY_EVENTS, Notification, NotificationCounter, WebhookDelivery, WebhookEndpoint


def notifications_after(*, user_id: int, after_seq: int, limit: int = 100) -> list[Notification]:
    return list(Notification.objects.filter(user_id=user_id, seq__gt=after_seq).order_by("seq")[:limit])


def replay_floor(*, user_id: int, after_seq: int, limit: int) -> int | None:
    """When more than `limit` notifications follow after_seq: the seq after which the newest `limit` start
    (a replay sends only those); None when all of them fit."""
    newer = Notification.objects.filter(user_id=user_id, seq__gt=after_seq).order_by("-seq")
    return next(iter(newer.values_list("seq", flat=True)[limit : limit + 1]), None)


def notification_dict(note: Notification) -> dict:
    return {
        "object": "notification",
        "seq": note.seq,
        "event": note.event,
        "created_at": int(note.created_at.timestamp()),
        "data": note.payload,
    }


def counter_state(*, user_id: int) -> tuple[int, int]:
    """(last seq written, read seq) of the user: one indexed row, what a stream's resync looks at first."""
    row = NotificationCounter.objects.filter(user_id=user_id).values_list("last_seq", "read_seq").first()
    return row or (0, 0)


def read_state(*, user_id: int, read_seq: int | None = None) -> tuple[int, int]:
    """(read seq, unread count): noteworthy notifications after the read seq (bounded by what is unread).
    `read_seq`: the caller has just read it (a resync's counter_state), so it is not read again."""
    if read_seq is None:
        read_seq = NotificationCounter.objects.filter(user_id=user_id).values_list("read_seq", flat=True).first() or 0
    unread = Notification.objects.filter(user_id=user_id, seq__gt=read_seq, event__in=NOTEWORTHY_EVENTS).count()
    return read_seq, unread


def webhook_endpoint(*, user_id: int, public_id: str) -> WebhookEndpoint | None:
    return WebhookEndpoint.objects.filter(user_id=user_id, public_id=public_id).first()


def webhook_endpoints_page(*, user_id: int, after: str | None, limit: int) -> list[WebhookEndpoint] | None:
    """Newest first, up to limit + 1 (the extra one says there is more); None: no such `after`."""
    rows = WebhookEndpoint.objects.filter(user_id=user_id).order_by("-id")
    if after:
        cursor = webhook_endpoint(user_id=user_id, public_id=after)
        if cursor is None:
            return None
        rows = rows.filter(id__lt=cursor.pk)
    return list(rows[: limit + 1])


def webhook_deliveries_page(
    *, endpoint: WebhookEndpoint, after: str | None, limit: int
) -> list[WebhookDelivery] | None:
    """An endpoint's deliveries with their attempts, newest first, up to limit + 1; None: no such `after`."""
    rows = endpoint.deliveries.order_by("-id").prefetch_related("attempt_log")
    if after:
        cursor = endpoint.deliveries.filter(event_id=after).first()
        if cursor is None:
            return None
        rows = rows.filter(id__lt=cursor.pk)
    return list(rows[: limit + 1])


def webhook_delivery(*, endpoint: WebhookEndpoint, event_id: str) -> WebhookDelivery | None:
    return endpoint.deliveries.filter(event_id=event_id).first()
