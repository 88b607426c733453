"""The gpu task. A message only means "try to claim job X": the claim is the guard.

After finishing a job the runner takes its next one itself, in the transaction that frees its slot (the same
fair-share policy as the dispatcher), and runs it at once: no broker round trip, no poll, a slot gap of
milliseconds. It stops doing so when drained, told to stop, or after half the task timeout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, connection

from gpu_runner import backend, outputs, worker
from gpu_runner.pipeline import GenerationAborted
from gpu_runner.worker import runner_name, runner_queue
from jobs import services
from jobs.accounts import tier_limits
from videogen import logcontext, metrics, provenance
from videogen.provenance import SigningError
from videogen.video_io import encode_mp4, make_thumbnail

if TYPE_CHECKING:
    from jobs.models import Job  # the claimed job, as jobs.services returns it

log = logging.getLogger(__name__)


STEPS_SHARE = 70
# What the user reads when generation fails; the exception itself goes to the log and the job's events.
GENERATION_ERROR = "The video could not be generated because of an error on the GPU runner."


class JobLost(GenerationAborted):
    """The job moved on without us (cancelled, reaped, re-dispatched): stop at once, publish nothing."""


class CompletionUnknown(Exception):
    """The database stayed unreachable while the finished clip was being recorded."""


# Pauses between tries of recording a finished clip when the database drops out (a restart, a failover).
COMPLETE_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)


def _complete(*, job_id: int, attempt: int, video_key: str, **kwargs) -> tuple[bool, Job | None]:
    """services.job_complete_and_claim_next, riding out a database blip: tried again on a new connection. A
    try whose commit landed but whose answer was lost shows on the job itself (it holds this clip)."""
    for delay in (0.0, *COMPLETE_RETRY_DELAYS):
        time.sleep(delay)
        try:
            if delay and services.job_holds_clip(job_id=job_id, attempt=attempt, video_key=video_key):
                return True, None
            return services.job_complete_and_claim_next(job_id=job_id, attempt=attempt, video_key=video_key, **kwargs)
        except (OperationalError, InterfaceError):
            log.warning("recording job %s attempt %s failed (database); will retry", job_id, attempt, exc_info=True)
            connection.close()  # a dead connection is never replaced by itself outside a request
    raise CompletionUnknown()


class Stopping(GenerationAborted):
    """The worker was told to stop (SIGTERM): give the job back instead of finishing it."""


class LeaseKeeper:
    """Renews the lease every heartbeat from a thread, so long steps and VAE decoding keep it alive.

    Progress is reported with the heartbeat. The pipeline's step callback raises JobLost once a
    heartbeat finds the job gone, which aborts generation between steps (cancel within one heartbeat).
    """

    def __init__(
        self,
        job_id: int,
        attempt: int,
        on_stall: Callable[[], None] | None = None,
        owner: tuple[int, str] | None = None,
    ) -> None:
        self.job_id, self.attempt = job_id, attempt
        self.owner = owner  # (user id, video id): told of progress live (video.progress), when it moved
        self._progress = 0
        self._announced = 0
        self.progressed_at = time.monotonic()
        self.on_stall = on_stall or _end_this_worker
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = settings.VIDEOGEN["HEARTBEAT_SECONDS"]
        try:
            while not self._stop.wait(interval):
                if not self.beat():
                    return
        finally:
            connection.close()  # this thread's own connection

    @property
    def progress(self) -> int:
        return self._progress

    @progress.setter
    def progress(self, value: int) -> None:
        self._progress = value
        self.progressed_at = time.monotonic()

    def beat(self) -> bool:
        stall = settings.VIDEOGEN["GENERATION_STALL_SECONDS"]
        if stall > 0 and time.monotonic() - self.progressed_at > stall:
            return self._stalled(stall)
        try:
            progress = self.progress
            moved = self.owner if progress != self._announced else None
            alive = services.job_heartbeat(
                job_id=self.job_id, attempt=self.attempt, progress=progress, announce_to=moved
            )
            self._announced = progress
        except Exception:
            log.warning("heartbeat for job %s failed; will retry", self.job_id, exc_info=True)
            # This thread's connection may be dead (a restart, a failover): Django never replaces a broken
            # persistent connection outside a request, so drop it and let the next beat connect afresh.
            connection.close()
            return True  # a database hiccup is not a lost lease; the reaper decides that
        if not alive:
            self.lost.set()
        return alive

    def _stalled(self, stall: float) -> bool:
        """No step and no phase for `stall` seconds: the thread is alive but generation is not (a hung kernel,
        a deadlock). The attempt is given back now (retried elsewhere, counted), and this worker process ends
        so that its cluster starts a fresh one: a hung generation cannot be interrupted from here, and its
        GPU memory is freed only with the process."""
        self.lost.set()
        log.error("job %s attempt %s made no progress for %.0f s; giving it back", self.job_id, self.attempt, stall)
        try:
            services.job_fail_attempt(
                job_id=self.job_id,
                attempt=self.attempt,
                error_code="generation_stalled",
                message=GENERATION_ERROR,
                retryable=True,
                detail=f"no progress for {stall:.0f} s (at {self._progress}%)",
            )
        finally:
            self.on_stall()
        return False

    def on_step(self, step: int, total: int) -> None:
        # Denoising is ~70% of the bar; VAE decoding (often the longest part on small models), encoding
        # and storing fill the rest.
        self.progress = min(STEPS_SHARE, int(step * STEPS_SHARE / max(total, 1)))  # and the time of it
        if self.lost.is_set():
            raise JobLost()
        if worker.stopping.is_set():
            raise Stopping()


def _end_this_worker() -> None:
    os._exit(75)  # the cluster's sentinel replaces a worker that died


def run_job(job_id: int) -> str:
    """Claim and run job X, then the runner's next jobs while it has them. Returns the first job's outcome."""
    deadline = time.monotonic() + settings.GPU_TASK_TIMEOUT / 2
    first: str | None = None
    todo: int | Job | None = job_id
    worker.in_hand.set()
    try:
        while todo is not None:
            take_next = not worker.draining.is_set() and time.monotonic() < deadline
            outcome, todo = _run_one(todo, take_next=take_next)
            first = first or outcome
    finally:
        worker.in_hand.clear()
        worker.gpu_done_at = None  # the next message starts a new chain: idle time is not a gap
    return first or "not claimed"


def _run_one(todo: int | Job, *, take_next: bool) -> tuple[str, Job | None]:
    """Run a job id (claimed here) or a job the previous completion already claimed for this runner."""
    runner = runner_name()
    if isinstance(todo, int):
        if worker.stopping.is_set():
            services.job_release(job_id=todo, attempt=None, reason=f"runner {runner} shutting down")
            return "released", None
        job = services.job_claim(job_id=todo, runner=runner)
        if job is None:
            return "not claimed", None  # a duplicate or stale message: someone else has it, or it moved on
    else:
        job = todo
        if worker.stopping.is_set():
            services.job_release(job_id=job.pk, attempt=job.attempt, reason=f"runner {runner} shutting down")
            return "released", None
    with logcontext.bind(**logcontext.job_fields(job)):  # every line of this attempt names the job and request
        return _run_claimed(job, runner=runner, take_next=take_next)


def _run_claimed(job: Job, *, runner: str, take_next: bool) -> tuple[str, Job | None]:
    job_id, attempt = job.pk, job.attempt
    keys: list[str] = []
    try:
        with LeaseKeeper(job_id, attempt, owner=(job.user_id, job.public_id)) as lease:
            started = time.monotonic()
            if worker.gpu_done_at is not None:  # the job before, in this chain: the GPU idled since it finished
                metrics.SLOT_GAP.labels(settings.RUNNER_POOL).observe(started - worker.gpu_done_at)
            frames, fps = backend.generate(job, lease.on_step)
            worker.gpu_done_at = time.monotonic()
            took = worker.gpu_done_at - started
            if lease.lost.is_set():
                raise JobLost()
            lease.progress = 85
            made = backend.generation(job)
            if tier_limits(job.tier)["WATERMARK"]:
                frames = provenance.watermark(frames)
            video = encode_mp4(frames, fps=fps)
            thumbnail = make_thumbnail(frames[0])
            base = f"videos/{job.public_id}/attempt-{attempt}"
            keys.extend(outputs.store(base=base, video=video, thumbnail=thumbnail, generation=made))
        done, next_job = _complete(
            job_id=job_id,
            attempt=attempt,
            video_key=keys[0],
            thumbnail_key=keys[1],
            video_signed=True,
            runner=runner,
            gpu_seconds=took,
            next_for_queue=runner_queue() if take_next and not worker.draining.is_set() else None,
        )
        if done:
            return "completed", next_job
        raise JobLost()
    except CompletionUnknown:
        # The clip may be the job's now (a commit whose answer was lost): keep it, burn nothing. If the
        # completion never landed, the lease expires and the reaper retries the job.
        log.error(
            "job %s attempt %s: completion not confirmed (database unreachable); left to the lease", job_id, attempt
        )
        return "unconfirmed", None
    except JobLost:
        for key in keys:
            default_storage.delete(key)
        log.info("job %s attempt %s lost its lease; stopped", job_id, attempt)
        return "lost", None
    except Stopping:
        services.job_release(job_id=job_id, attempt=attempt, reason=f"runner {runner} shutting down")
        log.info("job %s attempt %s released: runner stopping", job_id, attempt)
        return "released", None
    except SigningError as exc:  # fail-closed: nothing was stored; the attempt is retried (on another runner)
        services.job_fail_attempt(
            job_id=job_id,
            attempt=attempt,
            error_code="signing_failed",
            message=GENERATION_ERROR,
            retryable=True,
            detail=f"content credentials: {exc}"[:1000],
        )
        return "failed", None
    except Exception as exc:
        for key in keys:
            default_storage.delete(key)
        log.exception("job %s attempt %s failed", job_id, attempt)
        services.job_fail_attempt(
            job_id=job_id,
            attempt=attempt,
            error_code="generation_error",
            message=GENERATION_ERROR,
            retryable=True,
            detail=f"{type(exc).__name__}: {exc}"[:1000],  # for staff (the job's events), never the user
        )
        return "failed", None
