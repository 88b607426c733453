"""cpu tasks of the notifications app: ids in, services called (idempotent: a duplicate finds its attempt gone)."""

from __future__ import annotations

from notifications import webhooks


def deliver_webhook(delivery_id: int, attempts: int) -> str:
    return webhooks.deliver(delivery_id=delivery_id, attempts=attempts)
