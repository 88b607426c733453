"""Writes of the notification log. Called by jobs.services inside a transition's transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import IntegrityError, connection, transaction

from notifications import emails, webhooks
from notifications.models import TERMINAL_EVENTS, Notification, NotificationCounter
from notifications.selectors import notification_dict

log = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"notify.{user_id}"


def _next_seq(user_id: int) -> int:
    # One UPDATE ... RETURNING (the ORM's update cannot return): it takes the counter's row lock until commit,
    # so concurrent writers for one user queue up, and answers the new seq in the same round trip.
    with connection.cursor() as cursor:
        cursor.execute(_BUMP_SEQ, [user_id])
        row = cursor.fetchone()
    if row is not None:
        return row[0]
    try:
        with transaction.atomic():
            NotificationCounter.objects.create(user_id=user_id, last_seq=1)
            return 1
    except IntegrityError:  # another transaction created it first
        return _next_seq(user_id)


_table, _seq, _user = (
    NotificationCounter._meta.db_table,
    NotificationCounter._meta.get_field("last_seq").column,
    NotificationCounter._meta.get_field("user").column,
)
_BUMP_SEQ = f'UPDATE "{_table}" SET "{_seq}" = "{_seq}" + 1 WHERE "{_user}" = %s RETURNING "{_seq}"'


def notification_create(
    *, user_id: int, job_id: int | None, event: str, payload: dict, attempt: int = 0
) -> Notification | None:
    """Append a notification; returns None when it was already notified: a terminal event for this job, or
    another event for this job's attempt (models.TERMINAL_EVENTS)."""
    if not connection.in_atomic_block:
        raise RuntimeError("a notification is written in the transaction of the change it reports")
    if job_id is not None:
        earlier = Notification.objects.filter(job_id=job_id, event=event)
        if event not in TERMINAL_EVENTS:
            earlier = earlier.filter(attempt=attempt)
        if earlier.exists():
            return None
    seq = _next_seq(user_id)
    note = Notification.objects.create(
        user_id=user_id, seq=seq, job_id=job_id, event=event, payload=payload, attempt=attempt
    )
    webhooks.outbox_for(note)  # the webhook deliveries and the email it causes, in the same transaction
    emails.outbox_for(note)
    transaction.on_commit(lambda: push_hint(user_id=user_id, seq=seq, note=notification_dict(note)))
    return note


_hints: tuple[int, asyncio.AbstractEventLoop] | None = None
_hints_lock = threading.Lock()


def _hint_loop() -> asyncio.AbstractEventLoop:
    """One event loop per process, on its own thread, that sends every hint (created after a fork, too)."""
    global _hints
    with _hints_lock:
        if _hints is None or _hints[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="push-hints", daemon=True).start()
            _hints = (os.getpid(), loop)
        return _hints[1]


def push_hint(*, user_id: int, seq: int, note: dict | None = None) -> None:
    """Tell live sockets that a row exists. A hint only: lost hints are covered by resume and resync.

    `note` is the committed row as streams send it: a stream that has sent everything up to seq - 1 sends it
    as it is, without reading the log (the common case); any other stream reads the log from its last seq.

    Over Redis, sent from this process's hint loop without waiting: the caller (a runner between two jobs, a
    request) neither builds an event loop and a Redis connection per hint nor waits for the round trip. The
    in-memory layer (embedded profile) lives on the web process's own loop, so there it is sent from that loop.
    """
    _push(user_id, {"type": "notify.hint", "seq": seq, "note": note})


def push_progress(*, user_id: int, video_id: str, progress: int) -> None:
    """video.progress to the owner's live streams: ephemeral (never in the log) and may be dropped."""
    _push(user_id, {"type": "notify.progress", "video_id": video_id, "progress": progress})


def push_credentials_changed(*, user_id: int) -> None:
    """A key of this user was revoked or deleted, or the user deactivated: each of their live streams, in every
    web process, checks its own credential and closes if it no longer works (each resync checks it too).

    Sent before this returns (hints are not): a notification written after the change then has its hint queued
    behind this message, so no stream sends it before it has checked its credential."""
    _push(user_id, {"type": "notify.credentials"}, wait=CREDENTIALS_PUSH_WAIT_SECONDS)


CREDENTIALS_PUSH_WAIT_SECONDS = 5.0


def _push(user_id: int, message: dict, wait: float = 0) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        try:
            async_to_sync(layer.group_send)(user_group(user_id), message)
        except Exception:  # the log is the truth; a failed push must never fail the write that caused it
            log.warning("push %s failed for user %s", message, user_id, exc_info=True)
        return

    def done(future) -> None:
        if future.exception() is not None:  # the log is the truth; a failed push only loses a hint
            log.warning("push %s failed for user %s: %r", message, user_id, future.exception())

    future = asyncio.run_coroutine_threadsafe(layer.group_send(user_group(user_id), message), _hint_loop())
    future.add_done_callback(done)
    if wait:
        with contextlib.suppress(Exception):  # reported by done(); the streams' resync covers a lost message
            future.result(timeout=wait)


def notifications_mark_read(*, user_id: int, up_to_seq: int) -> int:
    """Everything up to `up_to_seq` (at most the last written) is read; returns the user's read seq. Every open
    tab hears of it (a hint; tabs also re-read it when they resync)."""
    with transaction.atomic():
        counter, _ = NotificationCounter.objects.select_for_update().get_or_create(user_id=user_id)
        read = max(counter.read_seq, min(up_to_seq, counter.last_seq))
        if read != counter.read_seq:
            NotificationCounter.objects.filter(user_id=user_id).update(read_seq=read)
    transaction.on_commit(lambda: _push(user_id, {"type": "notify.read", "read_seq": read}))
    return read
