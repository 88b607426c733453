"""The dispatcher role: reap expired leases, then bind queued jobs to free runner slots; repeat."""

from __future__ import annotations

import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection

from jobs import services

log = logging.getLogger("jobs.dispatcher")
LEADER_LOCK_KEY = 0x76696465  # "vide": one active dispatcher per database; standbys wait on the lock


class Command(BaseCommand):
    help = "Run the dispatcher loop (fair scheduling onto free GPU slots, lease reaper, retries)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="run one reap + dispatch pass and exit")

    def handle(self, *args, once: bool = False, **options) -> None:
        self.running = True
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        if once:
            reaped, resent = services.reap_expired(), services.resend_stalled_stages()
            self.stdout.write(f"reaped {reaped}, resent {resent}, dispatched {services.dispatch_once()}")
            return
        self._become_leader()
        interval = settings.VIDEOGEN["DISPATCH_INTERVAL_SECONDS"]
        self.stdout.write(f"dispatcher running (every {interval}s)")
        passes = 0
        while self.running:
            try:
                close_old_connections()
                if passes % 1000 == 0:
                    services.runners_forget_stale()
                passes += 1
                reaped = services.reap_expired()
                resent = services.resend_stalled_stages()
                dispatched = services.dispatch_once()
                if reaped or resent or dispatched:
                    log.info("reaped %s, resent %s, dispatched %s", reaped, resent, dispatched)
            except Exception:
                log.exception("dispatcher pass failed; retrying")
                connection.close()
            time.sleep(interval)

    def _become_leader(self) -> None:
        if connection.vendor != "postgresql":
            return  # the embedded profile runs one dispatcher on one machine
        self.stdout.write("waiting for the dispatcher leader lock")
        with connection.cursor() as cursor:
            # Session-level lock on a persistent connection: released when this process dies.
            cursor.execute("SELECT pg_advisory_lock(%s)", [LEADER_LOCK_KEY])
        self.stdout.write("acquired the dispatcher leader lock")

    def _stop(self, *args: object) -> None:
        self.running = False
