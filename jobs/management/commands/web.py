"""The web role as every deployment runs it: `manage.py web [--host H] [--port P]`.

uvicorn with WEB_WORKERS processes on one socket, each serving HTTP on WEB_THREADS threads and websockets
on its event loop (videogen.asgi). `make run`, the end-to-end tests and `make bench` all start it this way.
"""

from __future__ import annotations

import os

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

from videogen.env import env_int, env_str


class Command(BaseCommand):
    help = "Serve the web role (API, pages, admin, websockets) with WEB_WORKERS processes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=env_str("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=env_int("PORT", 8000))
        parser.add_argument("--workers", type=int, default=settings.WEB_WORKERS)

    def handle(self, *args, host: str, port: int, workers: int, **options) -> None:
        # The worker processes import videogen.asgi afresh; they must pool connections, whatever this
        # management command was started as.
        os.environ["VIDEOGEN_ROLE"] = "web"
        uvicorn.run(
            "videogen.asgi:application",
            host=host,
            port=port,
            workers=workers,
            log_level=env_str("WEB_LOG_LEVEL", "warning"),
            # The limit on a request's headers; bodies are bounded by videogen.bodylimit.
            h11_max_incomplete_event_size=64 * 1024,
            lifespan="off",
            timeout_graceful_shutdown=10,
        )
