"""Header names with an underscore are dropped where requests enter the web role.

WSGI spells every header as HTTP_<NAME> with dashes turned into underscores, so `Idempotency_Key` and
`Idempotency-Key` become the same variable for Django, while code that reads the raw ASGI headers tells them
apart: one request could then be read two ways (a replayed create making a second video). Dropping such names at
the entrance, as nginx and gunicorn do by default, leaves one reading. No standard or SDK header has one.
"""

from __future__ import annotations


class DropUnderscoreHeaders:
    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = scope.get("headers") or []
            if any(b"_" in name for name, _ in headers):
                scope = {**scope, "headers": [(name, value) for name, value in headers if b"_" not in name]}
        return await self.application(scope, receive, send)
