"""Per-worker life of a gpu runner: warm the model, then advertise the slot while the worker lives.

django-q2 forks its workers; everything here runs in the worker after the fork (never CUDA in the parent).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection

from gpu_runner import backend, registry
from jobs import services

log = logging.getLogger(__name__)


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def on_worker_spawn(sender, proc_name: str = "", **kwargs) -> None:
    """Runs in the worker before it takes its first task. Warm here, synchronously: importing torch and
    loading weights hold the GIL for seconds, which would starve the lease heartbeat of a job claimed
    meanwhile. Only then is the slot offered."""
    models = []
    for model in sorted(registry.entries()):
        try:
            backend.warm(model)
            models.append(model)
        except Exception:
            log.exception("could not load model %s; not offering it", model)
    if not models:
        log.error("no model could be loaded: this worker offers no slot")
        return
    threading.Thread(target=_advertise, args=(models,), name="runner-heartbeat", daemon=True).start()


def _advertise(models: list[str]) -> None:
    name = runner_name()
    interval = settings.VIDEOGEN["RUNNER_HEARTBEAT_SECONDS"]
    log.info("runner %s offering 1 slot for %s", name, models)
    while True:
        try:
            close_old_connections()
            services.runner_heartbeat(name=name, slots=1, model_names=models)
        except Exception:
            log.warning("runner heartbeat failed", exc_info=True)
            connection.close()
        time.sleep(interval)
