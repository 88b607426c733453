"""GET /v1/events: the user's notification log as Server-Sent Events, for clients that prefer plain HTTP to a
websocket (bearer key or session).

Each notification is one event: `id` is its seq, `event` its type, `data` the notification as the API gives it.
A client resumes with `Last-Event-ID` (browsers' EventSource send it by themselves on reconnect) or
`?last_seq=N`; a replay sends at most NOTIFY_REPLAY_MAX, the newest, after a `gap` event, as the websocket does.
Comments keep the stream alive every SSE_KEEPALIVE_SECONDS; pushes are hints and a periodic resync covers a lost
one, so a Redis restart leaves no gap. Streams count towards WS_MAX_SOCKETS_PER_USER.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from jobs.api.errors import UNAVAILABLE, envelope, unavailable
from notifications import sockets
from notifications.consumers import ensure_db_poller, next_in_line, progress_event, still_here, still_live
from notifications.selectors import notification_dict, notifications_after, read_state, replay_floor
from notifications.services import user_group

log = logging.getLogger(__name__)


def _error(status: int, message: str, code: str) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    ).encode()


def sse(event: str, data: dict, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class EventStreamConsumer(AsyncHttpConsumer):
    async def http_request(self, message) -> None:
        if message.get("more_body"):
            return  # a GET has no body worth reading
        user = self.scope.get("user")
        if self.scope.get("method") != "GET":
            await self._refuse(405, "Only GET streams events.", "method_not_allowed")
        if user is None or not user.is_authenticated:
            await self._refuse(
                401, "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.", "invalid_api_key"
            )
        headers = dict(self.scope.get("headers") or [])
        raw = (
            headers.get(b"last-event-id", b"").decode("latin1")
            or parse_qs(self.scope.get("query_string", b"").decode()).get("last_seq", ["0"])[0]
        )
        try:
            self.last_seq = max(0, int(raw))
        except ValueError:
            await self._refuse(400, "'Last-Event-ID' (or last_seq) must be a notification seq.", "invalid_value")
        self.user_id = user.pk
        self.key_hash = self.scope.get("api_key_hash")  # None: the browser's session
        try:
            if not await asyncio.to_thread(sockets.admit, self.user_id, self.channel_name):
                await self._refuse(429, "Too many open event streams and sockets for this user.", "too_many_streams")
            self.counted = True
            self.sending = asyncio.Lock()
            self.group = user_group(self.user_id)
            await self.channel_layer.group_add(self.group, self.channel_name)
        except UNAVAILABLE:
            # Redis (the count of the user's streams, the push channel) out of reach: a 503 to retry, never a 500.
            # A count already taken ages out as a dead process's does.
            await self._unavailable()
        await self.send_headers(
            status=200,
            headers=[
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no"),  # proxies must not hold the stream back
            ],
        )
        await self.send_body(b": videogen events\n\n", more_body=True)
        ensure_db_poller()
        await self.send_backlog(replay=True)
        self.ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def _refuse(self, status: int, message: str, code: str) -> None:
        await self.send_response(
            status, _error(status, message, code), headers=[(b"content-type", b"application/json")]
        )
        raise StopConsumer()

    async def _unavailable(self) -> None:
        error = unavailable()
        body = json.dumps(envelope(error.message, type=error.type, code=error.code)).encode()
        headers = [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
        await self.send_response(503, body, headers=[(b"content-type", b"application/json"), *headers])
        raise StopConsumer()

    async def _tick_forever(self) -> None:
        keepalive = settings.VIDEOGEN["SSE_KEEPALIVE_SECONDS"]
        resync = settings.VIDEOGEN["NOTIFY_RESYNC_SECONDS"]
        since_resync = 0.0
        while True:
            await asyncio.sleep(keepalive)
            since_resync += keepalive
            try:
                await self.send_body(b": keep-alive\n\n", more_body=True)
                if since_resync >= resync:
                    since_resync = 0.0
                    state = await database_sync_to_async(still_here)(self.user_id, self.channel_name, self.key_hash)
                    if state is None:
                        await self.end_revoked()
                        return
                    if state[0] > self.last_seq:
                        await self.send_backlog()  # a lost hint
            except Exception:
                log.warning("event stream tick failed", exc_info=True)

    async def notify_credentials(self, message: dict) -> None:
        """A key of this user was revoked or the user deactivated (maybe another key, another process)."""
        if not await still_live(user_id=self.user_id, key_hash=self.key_hash):
            await self.end_revoked()

    async def end_revoked(self) -> None:
        """The credential no longer works: the stream ends here (the server then reports the disconnect)."""
        if getattr(self, "ended", False):
            return
        self.ended = True
        await super().send_body(b"", more_body=False)
        if hasattr(self, "ticker") and self.ticker is not asyncio.current_task():
            self.ticker.cancel()

    async def send_body(self, body: bytes, *, more_body: bool = False) -> None:
        if getattr(self, "ended", False):
            return  # ended for its credential: a hint or a read already on its way is dropped
        await super().send_body(body, more_body=more_body)

    async def notify_hint(self, message: dict) -> None:
        if await next_in_line(self, message, self.send_note):
            return
        if message.get("seq", 0) > self.last_seq:
            await self.send_backlog()

    async def send_note(self, note: dict) -> None:
        await self.send_body(sse(note["event"], note, note["seq"]), more_body=True)

    async def notify_progress(self, message: dict) -> None:
        await self.send_body(sse("video.progress", progress_event(message)), more_body=True)  # no id: ephemeral

    async def notify_read(self, message: dict) -> None:
        read_seq, unread = await database_sync_to_async(read_state)(user_id=self.user_id)
        await self.send_body(
            sse("read", {"type": "read", "read_seq": read_seq, "unread_count": unread}), more_body=True
        )

    async def send_backlog(self, replay: bool = False) -> None:
        async with self.sending:  # one reader at a time: rows go out once, in seq order
            if replay:
                floor = await database_sync_to_async(replay_floor)(
                    user_id=self.user_id, after_seq=self.last_seq, limit=settings.VIDEOGEN["NOTIFY_REPLAY_MAX"]
                )
                if floor is not None:
                    await self.send_body(sse("gap", {"type": "gap", "skipped_to_seq": floor}), more_body=True)
                    self.last_seq = floor
            while True:
                rows = await database_sync_to_async(notifications_after)(
                    user_id=self.user_id, after_seq=self.last_seq, limit=100
                )
                for note in rows:
                    await self.send_body(sse(note.event, notification_dict(note), note.seq), more_body=True)
                    self.last_seq = note.seq
                if len(rows) < 100:
                    return

    async def disconnect(self) -> None:
        if hasattr(self, "ticker"):
            self.ticker.cancel()
        if getattr(self, "counted", False):
            self.counted = False
            await asyncio.to_thread(sockets.release, self.user_id, self.channel_name)
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
