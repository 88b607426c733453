"""/ws/events: live notifications. The log is the truth; pushes are hints that make the socket read it.

A client connects with `?last_seq=N` (or sends {"type": "resume", "last_seq": N}) and receives every
notification after N in seq order, then new ones as they are written. Duplicates are possible across
reconnects; clients dedupe by seq. A replay sends at most NOTIFY_REPLAY_MAX notifications, the newest: a
client further behind first gets {"type": "gap", "skipped_to_seq": S} and reads the rest from
GET /v1/notifications if it wants them. A user has at most WS_MAX_SOCKETS_PER_USER sockets open at once
(over all web processes when Redis is there); one more is closed with code 4429.
"""

from __future__ import annotations

import asyncio
import logging
import random
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from jobs.api.auth import credential_live
from jobs.api.errors import UNAVAILABLE
from notifications import sockets
from notifications.selectors import counter_state, notification_dict, notifications_after, read_state, replay_floor
from notifications.services import user_group

log = logging.getLogger(__name__)


async def still_live(*, user_id: int, key_hash: str | None) -> bool:
    """Whether a stream's credential still works. A check that fails (the database away) counts as not: the stream
    closes, its client reconnects, and a key that still works opens it again."""
    try:
        return await database_sync_to_async(credential_live)(user_id=user_id, key_hash=key_hash)
    except Exception:
        log.warning("credential check failed; closing the stream", exc_info=True)
        return False


class BrowserOriginValidator:
    """Browsers always send Origin, and it must be this very server as the browser reached it (scheme, host
    and port) or one of CSRF_TRUSTED_ORIGINS: the session cookie rides along with any page's socket.

    Clients without an Origin are not browsers (no other site's page can open their socket) and pass.
    """

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin")
        if origin is not None and not same_origin(origin.decode("latin1"), scope, headers):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def same_origin(origin: str, scope, headers) -> bool:
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    host = headers.get(b"host", b"").decode("latin1")
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme = "https" if scope.get("scheme") == "wss" or settings.HTTPS else "http"
    return origin == f"{scheme}://{host}"


def still_here(user_id: int, channel_name: str, key_hash: str | None) -> tuple[int, int] | None:
    """A stream's periodic resync, in one trip to a thread: None if its credential (the key it opened with, or
    its user for a browser's session) no longer works; otherwise renew its place among the user's open streams
    and read the user's (last seq, read seq). Only when these moved does the stream read the log (most resyncs
    of an idle socket read two rows and nothing else)."""
    if not credential_live(user_id=user_id, key_hash=key_hash):
        return None
    sockets.refresh(user_id, channel_name)
    return counter_state(user_id=user_id)


async def next_in_line(stream, message: dict, send) -> bool:
    """A hint carrying the very next notification of a stream that has sent everything before it: sent as it
    is, no read of the log. False: the stream reads the log instead (it is behind, or the hint has no row)."""
    note, seq = message.get("note"), message.get("seq", 0)
    if note is None or seq != stream.last_seq + 1:
        return False
    async with stream.sending:  # the same lock as the log's reader: rows go out once, in seq order
        if seq != stream.last_seq + 1:
            return seq <= stream.last_seq  # sent meanwhile (done), or a gap opened (read the log)
        await send(note)
        stream.last_seq = seq
        return True


