"""Webhooks: users' endpoints, the outbox, and delivery per Standard Webhooks with retries.

A notification that an endpoint subscribes to gets a WebhookDelivery row in the transaction that wrote the
notification (the outbox), and a task on the delivery queue (the delivery role) that delivers it. Its `event_id`
is the `webhook-id` of every attempt, so a receiver dedupes retries; the body is fixed at creation and signed anew
at each attempt (`webhook-timestamp`, `webhook-signature`, with the previous secret too during a rotation's
grace). A failed attempt is retried on WEBHOOK_RETRY_SCHEDULE (each delay lengthened by up to 20%, never
shortened) by the dispatcher's sweep; after the last the delivery is dead (replayable). A 410, or failing for
WEBHOOK_DISABLE_AFTER_SECONDS, disables the endpoint and tells its owner in their notification log.

A task carries the attempt number it was sent for: a duplicate message, or a sweep racing the first send, finds
the count moved on and sends nothing. An attempt is claimed with its log row and the outcome of a failure in one
transaction, then finished with its answer in another; a user has at most WEBHOOK_MAX_IN_FLIGHT_PER_USER attempts
on the wire (counted at the claim, under a per-user lock), the rest waits its turn.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone
from standardwebhooks import Webhook

from jobs.prepared import Prepared
from notifications import outbound, outbox
from notifications.events import WEBHOOK_EVENT_TYPES
from notifications.models import Notification, WebhookAttempt, WebhookDelivery, WebhookEndpoint, new_signing_secret
from videogen import metrics

log = logging.getLogger(__name__)
Status = WebhookDelivery.Status
# An attempt's claim: the sweep re-sends a delivery whose task was lost after this. Every attempt ends well
# within it (WEBHOOK_ATTEMPT_DEADLINE_SECONDS, at most 40), so the sweep never sends one while it is on the wire.
IN_FLIGHT_SECONDS = 60
SEND_TASK = "notifications.tasks.deliver_webhook"
TEST_TASK = "notifications.tasks.send_webhook_test"
OWNER_LOCK_CLASS = 0x77686B  # pg_advisory_xact_lock(class, user): one user's claims, one at a time


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


def endpoint_fields_clean(*, name: object, url: object, event_types: object) -> tuple[str, str, list[str]]:
    """(name, url, event types) as stored, or Invalid: the API's checks, for every other writer (the admin)."""
    return _clean(name=name, url=url, event_types=event_types)


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
    outbox.send(SEND_TASK, delivery_id, attempts)


def enqueue_due(*, limit: int = 100) -> int:
    """The dispatcher's sweep: deliveries whose retry is due (or whose task was lost) get a task again."""
    return outbox.resend_due(WebhookDelivery, SEND_TASK, in_flight_seconds=IN_FLIGHT_SECONDS, limit=limit)


def replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Staff or the owner: send a delivery again (same webhook-id), whatever became of it."""
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=Status.PENDING, next_attempt_at=timezone.now() + dt.timedelta(seconds=IN_FLIGHT_SECONDS)
        )
        # An attempt left unfinished by a stopped worker is over: the replay is a new try, not its continuation.
        WebhookAttempt.objects.filter(delivery_id=delivery.pk, finished_at__isnull=True).update(
            finished_at=timezone.now()
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


def _attempt(endpoint: WebhookEndpoint, *, event_id: str, body: str) -> dict:
    """One POST, within the attempt deadline: the fields of its WebhookAttempt row (all of them clean text)."""
    headers = signed_headers(endpoint, event_id=event_id, body=body, now=timezone.now())
    try:
        answer = outbound.post(endpoint.url, body=body.encode(), headers=headers)
    except outbound.Refused as exc:
        return {"status_code": None, "error": f"refused: {exc.reason}", "detail": exc.detail}
    except outbound.NoAnswer as exc:
        return {"status_code": None, "error": exc.reason, "detail": exc.detail}
    return {"status_code": answer.status_code, "latency_ms": answer.latency_ms, "response_excerpt": answer.excerpt}


# Each retry waits its scheduled delay times a factor drawn from JITTER: spread, never shortened (the schedule's
# sum is the least a failing delivery is retried for).
JITTER = (1.0, 1.2)
# An attempt claimed but never finished (its worker stopped, or writing its answer failed) tells its owner this.
UNFINISHED = "the attempt did not finish"


def retry_span(schedule: list[float] | None = None) -> tuple[float, float]:
    """(least, most) seconds from a delivery's first attempt to its last, with jitter (attempts' own time aside)."""
    total = sum(schedule if schedule is not None else cfg("RETRY_SCHEDULE"))
    return total * JITTER[0], total * JITTER[1]


def _retry_delay(attempts: int) -> float | None:
    schedule = cfg("RETRY_SCHEDULE")
    if attempts > len(schedule):
        return None
    return schedule[attempts - 1] * random.uniform(*JITTER)


def _lock_owner(user_id: int) -> None:
    """Serialise claims of one user's deliveries across processes (counting them then claiming is a race
    otherwise); SQLite serialises every writer anyway."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [OWNER_LOCK_CLASS, user_id % 2**31])


