"""Live streams and their credential: a key revoked (or deleted, or its user deactivated) closes the streams it
opened, in every web process, before the next event (websocket code 4401, the SSE stream ends); a change no
signal saw is found by the next resync. And the event stream passes Django's host check and security headers."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import ApplicationCommunicator, WebsocketCommunicator
from django.db import transaction
from django.utils import timezone

from jobs.accounts import api_key_create
from jobs.models import ApiKey
from notifications.services import notification_create

pytestmark = pytest.mark.django_db(transaction=True)

HOST = (b"host", b"127.0.0.1:8000")


def _notify(user, prompt: str) -> None:
    with transaction.atomic():
        notification_create(
            user_id=user.pk, job_id=None, event="video.cancelled", payload={"id": "video_x", "prompt": prompt}
        )


def _revoke(key: str) -> None:
    """What the admin's revoke does: the key row saved with revoked_at (its signals fire)."""
    row = ApiKey.objects.get(prefix=key[:10])
    row.revoked_at = timezone.now()
    row.save()


def _revoke_unseen(key: str) -> None:
    """A change no signal reports (a bulk update): only the streams' own resync can find it."""
    ApiKey.objects.filter(prefix=key[:10]).update(revoked_at=timezone.now())


def _deactivate(user) -> None:
    user.is_active = False
    user.save()


def _sse_scope(key: str, host: bytes = b"127.0.0.1:8000") -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", host), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _open_sse(key: str) -> tuple[ApplicationCommunicator, dict]:
    from videogen.asgi import application

    comm = ApplicationCommunicator(application, _sse_scope(key))
    await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await comm.receive_output(timeout=10)
    assert start["type"] == "http.response.start" and start["status"] == 200, start
    first = await comm.receive_output(timeout=10)
    assert first["body"].startswith(b": videogen events")
    return comm, start


async def _sse_until_end(comm: ApplicationCommunicator, seconds: float = 15) -> bytes:
    """Everything the stream sends until it ends (more_body false); fails if it is still open after `seconds`."""
    got, deadline = b"", asyncio.get_running_loop().time() + seconds
    while True:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"the stream did not end: {got!r}"
        if await comm.receive_nothing(timeout=min(left, 0.5), interval=0.02):
            continue
        message = await comm.receive_output()
        got += message.get("body", b"")
        if not message.get("more_body", False):
            return got


@pytest.mark.parametrize("change", ["revoke", "delete", "deactivate"])
def test_an_sse_stream_ends_when_its_key_is_revoked_before_the_next_event(user, change):
    key = api_key_create(user_id=user.pk)
    act = {
        "revoke": lambda: _revoke(key),
        "delete": lambda: ApiKey.objects.get(prefix=key[:10]).delete(),
        "deactivate": lambda: _deactivate(user),
    }[change]

    async def scenario():
        comm, _ = await _open_sse(key)
        await database_sync_to_async(_notify)(user, "before")
        await database_sync_to_async(act)()
        await database_sync_to_async(_notify)(user, "a secret prompt")
        body = await _sse_until_end(comm)
        assert b"before" in body  # the stream was live
        assert b"a secret prompt" not in body, body
        await comm.send_input({"type": "http.disconnect"})
        await comm.wait(timeout=5)

    asyncio.run(scenario())


def test_another_key_of_the_same_user_keeps_its_stream(user):
    kept, revoked = api_key_create(user_id=user.pk), api_key_create(user_id=user.pk)

    async def scenario():
        comm, _ = await _open_sse(kept)
        await database_sync_to_async(_revoke)(revoked)
        await database_sync_to_async(_notify)(user, "still mine")
        got = b""
        while b"still mine" not in got:
            message = await comm.receive_output(timeout=10)
            assert message.get("more_body"), got  # not ended
            got += message["body"]
        await comm.send_input({"type": "http.disconnect"})
        await comm.wait(timeout=5)

    asyncio.run(scenario())