def progress_event(message: dict) -> dict:
    data = {"id": message["video_id"], "object": "video", "status": "in_progress", "progress": message["progress"]}
    return {"type": "progress", "event": "video.progress", "data": data}


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user_id = user.pk
        self.key_hash = self.scope.get("api_key_hash")  # None: the browser's session
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            self.last_seq = max(0, int(query.get("last_seq", ["0"])[0]))
        except ValueError:
            self.last_seq = 0
        try:
            if not await asyncio.to_thread(sockets.admit, self.user_id, self.channel_name):
                await self.close(code=4429)  # too many sockets for this user
                return
            self.counted = True
            self.group = user_group(self.user_id)
            self.sending = asyncio.Lock()
            await self.channel_layer.group_add(self.group, self.channel_name)
        except UNAVAILABLE:
            # Redis (the count of the user's sockets, the push channel) out of reach: the socket is accepted and
            # closed with 1013 (try again later), never a failed handshake (a 500). A count already taken ages
            # out as a dead process's does, so disconnect() has nothing to undo.
            self.counted = False
            if hasattr(self, "group"):
                del self.group
            await self.accept()
            await self.close(code=1013)
            return
        await self.accept()
        ensure_db_poller()
        await self.send_backlog(replay=True)
        # Pushes are at-most-once: a periodic look at the log covers a lost hint.
        self.resync = asyncio.get_running_loop().create_task(self._resync_forever())

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "resync"):
            self.resync.cancel()
        if getattr(self, "counted", False):
            await asyncio.to_thread(sockets.release, self.user_id, self.channel_name)
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _resync_forever(self) -> None:
        every = settings.VIDEOGEN["NOTIFY_RESYNC_SECONDS"]
        # Spread over the period: sockets that connected together (a deploy, a reconnect wave) must not all
        # read the log in the same instant.
        await asyncio.sleep(random.uniform(0, every))
        told: tuple[int, int] | None = None  # the (last seq, read seq) the client's badge last reflected
        while True:
            try:
                state = await database_sync_to_async(still_here)(self.user_id, self.channel_name, self.key_hash)
                if state is None:
                    await self.close_revoked()
                    return
                if state[0] > self.last_seq:
                    await self.send_backlog()  # a lost hint
                if state != told:
                    await self.send_read_state(read_seq=state[1])
                    told = state
            except Exception:
                log.warning("resync failed", exc_info=True)
            await asyncio.sleep(every)

    async def notify_credentials(self, message: dict) -> None:
        """A key of this user was revoked or the user deactivated (maybe another key, another process)."""
        if not await still_live(user_id=self.user_id, key_hash=self.key_hash):
            await self.close_revoked()

    async def close_revoked(self) -> None:
        """The credential no longer works: nothing more is sent, and the socket closes with 4401."""
        if getattr(self, "revoked", False):
            return
        self.revoked = True
        if hasattr(self, "resync") and self.resync is not asyncio.current_task():
            self.resync.cancel()
        await self.close(code=4401)

    async def send(self, text_data=None, bytes_data=None, close=False) -> None:
        if getattr(self, "revoked", False):
            return  # closed for its credential: a hint or a read already on its way is dropped
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    @classmethod
    async def decode_json(cls, text_data: str):
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None  # answered below, rather than closing the socket

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "resume":
            try:
                self.last_seq = max(0, int(content.get("last_seq", 0)))
            except (TypeError, ValueError):
                await self.send_json({"type": "error", "message": "last_seq must be an integer"})
                return
            await self.send_backlog(replay=True)
        elif isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "last_seq": self.last_seq})
        else:
            await self.send_json({"type": "error", "message": 'expected {"type": "resume" | "ping", ...}'})

    async def notify_hint(self, message: dict) -> None:
        if await next_in_line(self, message, self.send_note):
            return
        if message.get("seq", 0) > self.last_seq:
            await self.send_backlog()

    async def send_note(self, note: dict) -> None:
        await self.send_json({"type": "notification", **note})

    async def notify_progress(self, message: dict) -> None:
        """Ephemeral: no seq, not replayed; the video object (GET /v1/videos/{id}) stays the truth."""
        await self.send_json(progress_event(message))

    async def notify_read(self, message: dict) -> None:
        await self.send_read_state()

    async def send_read_state(self, read_seq: int | None = None) -> None:
        """Another tab marked notifications read (or a resync, which knows the read seq): the badge follows."""
        read_seq, unread = await database_sync_to_async(read_state)(user_id=self.user_id, read_seq=read_seq)
        await self.send_json({"type": "read", "read_seq": read_seq, "unread_count": unread})

    async def send_backlog(self, replay: bool = False) -> None:
        async with self.sending:  # one reader at a time, so rows go out once and in seq order
            if replay:  # a (re)connect: never the whole history, only the newest NOTIFY_REPLAY_MAX
                floor = await database_sync_to_async(replay_floor)(
                    user_id=self.user_id, after_seq=self.last_seq, limit=settings.VIDEOGEN["NOTIFY_REPLAY_MAX"]
                )
                if floor is not None:
                    await self.send_json({"type": "gap", "skipped_to_seq": floor})
                    self.last_seq = floor
            while True:
                rows = await database_sync_to_async(notifications_after)(
                    user_id=self.user_id, after_seq=self.last_seq, limit=100
                )
                for note in rows:
                    await self.send_json({"type": "notification", **notification_dict(note)})
                    self.last_seq = note.seq
                if len(rows) < 100:
                    return


# --- embedded profile: one database poller per web process --------------------------------------
# The in-memory channel layer cannot carry hints from runner processes, so the web process looks for new
# rows itself and wakes its local sockets. With channels-redis the writers' hints arrive directly.

_poller: asyncio.Task | None = None


def ensure_db_poller() -> None:
    global _poller
    if "InMemoryChannelLayer" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        return
    if _poller is None or _poller.done():
        _poller = asyncio.get_running_loop().create_task(_poll_forever())


def _latest_since(last_id: int) -> tuple[int, dict[int, int]]:
    from notifications.models import Notification

    latest: dict[int, int] = {}
    top = last_id
    for pk, user_id, seq in Notification.objects.filter(pk__gt=last_id).values_list("pk", "user_id", "seq"):
        latest[user_id] = max(seq, latest.get(user_id, 0))
        top = max(top, pk)
    return top, latest


def _max_id() -> int:
    from notifications.models import Notification

    return Notification.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


async def _poll_forever() -> None:
    layer = get_channel_layer()
    last_id = await database_sync_to_async(_max_id)()
    interval = settings.VIDEOGEN["NOTIFY_POLL_SECONDS"]
    while True:
        await asyncio.sleep(interval)
        try:
            last_id, latest = await database_sync_to_async(_latest_since)(last_id)
            for user_id, seq in latest.items():
                await layer.group_send(user_group(user_id), {"type": "notify.hint", "seq": seq})
        except Exception:
            log.warning("notification poller failed; retrying", exc_info=True)
