"""Prometheus metrics (`prometheus-client` in multiprocess mode), and what `/metrics` serves.

Two kinds, so every figure is right however many processes and hosts run:
- *events* (submissions, transitions, retries, lease expiries, dead jobs, moderation decisions, remote calls,
  webhook deliveries, credits, content-credential signings, wait and run times): counters and histograms each
  process adds to in its own file under PROMETHEUS_MULTIPROC_DIR (the entry points set it before anything
  imports prometheus_client: videogen.boot); a scrape sums the files of every process of the host, the dead ones
  included (a counter never goes back);
- *state* (queue depth and oldest wait per tier and model, runner slots and busy slots per pool, the runners
  each pool needs, webhook dead letters, credits reserved): read from the database at scrape time, so they are
  the cluster's, whichever web process answers.

A host without a web role has its counters served by any web process pointed at its PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Buckets in seconds: a queue wait spans milliseconds to hours; a generation seconds to tens of minutes.
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, math.inf)
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600, math.inf)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, math.inf)

SUBMISSIONS = Counter("videogen_submissions_total", "POST /v1/videos answers, by tier and outcome", ["tier", "outcome"])
TRANSITIONS = Counter("videogen_transitions_total", "Job state changes (committed)", ["from_state", "to_state"])
RETRIES = Counter("videogen_retries_total", "Attempts that failed and were queued again, by error", ["code"])
LEASE_EXPIRIES = Counter("videogen_lease_expiries_total", "Dispatched or running jobs whose lease ran out")
DEAD_JOBS = Counter("videogen_dead_jobs_total", "Jobs failed for good after their last attempt, by error", ["code"])
WAIT = Histogram(
    "videogen_wait_seconds",
    "Time from entering the queue to a runner's claim",
    ["tier", "model"],
    buckets=WAIT_BUCKETS,
)
RUN = Histogram("videogen_run_seconds", "Generation time of completed attempts", ["model"], buckets=RUN_BUCKETS)
SLOT_GAP = Histogram(
    "videogen_slot_gap_seconds",
    "Time between a runner finishing a job and starting its next one",
    ["pool"],
    buckets=LAG_BUCKETS,
)
MODERATION = Counter("videogen_moderation_decisions_total", "Moderation decisions", ["stage", "action"])
REMOTE_CALLS = Counter(
    "videogen_remote_calls_total", "Calls to remote generation servers", ["pool", "dialect", "call", "outcome"]
)
WEBHOOK_DELIVERIES = Counter("videogen_webhook_deliveries_total", "Webhook delivery attempts", ["outcome"])
WEBHOOK_LAG = Histogram(
    "videogen_webhook_delivery_lag_seconds", "From the event to its successful delivery", buckets=LAG_BUCKETS
)
EMAIL_DELIVERIES = Counter("videogen_email_deliveries_total", "Notification email send attempts", ["outcome"])
EMAIL_LAG = Histogram(
    "videogen_email_delivery_lag_seconds", "From the notification to its email being sent", buckets=LAG_BUCKETS
)
CREDITS = Counter("videogen_credits_total", "Credits reserved at admission and settled at the end", ["kind"])
C2PA_SIGNINGS = Counter(
    "videogen_c2pa_signings_total", "Files (clips, thumbnails) signed with content credentials, or not", ["outcome"]
)


def on_commit(fn) -> None:
    """Count what a transaction did only once it committed (a rolled-back transition never happened)."""
    transaction.on_commit(fn)


class StateCollector(Collector):
    """Gauges read from the database at scrape time (the cluster's state, not one process's)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from videogen import metrics_state

        yield from metrics_state.collect()


def exposition() -> bytes:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    registry.register(StateCollector())
    return generate_latest(registry)


def submission(tier: str, status: int) -> None:
    """One answer to POST /v1/videos (either serving path)."""
    outcome = "accepted" if status < 300 else "429" if status == 429 else "503" if status == 503 else "rejected"
    SUBMISSIONS.labels(tier or "unknown", outcome).inc()
