"""Django's host check and security headers for the HTTP routes served outside Django's handler.

The event stream (GET /v1/events) is a Channels consumer, so Django's middleware never sees it. This wrapper
asks Django itself: the request's Host must pass ALLOWED_HOSTS (Django's own 400 otherwise, logged as Django
logs it), SecurityMiddleware may redirect to HTTPS, and the answer carries the headers that SecurityMiddleware
and XFrameOptionsMiddleware put on every other route.
"""

from __future__ import annotations

import io

from asgiref.sync import sync_to_async
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import response_for_exception
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware


def _blank(request) -> HttpResponse:
    return HttpResponse()


class DjangoGuard:
    def __init__(self, application) -> None:
        self.application = application
        self.security = SecurityMiddleware(_blank)
        self.frames = XFrameOptionsMiddleware(_blank)

    async def __call__(self, scope, receive, send):
        request = ASGIRequest(scope, io.BytesIO())
        try:
            request.get_host()
        except DisallowedHost as exc:
            # Django's answer and its security log line; sync: the 400 handler may render a template.
            return await _answer(send, await sync_to_async(response_for_exception)(request, exc))
        redirect = self.security.process_request(request)
        if redirect is not None:
            return await _answer(send, redirect)
        template = self.frames.process_response(request, self.security.process_response(request, HttpResponse()))
        extra = [(k.lower().encode("latin1"), v.encode("latin1")) for k, v in template.items() if k != "Content-Type"]

        async def guarded_send(message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers") or []}
                added = [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": [*(message.get("headers") or []), *added]}
            await send(message)

        return await self.application(scope, receive, guarded_send)


async def _answer(send, response: HttpResponse) -> None:
    headers = [(k.encode("latin1"), v.encode("latin1")) for k, v in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