# Past its deadline and this, an unfinished attempt is off the wire: its worker hung up at the deadline and then
# failed to write the answer (a lost connection), or stopped. Such an attempt must not hold its owner's place.
WRITE_SLACK_SECONDS = 5.0


def _wire_seconds() -> float:
    return cfg("ATTEMPT_DEADLINE_SECONDS") + WRITE_SLACK_SECONDS


def in_flight(user_id: int) -> int:
    """Attempts of the user's deliveries (tests included) on the wire now: claimed, unfinished, and not older
    than the deadline and its write (a worker that died, or lost its answer's write, leaves one unfinished)."""
    recent = timezone.now() - dt.timedelta(seconds=_wire_seconds())
    return WebhookAttempt.objects.filter(
        finished_at__isnull=True, started_at__gt=recent, delivery__endpoint__user_id=user_id
    ).count()


def on_the_wire(attempt: WebhookAttempt) -> bool:
    """An unfinished attempt still within its deadline and its write (after that it is known to have ended)."""
    return attempt.finished_at is None and timezone.now() - attempt.started_at < dt.timedelta(seconds=_wire_seconds())


def deliver(*, delivery_id: int, attempts: int) -> str:
    """One attempt of a delivery, if it is still the attempt this task was sent for."""
    outcome = _deliver(delivery_id=delivery_id, attempts=attempts)
    if outcome in ("delivered", "retrying", "dead"):
        metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    return outcome


def _deliver(*, delivery_id: int, attempts: int) -> str:
    claimed = _claim(delivery_id=delivery_id, attempts=attempts)
    if isinstance(claimed, str):
        return claimed
    delivery, attempt = claimed
    fields = _attempt(delivery.endpoint, event_id=delivery.event_id, body=delivery.body)
    try:
        return _finish(delivery, attempt, fields)
    except (InterfaceError, OperationalError):  # the connection, not the data
        if connection.in_atomic_block:
            raise
        # The connection was lost while the attempt was on the wire (a database restart, a failover): write the
        # answer once more on a new one, or a delivered event would be sent again at its next retry. Writing it
        # twice is harmless (the second finds the delivery moved on).
        log.warning("writing webhook attempt %s failed; once more on a new connection", attempt.pk, exc_info=True)
        connection.close()
        return _finish(delivery, attempt, fields)


def _claim(*, delivery_id: int, attempts: int) -> tuple[WebhookDelivery, WebhookAttempt] | str:
    """In one transaction: the attempt's row (unfinished) and the outcome should nothing more ever be written, a
    failure: the next try scheduled (at least a claim away), the endpoint failing. So a worker that stops, or an
    answer that cannot be written, still moves the delivery along its retries to dead, and the endpoint to
    disabled; and no sweep sends it again while this attempt is on the wire (its deadline is shorter)."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.status != Status.PENDING or delivery.attempts != attempts:
            return "skipped"  # delivered, dead, or another task has this attempt
        endpoint, now = delivery.endpoint, timezone.now()
        if attempts > len(cfg("RETRY_SCHEDULE")) and _unfinished(delivery_id, attempts):
            # The last attempt's claim ran out unfinished (its worker stopped): nothing more to try.
            WebhookDelivery.objects.filter(pk=delivery_id).update(status=Status.DEAD, next_attempt_at=None)
            return "dead"
        if endpoint.failing_since and (now - endpoint.failing_since).total_seconds() > cfg("DISABLE_AFTER_SECONDS"):
            _disable(WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk), _failing_reason())
            return "dead"
        _lock_owner(endpoint.user_id)
        if in_flight(endpoint.user_id) >= cfg("MAX_IN_FLIGHT_PER_USER"):
            # Not an attempt: its turn comes again after a while (the sweep sends it), spread so a user's backlog
            # does not come back all at once.
            wait = random.uniform(1.0, cfg("ATTEMPT_DEADLINE_SECONDS"))
            WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=now + dt.timedelta(seconds=wait))
            return "deferred"
        number = attempts + 1
        attempt = WebhookAttempt.objects.create(delivery_id=delivery_id, number=number, error=UNFINISHED)
        retry_in = max(IN_FLIGHT_SECONDS, _retry_delay(number) or 0.0)
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            attempts=number, next_attempt_at=now + dt.timedelta(seconds=retry_in)
        )
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    return delivery, attempt


def _unfinished(delivery_id: int, number: int) -> bool:
    return WebhookAttempt.objects.filter(delivery_id=delivery_id, number=number, finished_at__isnull=True).exists()


def _failing_reason() -> str:
    return f"every delivery failed for over {cfg('DISABLE_AFTER_SECONDS') // 3600} hours"


def _finish(delivery: WebhookDelivery, attempt: WebhookAttempt, fields: dict) -> str:
    """The attempt's answer and what follows from it, in one transaction."""
    code = fields.get("status_code")
    with transaction.atomic():
        current = WebhookDelivery.objects.select_for_update().filter(pk=delivery.pk).first()
        if current is None:
            return "gone"  # its endpoint was deleted while this attempt was on the wire
        now = timezone.now()
        WebhookAttempt.objects.filter(pk=attempt.pk).update(finished_at=now, **{"error": "", **fields})
        if current.attempts != attempt.number or current.status == Status.DELIVERED:
            return "recorded"  # replayed meanwhile: that attempt decides
        endpoint_id = delivery.endpoint_id
        if code is not None and 200 <= code < 300:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                status=Status.DELIVERED, delivered_at=now, next_attempt_at=None
            )
            WebhookEndpoint.objects.filter(pk=endpoint_id).update(failing_since=None)
            metrics.WEBHOOK_LAG.observe(max(0.0, (now - delivery.created_at).total_seconds()))
            return "delivered"
        if current.status != Status.PENDING:
            return "recorded"  # ended meanwhile (its endpoint disabled)
        ep = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
        failing_since = ep.failing_since or now
        if ep.failing_since is None:
            WebhookEndpoint.objects.filter(pk=ep.pk).update(failing_since=now)
        if code == 410:
            _disable(ep, "the receiver answered 410 Gone")
        elif (now - failing_since).total_seconds() > cfg("DISABLE_AFTER_SECONDS"):
            _disable(ep, _failing_reason())
        delay = None if ep.disabled_at or code == 410 else _retry_delay(attempt.number)
        if delay is None:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(status=Status.DEAD, next_attempt_at=None)
            return "dead"
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now + dt.timedelta(seconds=delay))
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