def test_a_change_no_signal_saw_ends_the_sse_stream_at_its_next_resync(user, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "SSE_KEEPALIVE_SECONDS": 0.2, "NOTIFY_RESYNC_SECONDS": 0.2}
    key = api_key_create(user_id=user.pk)

    async def scenario():
        comm, _ = await _open_sse(key)
        await database_sync_to_async(_revoke_unseen)(key)
        body = await _sse_until_end(comm)
        assert b"keep-alive" in body or body == b""
        await comm.send_input({"type": "http.disconnect"})
        await comm.wait(timeout=5)

    asyncio.run(scenario())


async def _ws_closed_code(comm: WebsocketCommunicator, seconds: float = 15) -> tuple[int, list[dict]]:
    """The close code the socket got, and what it was sent before it."""
    seen, deadline = [], asyncio.get_running_loop().time() + seconds
    while True:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"the socket was not closed: {seen}"
        if await comm.receive_nothing(timeout=min(left, 0.5), interval=0.02):
            continue
        message = await comm.receive_output()
        if message["type"] == "websocket.close":
            return message.get("code"), seen
        seen.append(message)


@pytest.mark.parametrize("change", ["revoke", "deactivate"])
def test_a_websocket_closes_with_4401_when_its_key_is_revoked_before_the_next_event(user, change):
    from videogen.asgi import application

    key = api_key_create(user_id=user.pk)
    act = {"revoke": lambda: _revoke(key), "deactivate": lambda: _deactivate(user)}[change]

    async def scenario():
        comm = WebsocketCommunicator(
            application, "/ws/events", headers=[HOST, (b"authorization", f"Bearer {key}".encode())]
        )
        assert (await comm.connect())[0]
        await database_sync_to_async(act)()
        await database_sync_to_async(_notify)(user, "a secret prompt")
        code, seen = await _ws_closed_code(comm)
        assert code == 4401
        assert not any("a secret prompt" in str(m) for m in seen), seen
        await comm.disconnect()

        again = WebsocketCommunicator(
            application, "/ws/events", headers=[HOST, (b"authorization", f"Bearer {key}".encode())]
        )
        connected, code = await again.connect()
        assert not connected and code == 4401

    asyncio.run(scenario())


def test_a_change_no_signal_saw_closes_the_websocket_at_its_next_resync(user, settings):
    from videogen.asgi import application

    settings.VIDEOGEN = {**settings.VIDEOGEN, "NOTIFY_RESYNC_SECONDS": 0.2}
    key = api_key_create(user_id=user.pk)

    async def scenario():
        comm = WebsocketCommunicator(
            application, "/ws/events", headers=[HOST, (b"authorization", f"Bearer {key}".encode())]
        )
        assert (await comm.connect())[0]
        await database_sync_to_async(_revoke_unseen)(key)
        code, _ = await _ws_closed_code(comm)
        assert code == 4401
        await comm.disconnect()

    asyncio.run(scenario())


# --- the event stream behind Django's host check and security headers --------------------------------------


def test_the_event_stream_refuses_a_host_not_allowed_and_carries_the_security_headers(user):
    from videogen.asgi import application

    key = api_key_create(user_id=user.pk)

    async def scenario():
        bad = ApplicationCommunicator(application, _sse_scope(key, host=b"evil.example"))
        await bad.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await bad.receive_output(timeout=10)
        assert start["type"] == "http.response.start" and start["status"] == 400
        body = await bad.receive_output(timeout=10)
        assert b"video" not in body["body"]

        comm, start = await _open_sse(key)
        headers = {name.decode(): value.decode() for name, value in start["headers"]}
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cross-origin-opener-policy"] == "same-origin"
        assert headers["content-type"].startswith("text/event-stream")
        await comm.send_input({"type": "http.disconnect"})
        await comm.wait(timeout=5)

    asyncio.run(scenario())
