"""Per-worker life of a gpu runner: warm the model, then advertise the slot while the worker lives.

django-q2 forks its workers; everything here runs in the worker after the fork (never CUDA in the parent).
The worker registers with its host, slots, models, pool, version and its cluster's own queue (work is
addressed to it there). A drain (admin action) or SIGTERM makes it take no new work; on SIGTERM the job in
hand is given back to the queue at the next step, so nobody waits for its lease to expire.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection

from gpu_runner import backend, registry
from jobs import services
from videogen import provenance

log = logging.getLogger(__name__)

# Set in this worker when it must take no new work: drained by staff, or told to stop.
draining = threading.Event()
stopping = threading.Event()
# Set while a job is in hand (gpu_runner.tasks.run_job).
in_hand = threading.Event()
# When the GPU finished its last generation (time.monotonic()), while run_job chains jobs: the slot gap's start.
gpu_done_at: float | None = None
# The sentinel that forked this worker: when it is gone, this worker is an orphan (videogen.lineage).
_sentinel: int | None = None
ORPHAN_EXIT_SECONDS = 60.0  # the most an orphan waits for its job in hand to be given back


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_queue() -> str:
    return settings.RUNNER_QUEUE or "gpu"


def on_worker_spawn(sender, proc_name: str = "", **kwargs) -> None:
    """Runs in the worker before it takes its first task. Warm here, synchronously: importing torch and
    loading weights hold the GIL for seconds, which would starve the lease heartbeat of a job claimed
    meanwhile. Only then is the slot offered."""
    global _sentinel
    _sentinel = os.getppid()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        signer = provenance.check_signer()
    except provenance.SigningError as exc:
        # Fail-closed: a runner that cannot sign its clips takes no job (they wait for one that can), and says why.
        log.error("content credentials cannot be signed (%s): this worker offers no slot", exc)
        return
    log.info("content credentials signed as %s", signer)
    models = []
    for model in sorted(registry.served()):
        try:
            backend.warm(model)
            models.append(model)
        except Exception:
            log.exception("could not load model %s; not offering it", model)
    if not models:
        log.error("no model could be loaded: this worker offers no slot")
        return
    _give_back_jobs_of_dead_runners()
    threading.Thread(target=_advertise, args=(models,), name="runner-heartbeat", daemon=True).start()


def _give_back_jobs_of_dead_runners() -> None:
    """A worker starting on a host where a gpu worker died (the sentinel replacing it, or the supervisor restarting
    its cluster) gives the dead one's job back at once, instead of leaving it until its lease expires. Only a
    process that no longer exists here is dead; a reused pid just leaves the job to its lease."""
    try:
        for name in services.runners_holding_jobs(host=socket.gethostname()):
            pid = int(name.rsplit(":", 1)[1])
            if pid != os.getpid() and not _alive(pid):
                given = services.runner_gone(name=name, successor=runner_name())
                log.info("runner %s: gave back %s job(s) of dead runner %s", runner_name(), given, name)
    except Exception:  # the leases still cover it
        log.warning("could not give back the jobs of dead runners", exc_info=True)
        connection.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _on_sigterm(signum, frame) -> None:
    # The generation loop sees `stopping` at its next step and releases its job; the cluster then exits.
    stopping.set()
    draining.set()
    log.info("runner %s stopping: taking no new work, releasing the job in hand", runner_name())
    if os.getppid() != _sentinel:
        # Its cluster is gone (videogen.lineage sent this): nobody will hand it work or stop it. Leave once the
        # job in hand is given back.
        threading.Thread(target=_leave_when_idle, name="orphan-exit", daemon=True).start()


def _leave_when_idle() -> None:
    deadline = time.monotonic() + ORPHAN_EXIT_SECONDS
    while in_hand.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    log.info("runner %s: its cluster is gone; exiting", runner_name())
    os._exit(0)


def _advertise(models: list[str]) -> None:
    name = runner_name()
    interval = settings.VIDEOGEN["RUNNER_HEARTBEAT_SECONDS"]
    log.info("runner %s offering 1 slot for %s on queue %s", name, models, runner_queue())
    while not stopping.is_set():
        try:
            close_old_connections()
            drained = services.runner_heartbeat(
                name=name,
                slots=1,
                model_names=models,
                queue=runner_queue(),
                host=socket.gethostname(),
                pool=settings.RUNNER_POOL,
                version=settings.RUNNER_VERSION,
            )
            if drained:
                draining.set()
            elif not stopping.is_set():
                draining.clear()
        except Exception:
            log.warning("runner heartbeat failed", exc_info=True)
            connection.close()
        stopping.wait(interval)
    try:
        close_old_connections()
        services.runner_withdraw(name=name)
    except Exception:  # its registration then times out (RUNNER_TTL_SECONDS)
        log.warning("runner %s could not withdraw", name, exc_info=True)
