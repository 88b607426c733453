"""Request bodies are bounded before anything reads them (an ASGI middleware in front of Django).

A declared Content-Length over the route's limit is answered 413 at once, before authentication and
before a byte of the body is read. A chunked body (no Content-Length) is read here as it streams in and cut
off with the same 413 as soon as it passes the limit, then handed on with its length (WSGI needs one), so
no route ever holds more than its limit, whoever sends it. The limit depends on the route: the create
endpoint takes a reference image (multipart, or a base64 data URL in JSON); everything else is small JSON
or a form.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

from jobs.api.errors import envelope

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Routes whose body may carry a reference image (the create endpoint; remix will join it).
UPLOAD_PATHS = frozenset({"/v1/videos"})


def limit_for(path: str) -> int:
    return settings.UPLOAD_BODY_MAX_BYTES if path.rstrip("/") in UPLOAD_PATHS else settings.BODY_MAX_BYTES


def too_large_body(limit: int) -> bytes:
    message = f"The request body is too large for this endpoint: at most {limit} bytes."
    return json.dumps(envelope(message, type="invalid_request_error", code="body_too_large")).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope["path"])
        declared = None
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = limit + 1  # unparsable: refuse rather than guess
        if declared is not None and declared > limit:
            await self._refuse(send, limit)
            return
        if declared is not None or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)  # the server never delivers more than it declared
            return
        # Chunked: read it here, up to the limit, and hand it on with its length (WSGI needs one).
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away mid-body: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = [(k, v) for k, v in scope.get("headers") or () if k != b"transfer-encoding"]
        scope = dict(scope, headers=[*headers, (b"content-length", str(size).encode())])
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # http.disconnect, whenever it comes
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = too_large_body(limit)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
