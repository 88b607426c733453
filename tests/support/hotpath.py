"""Helpers of the hot-path tests (jobs.api.hot): requests straight into the ASGI app, Django beside it as the
fallback and the reference, and the comparison of their answers."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
from django.db import connection

from jobs import services
from jobs.accounts import api_key_create
from jobs.api import ratelimit
from jobs.api.hot import HotRoutes
from videogen import aiodb
from videogen.asgi import django_wsgi

# Headers whose values differ from one request to the next (the counters move, time passes).
MOVING = {
    "x-request-id",
    *(f"x-ratelimit-{what}-{bucket}" for what in ("remaining", "reset") for bucket in ("requests", "submits")),
    "retry-after",
    "retry-after-ms",
}


class Django:
    """The fallback: Django itself (through a2wsgi, as the web role runs it), counting what reaches it."""

    def __init__(self) -> None:
        from a2wsgi import WSGIMiddleware

        self.app = WSGIMiddleware(django_wsgi, workers=1)
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


def scope_for(path: str, headers: dict[str, str], method: str = "GET", query: bytes = b"") -> dict:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"Host": "testserver", **headers}.items()]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


def post(path: str, headers: dict[str, str], body: bytes, content_type: str = "application/json") -> tuple:
    """A POST: its scope and its body (sent in two chunks, as a client may)."""
    sized = {"Content-Type": content_type, "Content-Length": str(len(body)), **headers}
    return scope_for(path, sized, method="POST"), body


async def _call(app, request) -> tuple[int, dict[str, str], bytes]:
    scope, body = request if isinstance(request, tuple) else (request, b"")
    out: dict = {"body": b""}
    chunks = [body[: len(body) // 2], body[len(body) // 2 :]]

    async def receive():
        if not chunks:
            await asyncio.sleep(3600)  # http.disconnect would come when the client goes
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        else:
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["headers"], out["body"]


def call(app, *scopes) -> list[tuple[int, dict[str, str], bytes]]:
    """Each scope through the app on one event loop (the pool lives as long as the loop)."""

    async def go():
        try:
            return [await _call(app, scope) for scope in scopes]
        finally:
            await aiodb.close_all()

    return asyncio.run(go())


def hot_app(settings) -> HotRoutes:
    # Counters of this test's own (user ids repeat between transactional tests within a window).
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-hot-{uuid.uuid4().hex}"}}
    ratelimit._cache_down_until.clear()  # the limiter on, whatever an earlier test left
    app = HotRoutes(Django())
    assert app.on, "Postgres and Redis: the hot path is on"
    return app


def paid_user(make_user) -> tuple:
    user = make_user("hot-paid", tier="paid")
    return user, api_key_create(user_id=user.pk)


def submit(user) -> str:
    request = services.SubmitRequest(
        prompt="a lighthouse", model="wan-tiny", seconds=4, width=128, height=128, reference_png=None, request_hash="h"
    )
    job, _ = services.job_submit(user_id=user.pk, request=request, idempotency_key=None)
    return job.public_id


def same_answer(hot_answer, django_answer) -> None:
    (status, headers, body), (d_status, d_headers, d_body) = hot_answer, django_answer
    assert (status, body) == (d_status, d_body)
    # X-Request-ID: Django's middleware sets it on its answers; in the web role the outer ASGI layer
    # (videogen.requestid) sets it on both paths' answers alike.
    assert set(headers) - {"x-request-id"} == set(d_headers) - {"x-request-id"}
    assert {k: v for k, v in headers.items() if k not in MOVING} == {
        k: v for k, v in d_headers.items() if k not in MOVING
    }


TERMINATE_ASYNC = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name LIKE '%-async'"
)


def sql(statement: str):
    """One statement from a thread of its own (the tests' event loop may not touch Django's connection)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchone()[0] if cursor.description else None
    finally:
        connection.close()


def from_postgres(statement: str) -> None:
    """One statement from the server's `postgres` database (a database cannot refuse its own connections)."""
    params = {**connection.get_connection_params(), "dbname": "postgres", "autocommit": True}
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as admin:
        admin.execute(statement)


def answer_while_refusing_connections(app, request) -> tuple[int, tuple[int, dict[str, str], bytes]]:
    """The request once with the database up (the pool opens), then again after the database has stopped taking
    connections and the pool's were cut: (the first status, the second answer). Connections come back after."""
    name = connection.settings_dict["NAME"]

    async def go():
        try:
            first = (await _call(app, request))[0]
            await asyncio.to_thread(from_postgres, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await asyncio.to_thread(from_postgres, TERMINATE_ASYNC.replace("current_database()", f"'{name}'"))
            await asyncio.sleep(0.3)  # let the server close the sockets
            return first, await _call(app, request)
        finally:
            await asyncio.to_thread(from_postgres, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await aiodb.close_all()

    return asyncio.run(go())


def clear_of_window_edge(margin: float = 5.0) -> None:
    """Wait out the end of the rate limiter's current window: requests that must share one window (a limit of 1
    and its refusal) would otherwise straddle two, the second counted from zero."""
    from jobs.api.ratelimit import WINDOW_SECONDS

    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < margin:
        time.sleep(left + 0.05)
