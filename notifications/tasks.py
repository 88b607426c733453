"""Delivery-queue tasks of the notifications app: ids in, services called (idempotent: a duplicate finds its
attempt gone)."""

from __future__ import annotations

from notifications import emails, webhooks


def deliver_webhook(delivery_id: int, attempts: int) -> str:
    return webhooks.deliver(delivery_id=delivery_id, attempts=attempts)


def send_webhook_test(delivery_id: int, attempts: int) -> str:
    return webhooks.send_test(delivery_id=delivery_id, attempts=attempts)


def send_email(delivery_id: int, attempts: int) -> str:
    return emails.send(delivery_id=delivery_id, attempts=attempts)
