"""The SIMULATED backend and SIMULATED runners: load and fault tests of the scheduler without a GPU or frames.

Nothing here generates a video. A simulated runner goes through the same `jobs.services` calls as the real
gpu task (gpu_runner.tasks) — register and heartbeat, claim, lease heartbeats, complete and take the next job
in the same transaction, fail an attempt, release on a graceful stop — but "runs" a job by sleeping for a
duration drawn from a configurable distribution:

- `SimulatedDurations`: lognormal fitted to a median and a 99th percentile (default 30 s and 5 min, the
  figures of a real text-to-video service), multiplied by a time factor (0.02 turns 30 s into 0.6 s real),
  with optional failure injection (an attempt fails part way through, as a crashed pipeline would).
- `SimulatedRunner`: one thread with its own database connection, one slot, its own queue ("sim.<n>").
  Pickup: the dispatcher hands it work by setting the job to `dispatched` on its queue and enqueueing a
  django-q2 message there ("try to claim job X"). The simulated runner does not consume the broker:
  it polls `Job` rows in state `dispatched` on its queue, which is equivalent, since the message carries
  nothing but the job id and the claim is the guard. While it has a backlog it never polls: like the real
  runner it takes its next job in the transaction that completes the previous one.
- `simulated_generate`: what a real gpu worker runs with GPU_BACKEND=simulated (`make chaos`): the whole real
  runner path (claim, lease, steps, encode, store, complete) around a SIMULATED generation that sleeps a drawn
  duration in steps and returns a tiny placeholder clip; a prompt with the poison marker fails every attempt.
- `SimulatedCpuStage`: the cpu stages, simulated: real input moderation (`job_moderate_input`), and an output
  review that passes (there are no frames to look at) through the same `apply_decisions` as the real stage.

Log lines and runner names say "simulated", so a simulated fleet is never mistaken for a real one.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections, connection

from jobs import services
from jobs.models import Job, State
from jobs.services.stages import apply_decisions
from moderation import policy as moderation_policy
from moderation.models import Action, Stage

log = logging.getLogger(__name__)

Z99 = 2.3263478740408408  # the standard normal's 99th percentile
SIMULATED_POLICY = "simulated-output-review"


@dataclass(frozen=True)
class SimulatedDurations:
    """How long a simulated job takes, in real seconds: lognormal(p50, p99) x time_factor.

    `fail_rate` is the chance that an attempt fails, at a uniformly drawn point of its run.
    """

    p50: float = 30.0
    p99: float = 300.0
    time_factor: float = 1.0
    fail_rate: float = 0.0

    @property
    def sigma(self) -> float:
        return math.log(self.p99 / self.p50) / Z99 if self.p99 > self.p50 else 0.0

    @property
    def mean(self) -> float:
        """Mean duration in real seconds (the lognormal's mean, scaled)."""
        return self.p50 * math.exp(self.sigma**2 / 2) * self.time_factor

    def sample(self, rng: random.Random) -> tuple[float, float | None]:
        """(duration, fails_after): real seconds; fails_after is None unless this attempt fails."""
        duration = rng.lognormvariate(math.log(self.p50), self.sigma) * self.time_factor
        fails_after = duration * rng.random() if self.fail_rate and rng.random() < self.fail_rate else None
        return duration, fails_after


class SimulatedPoison(Exception):
    """A SIMULATED generation failure: the poison job of a fault run."""


SIMULATED_STEPS = 8


def simulated_generate(job, on_step: Callable[[int, int], None]):
    """SIMULATED generation for a real gpu worker: (frames, fps) of a 16x16 placeholder after a drawn delay."""
    import numpy as np

    cfg = settings.SIMULATED_GENERATION
    durations = SimulatedDurations(p50=cfg["P50_SECONDS"], p99=cfg["P99_SECONDS"], time_factor=cfg["TIME_FACTOR"])
    duration, _ = durations.sample(random.Random(f"{job.public_id}:{job.attempt}"))
    poison = cfg["POISON_MARKER"] and cfg["POISON_MARKER"] in job.prompt
    for step in range(1, SIMULATED_STEPS + 1):
        time.sleep(duration / SIMULATED_STEPS)
        if poison and step == SIMULATED_STEPS // 2:
            raise SimulatedPoison("simulated poison job: this generation always fails")
        on_step(step, SIMULATED_STEPS)  # raises when the lease is lost or the runner stops
    frames = np.zeros((5, 16, 16, 3), dtype=np.uint8)
    frames[:, :, :, 0] = job.seed % 256
    return frames, 8


@dataclass
class SimulatedRun:
    """One attempt on one simulated runner, in wall-clock seconds (time.time(), comparable to the database).

    `planned_end` is when the simulated GPU finished; `woke` when the runner thread noticed (GIL, timers);
    `done` when its completion (and the choice of its next job) committed. The slot gap before a job is its
    `started` minus the previous run's `planned_end` on the same runner.
    """

    runner: str
    job_id: int
    attempt: int
    claim_began: float
    started: float
    duration: float
    planned_end: float
    woke: float = 0.0
    done: float = 0.0
    outcome: str = ""  # completed | failed | released | lost
    took_next: bool = False  # the completion handed this runner its next job
    via: str = ""  # how the job reached the runner: poll (dispatcher) | next (take-next)


class SimulatedRunner(threading.Thread):
    """A simulated GPU runner with one slot on its own queue (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        queue: str,
        durations: SimulatedDurations,
        seed: int,
        model_names: list[str] | None = None,
        poll_seconds: float = 0.02,
        take_next: bool = True,
        on_run: Callable[[SimulatedRun], None] | None = None,
    ) -> None:
        super().__init__(name=f"simulated-runner-{name}", daemon=True)
        self.runner_name = name
        self.queue = queue
        self.durations = durations
        self.rng = random.Random(seed)
        self.model_names = model_names or [settings.VIDEOGEN["DEFAULT_MODEL"]]
        self.poll_seconds = poll_seconds
        self.take_next = take_next
        self.on_run = on_run or (lambda run: None)
        self.runs: list[SimulatedRun] = []
        self.registered_at: float | None = None
        self.stopped_at: float | None = None
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._draining = False
        self._next_beat = 0.0

    # --- control -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful stop, as SIGTERM to a real runner: take no new work, give the job in hand back now."""
        self._stopping.set()

    @property
    def _why(self) -> str:
        return f"simulated runner {self.runner_name} stopping"

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # --- the loop ------------------------------------------------------------------------------------

    def run(self) -> None:
        log.info("simulated runner %s up: 1 slot for %s on queue %s", self.runner_name, self.model_names, self.queue)
        try:
            self._beat(force=True)
            self.registered_at = time.time()
            while not self._stopping.is_set():
                job_id = None if self._draining else self._dispatched_to_me()
                if job_id is None:
                    self._wait(self.poll_seconds)
                    continue
                via = "poll"
                todo: int | Job | None = job_id
                while todo is not None and not self._stopping.is_set():
                    todo = self._run_one(todo, via=via)
                    via = "next"
                if isinstance(todo, Job):  # claimed for us as we were told to stop
                    services.job_release(job_id=todo.pk, attempt=todo.attempt, reason=self._why)
            # Work dispatched to us and not claimed yet goes back too (the real task releases what arrives).
            for job_id in self._all_dispatched_to_me():
                services.job_release(job_id=job_id, attempt=None, reason=self._why)
        except BaseException as exc:
            self.error = exc
            log.exception("simulated runner %s crashed", self.runner_name)
        finally:
            self.stopped_at = time.time()
            log.info("simulated runner %s stopped", self.runner_name)
            connection.close()

    def _beat(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_beat:
            return
        self._next_beat = now + settings.VIDEOGEN["RUNNER_HEARTBEAT_SECONDS"]
        try:
            self._draining = services.runner_heartbeat(
                name=self.runner_name,
                slots=1,
                model_names=self.model_names,
                queue=self.queue,
                host="simulated",
                pool="simulated",
                version="simulated",
            )
        except Exception:
            log.warning("simulated runner %s: heartbeat failed", self.runner_name, exc_info=True)
            close_old_connections()

    def _wait(self, seconds: float) -> bool:
        """Sleep (heartbeating the registration when due); True when told to stop."""
        deadline = time.monotonic() + seconds
        while True:
            self._beat()
            left = deadline - time.monotonic()
            if left <= 0:
                return self._stopping.is_set()
            if self._stopping.wait(min(left, max(0.0, self._next_beat - time.monotonic()))):
                return True

    def _dispatched_to_me(self) -> int | None:
        return (
            Job.objects.filter(state=State.DISPATCHED, queue=self.queue)
            .order_by("dispatched_at", "id")
            .values_list("id", flat=True)
            .first()
        )

    def _all_dispatched_to_me(self) -> list[int]:
        return list(Job.objects.filter(state=State.DISPATCHED, queue=self.queue).values_list("id", flat=True))

    def _run_one(self, todo: int | Job, *, via: str) -> Job | None:
        """Claim (unless the last completion claimed it for us), run (sleep), complete and claim the next job:
        exactly as gpu_runner.tasks._run_one."""
        claim_began = time.time()
        job = services.job_claim(job_id=todo, runner=self.runner_name) if isinstance(todo, int) else todo
        if job is None:
            return None  # someone else has it, or it moved on
        job_id = job.pk
        started = time.time()
        duration, fails_after = self.durations.sample(self.rng)
        run = SimulatedRun(
            runner=self.runner_name,
            job_id=job_id,
            attempt=job.attempt,
            claim_began=claim_began,
            started=started,
            duration=duration,
            planned_end=started + (fails_after if fails_after is not None else duration),
            via=via,
        )
        outcome = self._sleep_until(run)
        run.woke = time.time()
        next_job: Job | None = None
        if outcome == "stopped":
            services.job_release(job_id=job_id, attempt=run.attempt, reason=self._why)
            run.outcome = "released"
        elif outcome == "lost":
            run.outcome = "lost"
        elif fails_after is not None:
            services.job_fail_attempt(
                job_id=job_id,
                attempt=run.attempt,
                error_code="simulated_failure",
                message="simulated backend: injected failure",
                retryable=True,
            )
            run.outcome = "failed"
        else:
            take = self.take_next and not self._draining and not self._stopping.is_set()
            done, next_job = services.job_complete_and_claim_next(
                job_id=job_id,
                attempt=run.attempt,
                video_key="",  # the simulated backend makes no frames
                thumbnail_key="",
                runner=self.runner_name,
                gpu_seconds=duration,
                next_for_queue=self.queue if take else None,
            )
            run.outcome = "completed" if done else "lost"
            run.took_next = next_job is not None
        run.done = time.time()
        self.runs.append(run)
        self.on_run(run)
        return next_job

    def _sleep_until(self, run: SimulatedRun) -> str:
        """Sleep until the planned end, renewing the lease and the registration; 'done', 'stopped' or 'lost'."""
        lease_every = settings.VIDEOGEN["HEARTBEAT_SECONDS"]
        next_lease = time.monotonic() + lease_every
        end = time.monotonic() + (run.planned_end - time.time())
        while True:
            now = time.monotonic()
            if now >= end:
                return "done"
            if now >= next_lease:
                next_lease = now + lease_every
                if not services.job_heartbeat(job_id=run.job_id, attempt=run.attempt):
                    return "lost"
            self._beat()
            timeout = min(end, next_lease, self._next_beat) - time.monotonic()
            if self._stopping.wait(max(0.0, timeout)):
                return "stopped"


class SimulatedCpuStage(threading.Thread):
    """The cpu stages, simulated: pending -> queued by the real input policy, reviewing -> succeeded by a
    simulated output review (no frames exist). Polls the job table instead of the cpu broker queue (the
    message only names the job; both stages are idempotent)."""

    def __init__(self, *, poll_seconds: float = 0.02, batch: int = 200) -> None:
        super().__init__(name="simulated-cpu-stage", daemon=True)
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.moderated = 0
        self.reviewed = 0
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                if not self.pass_once():
                    self._stopping.wait(self.poll_seconds)
            self.pass_once()  # what arrived while stopping
        except BaseException as exc:
            self.error = exc
            log.exception("simulated cpu stage crashed")
        finally:
            connection.close()

    def pass_once(self) -> int:
        handled = 0
        pending = Job.objects.filter(state=State.PENDING).order_by("id").values_list("id", flat=True)
        for job_id in list(pending[: self.batch]):
            services.job_moderate_input(job_id=job_id)
            self.moderated += 1
            handled += 1
        reviewing = Job.objects.filter(state=State.REVIEWING).order_by("id").values_list("id", flat=True)
        for job_id in list(reviewing[: self.batch]):
            simulated_review_output(job_id)
            self.reviewed += 1
            handled += 1
        return handled


def simulated_review_output(job_id: int) -> str | None:
    """reviewing -> succeeded: the simulated backend made no frames, so the simulated review allows."""
    allowed = moderation_policy.Decision(action=Action.ALLOW, stage=Stage.OUTPUT_FRAMES, policy=SIMULATED_POLICY)
    return apply_decisions(job_id=job_id, at=State.REVIEWING, decisions=[allowed])


@dataclass
class SimulatedFleet:
    """N simulated runners named `<prefix>-<i>` on queues `<prefix>.<i>`, started and stopped together."""

    durations: SimulatedDurations
    size: int
    prefix: str = "sim"
    seed: int = 1
    poll_seconds: float = 0.02
    model_names: list[str] | None = None
    runners: list[SimulatedRunner] = field(default_factory=list)

    def start(self) -> SimulatedFleet:
        for i in range(self.size):
            runner = SimulatedRunner(
                name=f"{self.prefix}-{i}",
                queue=f"{self.prefix}.{i}",
                durations=self.durations,
                seed=self.seed * 1000 + i,
                model_names=self.model_names,
                poll_seconds=self.poll_seconds,
            )
            self.runners.append(runner)
            runner.start()
        return self

    def wait_registered(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while any(r.registered_at is None and r.is_alive() for r in self.runners):
            if time.monotonic() > deadline:
                raise TimeoutError("simulated runners did not register")
            time.sleep(0.01)

    def stop(self, runners: list[SimulatedRunner] | None = None, timeout: float = 30.0) -> None:
        chosen = self.runners if runners is None else runners
        for runner in chosen:
            runner.stop()
        for runner in chosen:
            runner.join(timeout)

    @property
    def runs(self) -> list[SimulatedRun]:
        return [run for runner in self.runners for run in runner.runs]

    @property
    def errors(self) -> list[BaseException]:
        return [r.error for r in self.runners if r.error is not None]
