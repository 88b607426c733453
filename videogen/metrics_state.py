"""The state gauges of /metrics, read from the database at scrape time (videogen.metrics), and the autoscaling
signal. Every read goes through an index or the queue summary the dispatcher publishes: a scrape costs the same
at a thousand queued jobs as at a million."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from jobs.accounts import tier_limits
from jobs.models import Job, QueueSummary, Runner, State
from jobs.services.transitions import db_now_plus

S = State
# A tier with no wait bound (0) is still drained within this, for the autoscaling signal.
DEFAULT_WAIT_BOUND_SECONDS = 3600.0


@dataclass(frozen=True)
class PoolState:
    pool: str
    runners: int
    slots: int
    busy: int
    slots_per_runner: float
    queued_work: float  # GPU-seconds queued for the pool's models (a model several pools serve: split by slots)
    needed_runners: int


def _live_runners() -> list[Runner]:
    ttl = settings.VIDEOGEN["RUNNER_TTL_SECONDS"]
    return list(Runner.objects.filter(last_seen_at__gte=db_now_plus(-ttl), draining=False))


def needed_slots(*, busy: int, work_by_tier: dict[str, float]) -> int:
    """Slots that keep every tier within its wait bound: those busy now, plus each tier's queued GPU-seconds
    over its bound (the rate at which that backlog must drain). Costs are learned from observed run times, so a
    GPU-second of cost is a second of one slot."""
    rate = 0.0
    for tier, work in work_by_tier.items():
        bound = float(tier_limits(tier)["WAIT_BOUND_SECONDS"]) or DEFAULT_WAIT_BOUND_SECONDS
        rate += work / bound
    return busy + math.ceil(rate - 1e-9)


def pools() -> list[PoolState]:
    runners = _live_runners()
    by_pool: dict[str, list[Runner]] = defaultdict(list)
    for runner in runners:
        by_pool[runner.pool].append(runner)
    busy_by_queue: dict[str, int] = defaultdict(int)
    for queue in Job.objects.filter(state__in=(S.DISPATCHED, S.RUNNING)).values_list("queue", flat=True).iterator():
        busy_by_queue[queue] += 1
    slots_by_model: dict[str, int] = defaultdict(int)
    for runner in runners:
        for model in runner.model_names:
            slots_by_model[model] += runner.slots
    summaries = {s.model: s.data for s in QueueSummary.objects.all()}
    out = []
    for pool, members in sorted(by_pool.items()):
        slots = sum(r.slots for r in members)
        busy = sum(busy_by_queue[q] for q in {r.queue for r in members})
        work_by_tier: dict[str, float] = defaultdict(float)
        for model in {m for r in members for m in r.model_names}:
            share = sum(r.slots for r in members if model in r.model_names) / max(1, slots_by_model[model])
            for tier, queue in (summaries.get(model, {}).get("tiers") or {}).items():
                work_by_tier[tier] += float(queue.get("work") or 0.0) * share
        per_runner = slots / len(members)
        need = needed_slots(busy=busy, work_by_tier=work_by_tier)
        out.append(
            PoolState(
                pool, len(members), slots, busy, per_runner, sum(work_by_tier.values()), math.ceil(need / per_runner)
            )
        )
    return out


def collect() -> Iterator[GaugeMetricFamily]:
    now = timezone.now()
    depth = GaugeMetricFamily("videogen_queue_depth", "Jobs waiting for a GPU", labels=["tier", "model"])
    oldest = GaugeMetricFamily(
        "videogen_queue_oldest_age_seconds", "How long the oldest waiting job has waited", labels=["tier", "model"]
    )
    for summary in QueueSummary.objects.all():
        for tier, queue in (summary.data.get("tiers") or {}).items():
            depth.add_metric([tier, summary.model], queue.get("count", 0))
            first = (
                Job.objects.filter(state=S.QUEUED, tier=tier, model=summary.model, queued_at__isnull=False)
                .order_by("queued_at")
                .values_list("queued_at", flat=True)
                .first()
            )
            oldest.add_metric([tier, summary.model], (now - first).total_seconds() if first else 0.0)
    yield depth
    yield oldest

    slots = GaugeMetricFamily("videogen_runner_slots", "Slots of live runners taking work", labels=["pool"])
    busy = GaugeMetricFamily("videogen_runner_slots_busy", "Slots holding a dispatched or running job", labels=["pool"])
    runners = GaugeMetricFamily("videogen_runners", "Live runners taking work", labels=["pool"])
    needed = GaugeMetricFamily(
        "videogen_runners_needed",
        "Autoscaling signal: runners each pool needs so every tier's queued GPU-seconds drain within its wait bound",
        labels=["pool"],
    )
    for state in pools():
        slots.add_metric([state.pool], state.slots)
        busy.add_metric([state.pool], state.busy)
        runners.add_metric([state.pool], state.runners)
        needed.add_metric([state.pool], state.needed_runners)
    yield from (slots, busy, runners, needed)

    bound = GaugeMetricFamily(
        "videogen_tier_wait_bound_seconds", "Each tier's wait bound (0: none); alerts compare waits with it",
        labels=["tier"],
    )  # fmt: skip
    for tier, limits in settings.VIDEOGEN_TIERS.items():
        bound.add_metric([tier], float(limits["WAIT_BOUND_SECONDS"]))
    yield bound

    from jobs.stuck import stuck_jobs

    stuck = GaugeMetricFamily(
        "videogen_jobs_stuck", "Running jobs far past their shape's estimated p99 (the admin's stuck-job view)"
    )
    stuck.add_metric([], len(stuck_jobs()))
    yield stuck

    reserved = Job.objects.filter(state__in=(S.PENDING, S.QUEUED, S.DISPATCHED, S.RUNNING, S.REVIEWING)).aggregate(
        total=Sum("credits")
    )["total"]
    held = GaugeMetricFamily("videogen_credits_reserved", "Credits held for unfinished jobs")
    held.add_metric([], reserved or 0)
    yield held
