"""`manage.py check_liveness ROLE`: exit 0 when a process of the role heartbeated recently on this host (or
anywhere with --any-host), 1 otherwise. For supervisors, systemd watchdogs and Kubernetes liveness probes."""

from __future__ import annotations

import socket

from django.conf import settings
from django.core.management.base import BaseCommand

from jobs import liveness


class Command(BaseCommand):
    help = "Exit non-zero when no process of ROLE (dispatcher, cpu, delivery, gpu, remote) heartbeated recently."

    def add_arguments(self, parser) -> None:
        parser.add_argument("role", choices=liveness.ROLES)
        parser.add_argument("--any-host", action="store_true", help="a live process on any host will do")
        parser.add_argument(
            "--max-age", type=float, default=None, help="seconds a heartbeat stays fresh (default RUNNER_TTL_SECONDS)"
        )

    def handle(self, *args, role: str, any_host: bool, max_age: float | None, **options) -> None:
        max_age = max_age if max_age is not None else settings.VIDEOGEN["RUNNER_TTL_SECONDS"]
        host = None if any_host else socket.gethostname()
        names = liveness.live(role, host=host, max_age=max_age)
        where = "any host" if any_host else host
        if not names:
            self.stderr.write(f"{role}: no heartbeat on {where} within {max_age:g} s")
            raise SystemExit(1)
        self.stdout.write(f"{role}: live on {where}: {', '.join(sorted(names))}")
