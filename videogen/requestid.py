"""`X-Request-ID`: taken from the request when it is a sane token (a proxy's or a client's id), made here
otherwise, answered on every HTTP response, bound for the logs (videogen.logcontext) and kept on the job a
submission makes, so the job's tasks, runners and transitions carry it too.

Two layers, because the web role serves some routes on the event loop and Django on a thread pool (a context
variable does not cross into the pool): the ASGI layer settles the id and puts it on the request's headers and
the response's; Django's middleware binds it in the thread that runs the view."""

from __future__ import annotations

import re
import uuid

from videogen import logcontext

HEADER = b"x-request-id"
_VALID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def accept(value: str | None) -> str:
    """The caller's id when it is a plain token of at most 128 characters; a new one otherwise."""
    return value if value and _VALID.match(value) else uuid.uuid4().hex


class RequestIdASGI:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        sent = next((value for name, value in scope["headers"] if name == HEADER), b"")
        rid = accept(sent.decode("latin-1"))
        encoded = rid.encode()
        scope = {**scope, "headers": [*(h for h in scope["headers"] if h[0] != HEADER), (HEADER, encoded)]}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, encoded)]}
            await send(message)

        with logcontext.bind(request_id=rid):
            await self.app(scope, receive, send_with_id)


def RequestIdMiddleware(get_response):
    def middleware(request):
        rid = accept(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = rid
        with logcontext.bind(request_id=rid):
            response = get_response(request)
        response["X-Request-ID"] = rid
        return response

    return middleware
