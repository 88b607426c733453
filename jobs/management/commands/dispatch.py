"""The dispatcher role: reap expired leases, re-send stalled stages, cancel jobs past their start deadline,
bind queued jobs to free slots by the fair-share policy, publish queue positions and waits, and sweep what is past
its retention (files, prompts, old rows); repeat.

Several dispatchers may run (on several hosts): each dispatch pass takes a transaction-scoped advisory
lock, and the reaper's row locks and conditional updates make its passes safe to overlap.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection

from jobs import liveness, ops, services
from notifications import emails, webhooks

log = logging.getLogger("jobs.dispatcher")
SWEEP_EVERY_PASSES = 5  # the webhook and email retry sweeps: about once a second


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
            expired = services.expire_deadlines()
            dispatched = services.dispatch_once()
            services.publish_queue_summary()
            swept, _ = services.retention_sweep()
            self.stdout.write(
                f"reaped {reaped}, resent {resent}, expired {expired}, dispatched {dispatched}, "
                f"files purged {swept['files']}, prompts erased {swept['prompts']}"
            )
            return
        interval = settings.VIDEOGEN["DISPATCH_INTERVAL_SECONDS"]
        self.stdout.write(f"dispatcher running (every {interval}s)")
        # Publishing reads the whole queue (1.8 s at 1M queued): its own thread and connection, so it never
        # holds up a dispatch pass.
        threading.Thread(target=self._publish_loop, name="queue-publisher", daemon=True).start()
        # Removing files waits on storage round trips: its own thread too.
        if settings.VIDEOGEN["RETENTION_SWEEP_SECONDS"] > 0:
            threading.Thread(target=self._retention_loop, name="retention", daemon=True).start()
        # Liveness (`check_liveness dispatcher`): the loop itself beats (every 5 passes), so a hung loop shows.
        passes = 0
        while self.running:
            try:
                close_old_connections()
                if passes % 1000 == 0:
                    services.runners_forget_stale()
                    liveness.forget_stale()
                if passes % 5 == 0:
                    liveness.beat("dispatcher")
                passes += 1
                reaped = services.reap_expired()
                resent = services.resend_stalled_stages()
                expired = services.expire_deadlines()
                dispatched = services.dispatch_once()
                if passes % SWEEP_EVERY_PASSES == 0:  # retries that are due, and deliveries whose task was lost
                    webhooks.enqueue_due()
                    emails.enqueue_due()
                if reaped or resent or expired or dispatched:
                    log.info("reaped %s, resent %s, expired %s, dispatched %s", reaped, resent, expired, dispatched)
            except Exception:
                log.exception("dispatcher pass failed; retrying")
                connection.close()
            time.sleep(interval)

    def _publish_loop(self) -> None:
        every = settings.VIDEOGEN["QUEUE_PUBLISH_SECONDS"]
        self._next_sample = 0.0
        while self.running:
            took = 0.0
            try:
                close_old_connections()
                took = services.publish_queue_summary()
                if time.monotonic() >= self._next_sample:  # the operations page's sample, after a fresh summary
                    ops.take_sample()
                    self._next_sample = time.monotonic() + settings.VIDEOGEN["OPS_SAMPLE_SECONDS"]
            except Exception:
                log.exception("publishing the queue summary failed; retrying")
                connection.close()
            # A huge queue makes publishing slower: space it out so it never takes over 10% of the time.
            time.sleep(max(every, 10 * took))
        connection.close()

    def _retention_loop(self) -> None:
        every = settings.VIDEOGEN["RETENTION_SWEEP_SECONDS"]
        while self.running:
            full = False
            try:
                close_old_connections()
                done, full = services.retention_sweep()
                if any(done.values()):
                    log.info("retention sweep: %s", ", ".join(f"{what} {n}" for what, n in done.items()))
            except Exception:
                log.exception("the retention sweep failed; retrying")
                connection.close()
            if not full:  # a full batch means more is due: go on at once
                time.sleep(every)
        connection.close()

    def _stop(self, *args: object) -> None:
        self.running = False
