"""Liveness of the roles that serve no HTTP: heartbeat rows, and the check `manage.py check_liveness` runs.

Runners (gpu and remote) heartbeat through their Runner rows already; the dispatcher and each cpu or delivery
worker process write a RoleHeartbeat row. A role is live on a host when one of its rows there is fresher than the
bound (RUNNER_TTL_SECONDS by default)."""

from __future__ import annotations

import logging
import os
import socket
import threading

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models.functions import Now

from jobs.backends import REMOTE_QUEUE_PREFIX
from jobs.models import RoleHeartbeat, Runner
from jobs.services.transitions import db_now_plus

log = logging.getLogger(__name__)
ROLES = ("dispatcher", "cpu", "delivery", "gpu", "remote")


def beat(role: str) -> None:
    name = f"{socket.gethostname()}:{os.getpid()}"
    if not RoleHeartbeat.objects.filter(name=name).update(role=role, last_seen_at=Now()):
        RoleHeartbeat.objects.update_or_create(
            name=name, defaults={"role": role, "host": socket.gethostname(), "last_seen_at": Now()}
        )


def beat_forever(role: str, stop: threading.Event | None = None) -> None:
    """A daemon thread's loop: one heartbeat every RUNNER_HEARTBEAT_SECONDS until `stop`."""
    stop = stop or threading.Event()
    interval = settings.VIDEOGEN["RUNNER_HEARTBEAT_SECONDS"]
    while True:
        try:
            close_old_connections()
            beat(role)
        except Exception:
            log.warning("%s heartbeat failed", role, exc_info=True)
            connection.close()
        if stop.wait(interval):
            return


def on_cpu_worker_spawn(sender=None, proc_name: str = "", **kwargs) -> None:
    """A worker of the cpu cluster, or of the delivery cluster (its own role)."""
    role = "delivery" if settings.RUNNER_QUEUE == settings.DELIVERY_QUEUE else "cpu"
    threading.Thread(target=beat_forever, args=(role,), name=f"{role}-heartbeat", daemon=True).start()


def live(role: str, *, host: str | None, max_age: float) -> list[str]:
    """The names of the role's processes (on `host`, or anywhere) seen within `max_age` seconds."""
    fresh = db_now_plus(-max_age)
    if role in ("gpu", "remote"):
        prefix = "gpu" if role == "gpu" else REMOTE_QUEUE_PREFIX
        rows = Runner.objects.filter(last_seen_at__gte=fresh, queue__startswith=prefix)
    else:
        rows = RoleHeartbeat.objects.filter(role=role, last_seen_at__gte=fresh)
    if host:
        rows = rows.filter(host=host)
    return list(rows.values_list("name", flat=True))


def forget_stale(*, older_than_seconds: float = 3600) -> int:
    return RoleHeartbeat.objects.filter(last_seen_at__lt=db_now_plus(-older_than_seconds)).delete()[0]
