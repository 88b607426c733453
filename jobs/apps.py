from __future__ import annotations

import sys

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # django-q2 forks its workers: children of a process holding a connection pool would share its
        # sockets and corrupt each other's queries. Pools are for the web role only.
        pooled = "pool" in settings.DATABASES["default"].get("OPTIONS", {})
        if sys.argv[1:2] == ["qcluster"]:
            if pooled:
                raise ImproperlyConfigured("qcluster must not run with VIDEOGEN_ROLE=web (a pooled connection)")
            from videogen import lineage

            lineage.install()  # no orphaned sentinel or worker outlives its qcluster
            # A cpu or delivery cluster: each worker heartbeats (`check_liveness cpu`, `check_liveness delivery`).
            if settings.RUNNER_QUEUE in ("", settings.DELIVERY_QUEUE):
                from django_q.signals import post_spawn

                from jobs.liveness import on_cpu_worker_spawn

                post_spawn.connect(on_cpu_worker_spawn, dispatch_uid="jobs.liveness.cpu")
        from jobs.api.auth import connect_signals

        connect_signals()
