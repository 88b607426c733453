"""The operations page's data: a sample of the system every OPS_SAMPLE_SECONDS (taken by the dispatcher), and
the charts drawn from the samples of the last hours. Everything comes from the database: the published queue
summary, the live runners, and the job events of the sample's interval (through jobevent_to_created_idx)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from jobs.models import JobEvent, OpsSample, QueueSummary, State

S = State


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def take_sample(now: dt.datetime | None = None) -> OpsSample | None:
    """Record this moment (None: another dispatcher took one within the interval)."""
    from videogen.metrics_state import pools

    cfg = settings.VIDEOGEN
    now = now or timezone.now()
    last = OpsSample.objects.order_by("-at").first()
    if last is not None and (now - last.at).total_seconds() < 0.9 * cfg["OPS_SAMPLE_SECONDS"]:
        return None
    since = last.at if last is not None else now - dt.timedelta(seconds=cfg["OPS_SAMPLE_SECONDS"])
    depth: dict[str, int] = defaultdict(int)
    for summary in QueueSummary.objects.all():
        for tier, queue in (summary.data.get("tiers") or {}).items():
            depth[tier] += int(queue.get("count") or 0)
    window = JobEvent.objects.filter(created_at__gt=since, created_at__lte=now)
    waits: dict[str, list[float]] = defaultdict(list)
    for tier, claimed, queued in window.filter(to_state=S.RUNNING, attempt=1).values_list(
        "job__tier", "created_at", "job__queued_at"
    ):
        if queued is not None:
            waits[tier].append(max(0.0, (claimed - queued).total_seconds()))
    state = pools()
    data = {
        "seconds": (now - since).total_seconds(),
        "queue_depth": dict(depth),
        "completed": window.filter(to_state=S.SUCCEEDED).count(),
        "failed": window.filter(to_state__in=(S.FAILED, S.REJECTED)).count(),
        "retried": window.filter(to_state=S.QUEUED, from_state__in=(S.DISPATCHED, S.RUNNING)).count(),
        "wait_p95": {tier: _p95(values) for tier, values in waits.items()},
        "slots": sum(p.slots for p in state),
        "busy": sum(p.busy for p in state),
        "needed": sum(p.needed_runners for p in state),
    }
    OpsSample.objects.filter(at__lt=now - dt.timedelta(hours=cfg["OPS_SAMPLE_KEEP_HOURS"])).delete()
    try:
        return OpsSample.objects.create(at=now, data=data)
    except IntegrityError:
        return None


# --- charts ---------------------------------------------------------------------------------------------------

WIDTH, HEIGHT, PAD = 560, 180, 36
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]  # (seconds since the chart's start, value)
    colour: str = ""
    path: str = ""  # SVG polyline points


@dataclass
class Chart:
    id: str
    title: str
    unit: str
    series: list[Series]
    top: float = 0.0
    span: float = 0.0

    def layout(self) -> Chart:
        values = [v for s in self.series for _, v in s.points]
        self.top = max(values, default=0.0) or 1.0
        self.span = max((t for s in self.series for t, _ in s.points), default=0.0) or 1.0
        for i, s in enumerate(self.series):
            s.colour = COLOURS[i % len(COLOURS)]
            s.path = " ".join(
                f"{PAD + (WIDTH - 2 * PAD) * t / self.span:.1f},{HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / self.top:.1f}"
                for t, v in s.points
            )
        return self


def charts(hours: float = 6.0) -> tuple[list[Chart], int]:
    """The page's charts over the last `hours`, and how many samples they draw."""
    since = timezone.now() - dt.timedelta(hours=hours)
    samples = list(OpsSample.objects.filter(at__gte=since).order_by("at"))
    if not samples:
        return [], 0
    start = samples[0].at

    def t(sample: OpsSample) -> float:
        return (sample.at - start).total_seconds()

    def per_key(field: str) -> list[Series]:
        keys = sorted({k for s in samples for k in (s.data.get(field) or {})})
        return [
            Series(k, [(t(s), float(v)) for s in samples if (v := (s.data.get(field) or {}).get(k)) is not None])
            for k in keys
        ]

    def scalar(name: str, field: str, per_minute: bool = False) -> Series:
        points = []
        for s in samples:
            value = float(s.data.get(field) or 0)
            if per_minute:
                value = value * 60 / max(1.0, float(s.data.get("seconds") or 60))
            points.append((t(s), value))
        return Series(name, points)

    out = [
        Chart("queue-depth", "Queue depth per tier", "jobs", per_key("queue_depth")),
        Chart("throughput", "Throughput", "per minute",
              [scalar("completed", "completed", True), scalar("failed", "failed", True)]),
        Chart("wait-p95", "Wait p95 per tier (first attempts claimed)", "seconds", per_key("wait_p95")),
        Chart("slots", "Runner slots", "slots",
              [scalar("busy", "busy"), scalar("total", "slots"), scalar("needed", "needed")]),
        Chart("failures", "Failures and retries", "per minute",
              [scalar("failed", "failed", True), scalar("retried", "retried", True)]),
    ]  # fmt: skip
    return [c.layout() for c in out], len(samples)
