"""The remote worker role: drive one remote generation pool (jobs.backends, gpu_runner.remote)."""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand, CommandError

from gpu_runner.remote import RemoteWorker
from jobs import backends
from videogen import provenance


class Command(BaseCommand):
    help = "Drive a remote generation pool (REMOTE_POOLS_FILE) as a runner with the pool's concurrency."

    def add_arguments(self, parser) -> None:
        parser.add_argument("pool", help="the pool's name in REMOTE_POOLS_FILE")

    def handle(self, *args, pool: str, **options) -> None:
        try:
            config = backends.get(pool)
        except backends.PoolConfigError as exc:
            raise CommandError(f"REMOTE_POOLS_FILE: {exc}") from None
        if config is None:
            known = ", ".join(sorted(backends.pools())) or "none (is REMOTE_POOLS_FILE set?)"
            raise CommandError(f"no remote pool {pool!r}; configured: {known}")
        try:
            signer = provenance.check_signer()
        except provenance.SigningError as exc:  # fail-closed: no clip is stored unsigned
            raise CommandError(f"content credentials cannot be signed: {exc} (see manage.py c2pa_setup)") from None
        worker = RemoteWorker(config)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: worker.stop.set())
        self.stdout.write(
            f"remote worker for pool {pool} ({config.dialect.name}, {config.base_url}): "
            f"{config.concurrency} slot(s) for {', '.join(sorted(config.models))}; signing as {signer}"
        )
        worker.run()