class Busy(Exception):
    """The owner has MAX_TESTS_PER_USER tests running already."""


def test_start(*, endpoint: WebhookEndpoint, event_type: str) -> WebhookDelivery:
    """A sample event, logged as a delivery of its own (no retries, never swept: no next_attempt_at) and sent by a
    delivery worker; Busy when its owner has WEBHOOK_MAX_TESTS_PER_USER running (not older than a wait and a
    claim: a worker that died leaves its test pending)."""
    with transaction.atomic():
        _lock_owner(endpoint.user_id)
        recent = timezone.now() - dt.timedelta(seconds=cfg("TEST_WAIT_SECONDS") + IN_FLIGHT_SECONDS)
        running = WebhookDelivery.objects.filter(
            endpoint__user_id=endpoint.user_id,
            notification__isnull=True,
            status=Status.PENDING,
            next_attempt_at__isnull=True,
            created_at__gt=recent,
        ).count()
        if running >= cfg("MAX_TESTS_PER_USER"):
            raise Busy
        delivery = WebhookDelivery(endpoint=endpoint, event_type=event_type, status=Status.PENDING)
        sample = {"id": "video_" + "0" * 24, "object": "video", "status": "completed", "test": True}
        delivery.body = event_body(
            event_id=delivery.event_id, event_type=event_type, created_at=timezone.now(), data=sample
        )
        delivery.save()
        outbox.send(TEST_TASK, delivery.pk, 0)
    return delivery


def send_test(*, delivery_id: int, attempts: int) -> str:
    """The delivery worker's half of a test: its one attempt, claimed and finished like a delivery's."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id, status=Status.PENDING, attempts=attempts, next_attempt_at__isnull=True)
            .first()
        )
        if delivery is None or attempts != 0:
            return "skipped"
        attempt = WebhookAttempt.objects.create(delivery_id=delivery_id, number=1, error=UNFINISHED)
        WebhookDelivery.objects.filter(pk=delivery_id).update(attempts=1)
    fields = _attempt(delivery.endpoint, event_id=delivery.event_id, body=delivery.body)
    code = fields.get("status_code")
    ok = code is not None and 200 <= code < 300
    with transaction.atomic():
        if not WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).exists():
            return "gone"
        now = timezone.now()
        WebhookAttempt.objects.filter(pk=attempt.pk).update(finished_at=now, **{"error": "", **fields})
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=Status.DELIVERED if ok else Status.DEAD, delivered_at=now if ok else None
        )
    return "delivered" if ok else "dead"


def test_outcome(delivery: WebhookDelivery, *, wait: float) -> WebhookAttempt | None:
    """The test's finished attempt, waited for up to `wait` seconds; None when it has not finished by then."""
    deadline = time.monotonic() + wait
    while True:
        attempt = WebhookAttempt.objects.filter(delivery_id=delivery.pk, finished_at__isnull=False).first()
        if attempt is not None or time.monotonic() >= deadline:
            return attempt
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
