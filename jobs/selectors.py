"""Reads of the job domain (status reads are the hot path: one indexed query each, never a queue scan)."""

from __future__ import annotations

import datetime as dt
import re
import time

from django.db import router
from django.db.models import F, Func, IntegerField, QuerySet, Value

from jobs import batch
from jobs.models import CreditEntry, Job, QueueSummary, State
from jobs.prepared import Prepared
from jobs.services import fairness, policy

PUBLIC_ID = re.compile(r"video_[0-9a-f]{24}")
# Each process reads a model's published queue summary at most this often.
SUMMARY_CACHE_SECONDS = 1.0
_summaries: dict[str, tuple[float, policy.ModelQueue | None, float]] = {}


def _visible(user_id: int) -> QuerySet[Job]:
    return Job.objects.filter(user_id=user_id, deleted_at__isnull=True)


# Status reads are the hot path: compiled once (jobs.prepared), each one indexed query.
_video_get = Prepared(Job, lambda user_id, public_id: _visible(user_id).filter(public_id=public_id)[:1])
_cursor_pk = Prepared(
    Job, lambda user_id, public_id: Job.objects.filter(user_id=user_id, public_id=public_id).values_list("pk")[:1]
)


class Row(Func):
    """A row value, `(a, b)`, compared element by element (Postgres; SQLite since 3.15)."""

    template = "(%(expressions)s)"
    output_field = IntegerField()


def _page(limit: int, order: str, after: bool, user_id: int, cursor: int = 0) -> QuerySet[Job]:
    """Keyset pagination on the (user_id, id) index: a page costs the same at any depth and table size.

    Written so that only that index can answer it: the user as a one-value range, the cursor as a row
    comparison on (user_id, id), ordered by both. With `user_id = X ORDER BY id` Postgres may walk the
    primary key and filter by user instead (it assumes a user's rows are spread evenly): for a user whose
    videos are old that reads every newer row of everyone else, 4 s at 10M rows.
    """
    qs = Job.objects.filter(deleted_at__isnull=True).alias(key=Row(F("user_id"), F("id")))
    here = Row(Value(user_id), Value(cursor))
    if order == "desc":
        qs = qs.filter(user_id__gte=user_id, **({"key__lt": here} if after else {"user_id__lte": user_id}))
        return qs.order_by("-user_id", "-id")[:limit]
    qs = qs.filter(user_id__lte=user_id, **({"key__gt": here} if after else {"user_id__gte": user_id}))
    return qs.order_by("user_id", "id")[:limit]


_video_page = Prepared(Job, _page)


def video_get(*, user_id: int, public_id: str) -> Job | None:
    found = video_get_statement(user_id=user_id, public_id=public_id)
    if found is None:
        return None
    statement, build = found
    return build(batch.run([statement], using=router.db_for_read(Job))[0])


def video_get_statement(*, user_id: int, public_id: str):
    """The user's video as a statement and what turns its rows into the job, or None when the id is not one
    we issue (never sent to the database: it may hold a NUL). video_get runs it on Django's connection, the
    event loop (jobs.api.hot) on its own."""
    if not PUBLIC_ID.fullmatch(public_id):
        return None
    statement, build = _video_get.statement(user_id=user_id, public_id=public_id)
    return statement, lambda rows: next(iter(build(rows)), None)


def video_list(*, user_id: int, after: str | None, limit: int, order: str) -> tuple[list[Job], bool] | None:
    """A page of the user's jobs; None when the `after` cursor is not one of theirs."""
    if after:
        if not PUBLIC_ID.fullmatch(after):
            return None
        found = _cursor_pk.fetch(user_id=user_id, public_id=after)
        if not found:
            return None
        rows = _video_page.fetch(limit + 1, order, True, user_id=user_id, cursor=found[0][0])
    else:
        rows = _video_page.fetch(limit + 1, order, False, user_id=user_id)
    return rows[:limit], len(rows) > limit


def summary_from_data(data: dict) -> policy.ModelQueue:
    tiers = {
        t: policy.TierQueue(int(q["count"]), float(q["work"]), [tuple(c) for c in q["checkpoints"]])
        for t, q in data.get("tiers", {}).items()
    }
    return policy.ModelQueue(
        capacity=float(data.get("capacity", 0)),
        running_work=float(data.get("running_work", 0.0)),
        first_free_in=float(data.get("first_free_in", 0.0)),
        tiers=tiers,
        vtime={t: float(v) for t, v in data.get("vtime", {}).items()},
    )


_summary_data = Prepared(QueueSummary, lambda model: QueueSummary.objects.filter(model=model).values_list("data")[:1])


def queue_summary(model: str) -> tuple[policy.ModelQueue | None, float]:
    """The dispatcher's latest summary for a model and the time it describes (cached briefly per process)."""
    hit = summary_cached(model)
    if hit is None:
        hit = summary_remember(model, _summary_data.fetch(model=model))
    return hit


def summary_cached(model: str) -> tuple[policy.ModelQueue | None, float] | None:
    hit = _summaries.get(model)
    return None if hit is None or hit[0] < time.monotonic() else (hit[1], hit[2])


def summary_statement(model: str):
    """The summary's read, for a driver other than Django's connection; what its builder makes of the rows goes
    to summary_remember."""
    return _summary_data.statement(model=model)


def summary_remember(model: str, rows: list[tuple]) -> tuple[policy.ModelQueue | None, float]:
    data = rows[0][0] if rows else None
    summary = summary_from_data(data) if data else None
    at = (data or {}).get("at", 0.0)
    _summaries[model] = (time.monotonic() + SUMMARY_CACHE_SECONDS, summary, at)
    return summary, at


def forget_summaries() -> None:
    _summaries.clear()


def queue_estimate(
    job: Job, published: tuple[policy.ModelQueue | None, float] | None = None
) -> tuple[int | None, dt.datetime | None]:
    """(queue_position, estimated_start_at) of a queued job, from the published summary: no queue scan. A caller
    that read the summary itself (the event loop, which may not use Django's connection) passes it in."""
    if job.state == State.DISPATCHED:
        return 1, None  # handed to a runner: starts as soon as it claims it
    if job.state != State.QUEUED or job.vtag is None:
        return None, None
    summary, at = published if published is not None else queue_summary(job.model)
    if summary is None or (job.created_at is not None and job.created_at.timestamp() > at):
        # Submitted after the summary was read: neither it nor what came with it is in there, so a place computed
        # from it could only be too good. The next one (within a publication interval) has them.
        return None, None
    est = policy.estimate(summary, fairness.weights(), tier=job.tier, tag=job.vtag, job_id=job.pk)
    if est is None:
        return None, None
    start = dt.datetime.fromtimestamp(at + est.start_in, tz=dt.UTC)
    if job.not_before is not None and job.not_before > start:
        start = job.not_before  # a retry waiting out its backoff
    return est.position, start


def tier_wait(*, model: str, tier: str) -> float | None:
    """The tier's estimated wait for new work on this model (None: nothing published, or no capacity)."""
    return wait_in(queue_summary(model)[0], tier=tier)


def wait_in(summary: policy.ModelQueue | None, *, tier: str) -> float | None:
    """tier_wait from a summary already at hand."""
    return None if summary is None else policy.tier_wait(summary, fairness.weights(), tier=tier)


def credit_history(*, user_id: int, after: int | None, limit: int) -> tuple[list[CreditEntry], bool]:
    qs = CreditEntry.objects.filter(user_id=user_id).select_related("job").order_by("-id")
    if after is not None:
        qs = qs.filter(pk__lt=after)
    rows = list(qs[: limit + 1])
    return rows[:limit], len(rows) > limit
