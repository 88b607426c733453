"""The web role: HTTP (Django + DRF + admin + static) and websockets (Channels) in one ASGI app."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")
os.environ.setdefault("VIDEOGEN_ROLE", "web")  # pooled database connections (see settings)

from django.core.asgi import get_asgi_application

django_asgi = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from jobs.api.auth import ApiKeyAuthMiddleware  # noqa: E402
from notifications.consumers import BrowserOriginValidator, EventsConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Static files (admin CSS, the page's JS) are served by the web role itself: no extra server to run.
        "http": ASGIStaticFilesHandler(django_asgi),
        "websocket": BrowserOriginValidator(
            AuthMiddlewareStack(ApiKeyAuthMiddleware(URLRouter([path("ws/events", EventsConsumer.as_asgi())])))
        ),
    }
)
