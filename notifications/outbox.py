"""What webhook deliveries and emails share: a row per message, written in the notification's transaction,
and a task per attempt on the delivery queue (the delivery role's workers, never the cpu cluster's: a slow
receiver must not hold moderation) that carries the attempt number it was sent for (a duplicate finds it moved
on)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django_q.tasks import async_task


def send(task: str, pk: int, attempts: int) -> None:
    # On the ORM broker the message is a row in the caller's transaction: no outbox row without its task.
    async_task(task, pk, attempts, cluster=settings.DELIVERY_QUEUE)


def resend_due(model: type[models.Model], task: str, *, in_flight_seconds: float, limit: int = 100) -> int:
    """The dispatcher's sweep: pending rows whose retry is due, or whose task was lost, get a task again (and are
    claimed for `in_flight_seconds`, so the next sweep leaves them to it). Safe for several dispatchers at once."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            model.objects.select_for_update(skip_locked=True)
            .filter(status="pending", next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("pk", "attempts")[:limit]
        )
        if due:
            claimed_until = now + dt.timedelta(seconds=in_flight_seconds)
            model.objects.filter(pk__in=[pk for pk, _ in due]).update(next_attempt_at=claimed_until)
        for pk, attempts in due:
            send(task, pk, attempts)
    return len(due)
