"""Stuck jobs: running far past what their shape usually takes. A read (the admin's view, the stuck gauge) and
nothing else: requeueing one is jobs.services.job_requeue_stuck, fenced like every runner write.

A shape's p99 is estimated from its learned run time (ShapeCost: an exponentially weighted mean and variance of
observed runs, normal approximation: mean + 2.33 sd). A job is stuck once its current attempt has run longer
than JOB_STUCK_FACTOR times that (at least JOB_STUCK_MIN_SECONDS); a shape with fewer than STUCK_MIN_SAMPLES runs
is judged by its estimated cost instead (three times it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from jobs.models import Job, Runner, ShapeCost, State

STUCK_MIN_SAMPLES = 5
Z99 = 2.326


@dataclass(frozen=True)
class Stuck:
    job: Job
    running_for: float  # seconds since this attempt was dispatched
    p99: float | None  # the shape's estimated p99 (None: too few runs observed)
    bound: float  # past this it counts as stuck
    runner: Runner | None  # its registration (host, pool, version, last heartbeat), if still there

    @property
    def last_heartbeat(self) -> datetime | None:
        """The runner's last lease renewal: the lease's end minus its length."""
        if self.job.lease_expires_at is None:
            return None
        return self.job.lease_expires_at - timezone.timedelta(seconds=settings.VIDEOGEN["LEASE_SECONDS"])


def p99(shape: ShapeCost) -> float | None:
    if shape.samples < STUCK_MIN_SAMPLES:
        return None
    return shape.mean_seconds + Z99 * math.sqrt(max(0.0, shape.var_seconds2))


def stuck_jobs(*, limit: int = 500) -> list[Stuck]:
    cfg = settings.VIDEOGEN
    now = timezone.now()
    floor = cfg["STUCK_MIN_SECONDS"]
    # Candidates through the state index: running, and past the smallest bound any job can have.
    running = list(
        Job.objects.filter(state=State.RUNNING, dispatched_at__lt=now - timezone.timedelta(seconds=floor))
        .select_related("user")
        .order_by("dispatched_at")[:limit]
    )
    if not running:
        return []
    shapes = {(j.model, j.width, j.height, j.seconds) for j in running}
    shape_filter = Q()
    for model, width, height, seconds in shapes:
        shape_filter |= Q(model=model, width=width, height=height, seconds=seconds)
    learned = {(s.model, s.width, s.height, s.seconds): s for s in ShapeCost.objects.filter(shape_filter)}
    runners = {r.name: r for r in Runner.objects.filter(name__in={j.runner_id for j in running})}
    out = []
    for job in running:
        shape = learned.get((job.model, job.width, job.height, job.seconds))
        estimate = p99(shape) if shape is not None else None
        basis = estimate if estimate is not None else 3 * job.cost
        bound = max(floor, cfg["STUCK_FACTOR"] * basis)
        running_for = (now - job.dispatched_at).total_seconds()
        if running_for > bound:
            out.append(Stuck(job, running_for, estimate, bound, runners.get(job.runner_id)))
    return out
