"""The web role: HTTP (Django + DRF + admin + static) and websockets (Channels) on one origin, one port.

HTTP runs on Django's WSGI handler in a thread pool (a2wsgi), not on Django's ASGI handler: the ASGI handler
runs every sync view on one shared thread per process, so a process serves one request at a time, and it
spools the whole body before the view runs. Under a2wsgi each process serves WEB_THREADS requests at once
(their database waits overlap) and the body streams to the view only as it is read. Websockets stay on
Channels' async consumers, and so does `GET /v1/events` (Server-Sent Events). `manage.py web` runs WEB_WORKERS
such processes on one socket (docs/decisions/serving.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")
os.environ.setdefault("VIDEOGEN_ROLE", "web")  # pooled database connections (see settings)

from videogen import boot

boot.prepare()

from django.core.wsgi import get_wsgi_application  # noqa: E402

django_wsgi = get_wsgi_application()  # sets Django up before the imports below

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import StaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from jobs.api.auth import ApiKeyAuthMiddleware  # noqa: E402
from jobs.api.hot import HotRoutes  # noqa: E402
from notifications.consumers import BrowserOriginValidator, EventsConsumer  # noqa: E402
from notifications.streams import EventStreamConsumer  # noqa: E402
from videogen.asgiguard import DjangoGuard  # noqa: E402
from videogen.bodylimit import BodyLimitMiddleware  # noqa: E402
from videogen.headers import DropUnderscoreHeaders  # noqa: E402
from videogen.requestid import RequestIdASGI  # noqa: E402

# Static files (admin CSS, the page's JS) are served by the web role itself: no extra server to run.
# The hottest route (a status read by a bearer key) is served on the event loop; Django answers the rest.
wsgi_http = BodyLimitMiddleware(
    HotRoutes(WSGIMiddleware(StaticFilesHandler(django_wsgi), workers=settings.WEB_THREADS))
)
# Server-Sent Events are long-lived: an async consumer, never a thread of the pool; Django's host check and
# security headers still apply (DjangoGuard), as on every route Django serves.
event_stream = DjangoGuard(AuthMiddlewareStack(ApiKeyAuthMiddleware(EventStreamConsumer.as_asgi())))


async def _http(scope, receive, send):
    if scope["path"] == "/v1/events":
        return await event_stream(scope, receive, send)
    return await wsgi_http(scope, receive, send)


http = RequestIdASGI(_http)  # every HTTP answer carries X-Request-ID, and the logs of its work too


# One reading of every request: header names with an underscore never get past here (videogen.headers).
application = DropUnderscoreHeaders(
    ProtocolTypeRouter(
        {
            "http": http,
            "websocket": BrowserOriginValidator(
                AuthMiddlewareStack(ApiKeyAuthMiddleware(URLRouter([path("ws/events", EventsConsumer.as_asgi())])))
            ),
        }
    )
)
