"""Webhooks: users' endpoints, the outbox, and delivery per Standard Webhooks with retries (DESIGN §5).

A notification that an endpoint subscribes to gets a WebhookDelivery row in the transaction that wrote the
notification (the outbox), and a cpu task that delivers it. Its `event_id` is the `webhook-id` of every
attempt, so a receiver dedupes retries; the body is fixed at creation and signed anew at each attempt
(`webhook-timestamp`, `webhook-signature`, with the previous secret too during a rotation's grace). A failed
attempt is retried on WEBHOOK_RETRY_SCHEDULE (jitter ±20%) by the dispatcher's sweep; after the last the delivery
is dead (replayable). A 410, or failing for WEBHOOK_DISABLE_AFTER_SECONDS, disables the endpoint and tells its
owner in their notification log.

A task carries the attempt number it was sent for: a duplicate message, or a sweep racing the first send, finds
the count moved on and sends nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from standardwebhooks import Webhook

from jobs.prepared import Prepared
from notifications import outbound, outbox
from notifications.events import WEBHOOK_EVENT_TYPES
from notifications.models import Notification, WebhookAttempt, WebhookDelivery, WebhookEndpoint, new_signing_secret
from videogen import metrics

log = logging.getLogger(__name__)
Status = WebhookDelivery.Status
IN_FLIGHT_SECONDS = 60  # an attempt's claim: the sweep re-sends a delivery whose task was lost after this


def cfg(name: str):
    return settings.WEBHOOKS[name]


# --- endpoints ---------------------------------------------------------------------------------------------


class Invalid(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _clean(*, name: object, url: object, event_types: object) -> tuple[str, str, list[str]]:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise Invalid("'name' must be a non-empty string of at most 200 characters.", "name")
    if not isinstance(url, str) or len(url) > 2000:
        raise Invalid("'url' must be an http(s) URL of at most 2000 characters.", "url")
    try:
        outbound.check_url(url)
    except outbound.Refused as exc:
        raise Invalid(f"'url' cannot receive webhooks: {exc}.", "url") from None
    if not isinstance(event_types, list) or not event_types or not all(isinstance(e, str) for e in event_types):
        raise Invalid("'event_types' must be a non-empty list of event types.", "event_types")
    unknown = sorted(set(event_types) - set(WEBHOOK_EVENT_TYPES))
    if unknown:
        raise Invalid(f"Unknown event type {unknown[0]!r}; GET /v1/webhook_event_types lists them.", "event_types")
    return name.strip(), url, sorted(set(event_types))


def endpoint_create(*, user_id: int, name: object, url: object, event_types: object) -> WebhookEndpoint:
    name, url, types = _clean(name=name, url=url, event_types=event_types)
    if WebhookEndpoint.objects.filter(user_id=user_id).count() >= cfg("MAX_ENDPOINTS_PER_USER"):
        raise Invalid(f"At most {cfg('MAX_ENDPOINTS_PER_USER')} webhook endpoints per user.", "url")
    return WebhookEndpoint.objects.create(user_id=user_id, name=name, url=url, event_types=types)


def endpoint_update(*, endpoint: WebhookEndpoint, **changes: object) -> WebhookEndpoint:
    merged = {"name": endpoint.name, "url": endpoint.url, "event_types": endpoint.event_types}
    merged.update({k: v for k, v in changes.items() if v is not None})
    endpoint.name, endpoint.url, endpoint.event_types = _clean(**merged)
    endpoint.disabled_at, endpoint.disabled_reason, endpoint.failing_since = None, "", None  # edited: try again
    endpoint.save()
    return endpoint


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret; the old one still signs (a second signature) for WEBHOOK_SECRET_GRACE_SECONDS."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + dt.timedelta(seconds=cfg("SECRET_GRACE_SECONDS"))
    endpoint.secret = new_signing_secret()
    endpoint.save()
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()  # its deliveries and their log go with it


# --- the outbox --------------------------------------------------------------------------------------------


def event_body(*, event_id: str, event_type: str, created_at: dt.datetime, data: dict) -> str:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "created_at": int(created_at.timestamp()),
            "type": event_type,
            "data": data,
        },
        separators=(",", ":"),
    )


# Every notification asks (most users have no endpoint): compiled once (jobs.prepared).
_live_endpoints = Prepared(
    WebhookEndpoint,
    lambda user_id: WebhookEndpoint.objects.filter(user_id=user_id, disabled_at__isnull=True).values_list(
        "pk", "event_types"
    ),
)


def outbox_for(note: Notification) -> int:
    """Called in the transaction that wrote `note`: one delivery per endpoint of its owner that wants it."""
    endpoints = [pk for pk, types in _live_endpoints.fetch(user_id=note.user_id) if note.event in types]
    for endpoint_id in endpoints:
        delivery = WebhookDelivery(endpoint_id=endpoint_id, notification=note, event_type=note.event)
        delivery.body = event_body(
            event_id=delivery.event_id, event_type=note.event, created_at=note.created_at, data=note.payload
        )
        delivery.next_attempt_at = timezone.now() + dt.timedelta(seconds=IN_FLIGHT_SECONDS)
        delivery.save()
        _send_task(delivery.pk, 0)
    return len(endpoints)


def _send_task(delivery_id: int, attempts: int) -> None:
    outbox.send("notifications.tasks.deliver_webhook", delivery_id, attempts)


def enqueue_due(*, limit: int = 100) -> int:
    """The dispatcher's sweep: deliveries whose retry is due (or whose task was lost) get a task again."""
    return outbox.resend_due(
        WebhookDelivery, "notifications.tasks.deliver_webhook", in_flight_seconds=IN_FLIGHT_SECONDS, limit=limit
    )


def replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Staff or the owner: send a delivery again (same webhook-id), whatever became of it."""
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=Status.PENDING, next_attempt_at=timezone.now() + dt.timedelta(seconds=IN_FLIGHT_SECONDS)
        )
        delivery.refresh_from_db()
        _send_task(delivery.pk, delivery.attempts)
    return delivery


# --- delivery ----------------------------------------------------------------------------------------------


def signed_headers(endpoint: WebhookEndpoint, *, event_id: str, body: str, now: dt.datetime) -> dict[str, str]:
    secrets = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > now:
        secrets.append(endpoint.previous_secret)
    signatures = " ".join(Webhook(secret).sign(event_id, now, body) for secret in secrets)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "User-Agent": "videogen-webhooks/1",
    }


def _attempt(endpoint: WebhookEndpoint, *, event_id: str, body: str) -> tuple[int | None, int, str, str]:
    """(status code or None, latency ms, response excerpt, error)."""
    headers = signed_headers(endpoint, event_id=event_id, body=body, now=timezone.now())
    try:
        answer = outbound.post(endpoint.url, body=body.encode(), headers=headers)
    except outbound.Refused as exc:
        return None, 0, "", f"refused: {exc}"
    except httpx.HTTPError as exc:
        return None, 0, "", f"{type(exc).__name__}: {exc}"[:500]
    return answer.status_code, answer.latency_ms, answer.excerpt, ""


def _retry_delay(attempts: int) -> float | None:
    schedule = cfg("RETRY_SCHEDULE")
    if attempts > len(schedule):
        return None
    return schedule[attempts - 1] * random.uniform(0.8, 1.2)


def deliver(*, delivery_id: int, attempts: int) -> str:
    """One attempt of a delivery, if it is still the attempt this task was sent for."""
    outcome = _deliver(delivery_id=delivery_id, attempts=attempts)
    if outcome in ("delivered", "retrying", "dead"):
        metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    return outcome


def _deliver(*, delivery_id: int, attempts: int) -> str:
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.status != Status.PENDING or delivery.attempts != attempts:
            return "skipped"  # delivered, dead, or another task has this attempt
        number = attempts + 1
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            attempts=number, next_attempt_at=timezone.now() + dt.timedelta(seconds=IN_FLIGHT_SECONDS)
        )
        endpoint = delivery.endpoint
    code, latency, excerpt, error = _attempt(endpoint, event_id=delivery.event_id, body=delivery.body)
    with transaction.atomic():
        if not WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).exists():
            return "gone"  # its endpoint was deleted while this attempt was on the wire
        WebhookAttempt.objects.create(
            delivery_id=delivery_id,
            number=number,
            status_code=code,
            latency_ms=latency,
            response_excerpt=excerpt,
            error=error,
        )
        now = timezone.now()
        if code is not None and 200 <= code < 300:
            WebhookDelivery.objects.filter(pk=delivery_id).update(status=Status.DELIVERED, delivered_at=now)
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
            metrics.WEBHOOK_LAG.observe(max(0.0, (now - delivery.created_at).total_seconds()))
            return "delivered"
        ep = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        failing_since = ep.failing_since or now
        if ep.failing_since is None:
            WebhookEndpoint.objects.filter(pk=ep.pk).update(failing_since=now)
        if code == 410:
            _disable(ep, "the receiver answered 410 Gone")
        elif (now - failing_since).total_seconds() > cfg("DISABLE_AFTER_SECONDS"):
            _disable(ep, f"every delivery failed for over {cfg('DISABLE_AFTER_SECONDS') // 3600} hours")
        delay = None if ep.disabled_at or code == 410 else _retry_delay(number)
        if delay is None:
            WebhookDelivery.objects.filter(pk=delivery_id).update(status=Status.DEAD, next_attempt_at=None)
            return "dead"
        WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=now + dt.timedelta(seconds=delay))
        return "retrying"


def _disable(endpoint: WebhookEndpoint, reason: str) -> None:
    from notifications.services import notification_create

    if endpoint.disabled_at is not None:
        return
    now = timezone.now()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(disabled_at=now, disabled_reason=reason)
    endpoint.disabled_at, endpoint.disabled_reason = now, reason
    WebhookDelivery.objects.filter(endpoint_id=endpoint.pk, status=Status.PENDING).update(
        status=Status.DEAD, next_attempt_at=None
    )
    notification_create(
        user_id=endpoint.user_id,
        job_id=None,
        event="webhook_endpoint.disabled",
        payload={"id": endpoint.public_id, "url": endpoint.url, "reason": reason},
    )
    log.warning("webhook endpoint %s disabled: %s", endpoint.public_id, reason)


def send_test(*, endpoint: WebhookEndpoint, event_type: str) -> tuple[int | None, WebhookDelivery]:
    """A sample event, sent now and logged as a delivery of its own (no retries)."""
    delivery = WebhookDelivery(endpoint=endpoint, event_type=event_type, status=Status.DEAD)
    sample = {"id": "video_" + "0" * 24, "object": "video", "status": "completed", "test": True}
    delivery.body = event_body(
        event_id=delivery.event_id, event_type=event_type, created_at=timezone.now(), data=sample
    )
    delivery.save()
    code, latency, excerpt, error = _attempt(endpoint, event_id=delivery.event_id, body=delivery.body)
    WebhookAttempt.objects.create(
        delivery=delivery, number=1, status_code=code, latency_ms=latency, response_excerpt=excerpt, error=error
    )
    ok = code is not None and 200 <= code < 300
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=F("attempts") + 1,
        status=Status.DELIVERED if ok else Status.DEAD,
        delivered_at=timezone.now() if ok else None,
    )
    return code, delivery
