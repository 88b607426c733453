"""The dispatcher's writes: hand queued jobs to free runner slots by the fair-share policy, reap expired
leases, cancel jobs past their start deadline, re-send stalled stages, publish queue positions and waits.

Binding is late: a job is handed out only when a live, non-draining runner serving its model has a
free slot, and it goes to that runner's own queue. The snapshot the policy sees is read by index (the lowest
tags and the oldest waits of each (tier, model) queue, the tiers' counters, the free slots), so a decision
costs the same at 1,000 queued jobs as at 1,000,000.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs import queueing
from jobs.backends import REMOTE_QUEUE_PREFIX
from jobs.catalog import CATALOG
from jobs.models import Job, QueueSummary, Runner, SchedFlow, SchedTier, State
from jobs.services import fairness, policy
from jobs.services.stages import STAGE_TASKS
from jobs.services.transitions import cfg, db_now_plus, fail, retry_or_fail, transition
from videogen import metrics

S = State
DISPATCH_LOCK_KEY = 0x76696465  # "vide"
# How many extra candidates per (tier, model) the snapshot reads beyond the free slots.
SNAPSHOT_SLACK = 4


@dataclass
class PassStats:
    """What the last dispatch pass did and how long its decision took (for the benchmark and logs)."""

    dispatched: int = 0
    decision_seconds: float = 0.0  # snapshot reads + the policy
    total_seconds: float = 0.0
    aged: list[int] = field(default_factory=list)


last_pass = PassStats()


def _live_runners() -> list[Runner]:
    return list(Runner.objects.filter(last_seen_at__gte=db_now_plus(-cfg("RUNNER_TTL_SECONDS"))))


def live_slots() -> int:
    """Capacity: slots of live runners that take work (draining ones finish theirs and get no more)."""
    return sum(r.slots for r in _live_runners() if not r.draining)


def _busy_by_queue(queues: list[str]) -> Counter:
    rows = (
        Job.objects.filter(state__in=(S.DISPATCHED, S.RUNNING), queue__in=queues)
        .values_list("queue", flat=True)
        .iterator()
    )
    return Counter(rows)


def free_slots_list(only_queue: str | None = None) -> list[policy.Slot]:
    """One entry per free slot of a live, non-draining runner (runners sharing a queue pool their slots)."""
    offered: dict[str, tuple[int, set[str]]] = {}
    for runner in _live_runners():
        if runner.draining or (only_queue is not None and runner.queue != only_queue):
            continue
        slots, models = offered.get(runner.queue, (0, set()))
        offered[runner.queue] = (slots + runner.slots, models | set(runner.model_names))
    if not offered:
        return []
    busy = _busy_by_queue(list(offered))
    out: list[policy.Slot] = []
    for queue, (slots, models) in sorted(offered.items()):
        out += [policy.Slot(queue=queue, models=frozenset(models))] * max(0, slots - busy[queue])
    return out


def free_slots() -> int:
    return len(free_slots_list())


def _runnable() -> Q:
    return (
        Q(state=S.QUEUED)
        & (Q(not_before__isnull=True) | Q(not_before__lte=Now()))
        & (Q(start_deadline_at__isnull=True) | Q(start_deadline_at__gt=Now()))
    )


_HEAD_COLUMNS = ("id", "user_id", "tier", "model", "vtag", "cost", "queued_at")


def _heads_sql(parts: int) -> str:
    """One statement for the whole snapshot: per (tier, model, order) a bounded index range scan of runnable
    jobs (the partial indexes job_queued_vtag_idx / job_queued_age_idx), glued with UNION ALL. Each part sits in
    a derived table, which both Postgres and SQLite accept with ORDER BY and LIMIT inside."""
    table = Job._meta.db_table  # the model's own name, never user input
    runnable = (
        "state = %s AND (not_before IS NULL OR not_before <= %s)"
        " AND (start_deadline_at IS NULL OR start_deadline_at > %s)"
    )
    part = (
        f"SELECT * FROM (SELECT {', '.join(_HEAD_COLUMNS)} FROM {table} WHERE {runnable} AND tier = %s AND model = %s"
        " ORDER BY {order} LIMIT %s) AS h{i}"
    )
    orders = ("vtag, id", "queued_at, id")
    return " UNION ALL ".join(part.format(order=orders[i % 2], i=i) for i in range(parts))


def _candidates(slots: list[policy.Slot]) -> list[policy.Candidate]:
    """The queue heads the policy chooses from: per (tier, model) a runner offers, the lowest tags and the
    longest waits. Index range scans of a bounded length, never a scan of the queue, read in one round trip."""
    models = sorted(set().union(*(s.models for s in slots)))
    limit = len(slots) + SNAPSHOT_SLACK
    now = timezone.now()
    at = connection.ops.adapt_datetimefield_value(now)
    params: list[object] = []
    for tier in fairness.rules():
        for model in models:
            for _order in range(2):
                params += [S.QUEUED, at, at, tier, model, limit]
    with connection.cursor() as cursor:
        cursor.execute(_heads_sql(len(params) // 6), params)
        rows = cursor.fetchall()
    seen: dict[int, policy.Candidate] = {}
    for job_id, user_id, t, m, tag, cost, queued_at in rows:
        if isinstance(queued_at, str):  # SQLite: a raw cursor reads text, or naive datetimes, in UTC
            queued_at = parse_datetime(queued_at)
        if queued_at is not None and timezone.is_naive(queued_at):
            queued_at = timezone.make_aware(queued_at, dt.UTC)
        waited = (now - queued_at).total_seconds() if queued_at else 0.0
        seen[job_id] = policy.Candidate(job_id, user_id, t, m, tag or 0.0, cost, waited)
    return list(seen.values())


def _decide(slots: list[policy.Slot]) -> policy.Decision:
    snapshot = policy.Snapshot(
        rules=fairness.rules(), vtime=fairness.tier_state(), slots=slots, candidates=_candidates(slots)
    )
    return policy.decide(snapshot)


def _hand_out(job_id: int, queue: str, *, send: bool) -> bool:
    job = Job.objects.select_for_update(skip_locked=True).filter(_runnable(), pk=job_id).first()
    if job is None:
        return False  # cancelled or locked by a cancel meanwhile: its slot waits for the next pass
    transition(
        job,
        S.DISPATCHED,
        reason=f"slot free on {queue}",
        actor="dispatcher",
        dispatched_at=Now(),
        queue=queue,
        lease_expires_at=db_now_plus(cfg("DISPATCH_TIMEOUT_SECONDS")),
    )
    if send and not queue.startswith(REMOTE_QUEUE_PREFIX):
        # "Try to claim job X", on the runner's own queue: duplicates and losses are harmless, the claim guards.
        # (A remote pool's worker reads the jobs handed to its queue from this table: no message.)
        queueing.enqueue_runner("gpu_runner.tasks.run_job", job.pk, queue=queue)
    return True


def _lock_dispatch() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DISPATCH_LOCK_KEY])
    # (SQLite: IMMEDIATE transactions already serialise writers.)


def _assign(slots: list[policy.Slot], *, send: bool) -> list[int]:
    """Decide and hand out, inside the caller's transaction under the dispatch lock."""
    global last_pass
    started = time.perf_counter()
    decision = _decide(slots)
    decided = time.perf_counter()
    handed = [c.job_id for c, queue in decision.assignments if _hand_out(c.job_id, queue, send=send)]
    fairness.save_tier_state(vtime=decision.vtime, vclock=decision.vclock)
    last_pass = PassStats(
        dispatched=len(handed),
        decision_seconds=decided - started,
        total_seconds=time.perf_counter() - started,
        aged=decision.aged,
    )
    return handed


def dispatch_once() -> int:
    """Bind queued jobs to free runner slots by the fair-share policy. Returns jobs dispatched.

    One pass is one transaction under a transaction-scoped advisory lock, so any number of dispatchers
    can run (on several hosts) without two of them counting the same free slot.
    """
    if not free_slots_list():
        return 0  # the common idle case: no lock, no write transaction
    with transaction.atomic():
        _lock_dispatch()
        slots = free_slots_list()  # again, under the lock
        return len(_assign(slots, send=True)) if slots else 0


def next_for_runner(*, queue: str) -> int | None:
    """A runner that just freed its slot takes its next job itself (no broker round trip, no poll): the same
    policy, for that one slot. Call inside the transaction that freed the slot. Returns the job to claim."""
    _lock_dispatch()
    slots = free_slots_list(only_queue=queue)[:1]
    if not slots:
        return None
    handed = _assign(slots, send=False)
    return handed[0] if handed else None


# --- reaper, deadlines, stalled stages ------------------------------------------------------------------


def _each_locked(candidates: QuerySet[Job], handle: Callable[[Job], None], batch: int) -> int:
    """Handle up to `batch` jobs of a scan, each in its own transaction under its row lock. The filter is checked
    again under the lock (the job may have moved on since the scan); rows locked elsewhere wait for a later pass."""
    handled = 0
    for job_id in candidates.values_list("pk", flat=True)[:batch]:
        with transaction.atomic():
            job = candidates.select_for_update(skip_locked=True).filter(pk=job_id).first()
            if job is not None:
                handle(job)
                handled += 1
    return handled


def _reap(job: Job) -> None:
    if job.state == S.RUNNING and job.runner_id:
        # Its runner stopped reporting: it offers no slot until its next heartbeat, so the reaped job (or another)
        # is not handed to a host that cannot be reached and left there until the dispatch timeout. A runner still
        # alive is back within one heartbeat. (Not a remote pool's worker: the job coming straight back to it lets
        # it adopt the generation still running on the remote server.)
        Runner.objects.filter(name=job.runner_id).exclude(queue__startswith=REMOTE_QUEUE_PREFIX).update(
            last_seen_at=db_now_plus(-cfg("RUNNER_TTL_SECONDS") - 1)
        )
    retry_or_fail(
        job,
        error_code="lease_expired",
        message="the runner stopped reporting (lease expired)",
        retryable=True,
        actor="reaper",
        backoff=False,  # the runner vanished, the job did nothing wrong: the next free slot takes it
    )


def reap_expired(batch: int = 100) -> int:
    """Dispatched or running jobs whose lease ran out (database clock): retry with backoff or fail."""
    reaped = _each_locked(
        Job.objects.filter(state__in=(S.DISPATCHED, S.RUNNING), lease_expires_at__lt=Now()), _reap, batch
    )
    if reaped:
        metrics.LEASE_EXPIRIES.inc(reaped)
    return reaped


def expire_deadlines(batch: int = 100) -> int:
    """Jobs that could not start before their time-to-start deadline end cancelled (credits released)."""
    return _each_locked(
        Job.objects.filter(state__in=(S.PENDING, S.QUEUED), start_deadline_at__lt=Now()),
        lambda job: transition(
            job,
            S.CANCELLED,
            reason="start deadline passed before a GPU was free",
            actor="dispatcher",
            completed_at=Now(),
            error_code="deadline_exceeded",
            error_message="The video could not start before its start deadline.",
        ),
        batch,
    )


# Messages and jobs are both stamped by the database's clock (jobs.broker); a second covers the statements
# between a job's send and its message's.
SEND_MARGIN_SECONDS = 1


def resend_stalled_stages(batch: int = 100) -> int:
    """Re-send the cpu task of jobs stuck in pending/reviewing: a failed or lost message must not strand a job.

    The tasks are idempotent, so a stage that was merely slow and then runs twice does no harm. A stage
    that still has not run after STAGE_MAX_SENDS sends fails the job with `moderation_unavailable`.

    A backlog is not a loss: while the cpu queue still holds a message that waits since no later than a job's
    last send (its own, or one before it), the workers have not reached that job yet; it is neither re-sent
    (that would only lengthen the queue) nor counted towards failing it.
    """
    oldest_waiting = queueing.oldest_waiting_cpu_message()

    def resend(job: Job) -> None:
        if job.stage_sends >= cfg("STAGE_MAX_SENDS"):
            fail(
                job,
                reason=f"{job.state} stage did not run after {job.stage_sends} sends",
                actor="dispatcher",
                code="moderation_unavailable",
                message="Moderation could not be completed; please try again later.",
            )
        else:
            Job.objects.filter(pk=job.pk).update(stage_enqueued_at=Now(), stage_sends=F("stage_sends") + 1)
            queueing.enqueue_cpu(STAGE_TASKS[job.state], job.pk)

    stalled = Job.objects.filter(
        state__in=tuple(STAGE_TASKS), stage_enqueued_at__lt=db_now_plus(-cfg("STAGE_RESEND_SECONDS"))
    )
    if oldest_waiting is not None:
        stalled = stalled.filter(stage_enqueued_at__lt=oldest_waiting - dt.timedelta(seconds=SEND_MARGIN_SECONDS))
    return _each_locked(stalled, resend, batch)


# --- what the queue looks like: published for status reads and admission --------------------------------

CHECKPOINTS = 256


def _tier_queues(model: str) -> dict[str, dict]:
    """Each tier's line for a model: totals and ~CHECKPOINTS checkpoints in dispatch order (tag, id, jobs before,
    GPU-seconds before), always including the first and last job. The queued jobs are read in one pass in the
    order of job_queued_vtag_idx (no sort); the jobs still in input moderation are merged in (_waiting)."""
    table = Job._meta.db_table  # the model's own name, never user input
    sql = f"""
        SELECT tier, vtag, id, n_before, w_before, total_n, total_w FROM (
            SELECT tier, vtag, id, cost,
                   ROW_NUMBER() OVER w - 1 AS n_before, SUM(cost) OVER w - cost AS w_before,
                   COUNT(*) OVER t AS total_n, SUM(cost) OVER t AS total_w
            FROM {table} WHERE state = %s AND model = %s
            WINDOW w AS (PARTITION BY tier ORDER BY vtag, id ROWS UNBOUNDED PRECEDING), t AS (PARTITION BY tier)
        ) q
        WHERE n_before %% (CASE WHEN total_n < %s THEN 1 ELSE total_n / %s END) = 0 OR n_before = total_n - 1
        ORDER BY tier, n_before
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [S.QUEUED, model, CHECKPOINTS, CHECKPOINTS])
        rows = cursor.fetchall()
    out: dict[str, dict] = {}
    for tier, tag, job_id, n, w, total_n, total_w in rows:
        queue = out.setdefault(tier, {"count": total_n, "work": total_w or 0.0, "checkpoints": []})
        queue["checkpoints"].append([tag or 0.0, job_id, n, w or 0.0])
    return merge_waiting(out, _waiting(model))


def _waiting(model: str) -> list[tuple[str, float, int, float]]:
    """(tier, tag, id, cost) of the model's jobs still in input moderation, at the tag each will get when it enters
    the queue (fairness.tag_new_job: the user's counter lifted to the tier's clock, then the costs of the user's
    earlier waiting jobs). Few: a moderation backlog, read by job_state_nb_idx."""
    job, flow, clock = Job._meta.db_table, SchedFlow._meta.db_table, SchedTier._meta.db_table  # never user input
    sql = f"""
        SELECT tier, vtag, id, cost FROM (
            SELECT p.tier, p.model, p.id, p.cost,
                   CASE WHEN COALESCE(f.finish, 0) > COALESCE(c.vclock, 0) THEN COALESCE(f.finish, 0)
                        ELSE COALESCE(c.vclock, 0) END
                   + SUM(p.cost) OVER (PARTITION BY p.user_id ORDER BY p.id ROWS UNBOUNDED PRECEDING) - p.cost AS vtag
            FROM {job} p LEFT JOIN {flow} f ON f.user_id = p.user_id LEFT JOIN {clock} c ON c.tier = p.tier
            WHERE p.state = %s
        ) w WHERE model = %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [S.PENDING, model])
        return [(tier, float(tag), job_id, float(cost)) for tier, tag, job_id, cost in cursor.fetchall()]


def merge_waiting(tiers: dict[str, dict], waiting: list[tuple[str, float, int, float]]) -> dict[str, dict]:
    """The published lines with the waiting jobs in their places: work submitted is in line from the start, so a
    job's position does not rise as earlier submissions clear moderation (one blocked, or tagged later than
    foreseen, only moves the others forward). Each waiting job shifts the checkpoints after it; at most
    CHECKPOINTS of them per tier become checkpoints themselves (exact while every queued job is one)."""
    by_tier: dict[str, list[tuple[float, int, float]]] = {}
    for tier, tag, job_id, cost in waiting:
        by_tier.setdefault(tier, []).append((tag, job_id, cost))
    for tier, jobs in by_tier.items():
        jobs.sort()
        queue = tiers.setdefault(tier, {"count": 0, "work": 0.0, "checkpoints": []})
        queued, merged = queue["checkpoints"], []
        every = max(1, -(-len(jobs) // CHECKPOINTS))
        i, added_n, added_w = 0, 0, 0.0
        for k, (tag, job_id, cost) in enumerate(jobs):
            while i < len(queued) and (queued[i][0], queued[i][1]) < (tag, job_id):
                q_tag, q_id, q_n, q_w = queued[i]
                merged.append([q_tag, q_id, q_n + added_n, q_w + added_w])
                i += 1
            if k % every == 0 or k == len(jobs) - 1:
                # Queued jobs before it: those up to the next queued checkpoint (all of them past the last).
                n, w = (queued[i][2], queued[i][3]) if i < len(queued) else (queue["count"], queue["work"])
                merged.append([tag, job_id, n + added_n, w + added_w])
            added_n, added_w = added_n + 1, added_w + cost
        merged += [[q_tag, q_id, q_n + added_n, q_w + added_w] for q_tag, q_id, q_n, q_w in queued[i:]]
        queue.update(count=queue["count"] + added_n, work=queue["work"] + added_w, checkpoints=merged)
    return tiers


def publish_queue_summary() -> float:
    """Per model: live capacity, the work left on running jobs, each tier's queue in tag order. Returns the
    seconds it took (the dispatcher spaces publications by it, so a huge queue cannot hog the database)."""
    started = time.perf_counter()
    now = timezone.now()
    summaries = _read_summaries(now)
    for model, data in summaries.items():
        QueueSummary.objects.update_or_create(model=model, defaults={"data": data, "published_at": now})
    QueueSummary.objects.exclude(model__in=summaries).delete()
    return time.perf_counter() - started


def _read_summaries(now: dt.datetime) -> dict[str, dict]:
    """Every model's summary, read in one snapshot (REPEATABLE READ on Postgres): the tiers' weighted service and
    the queue it was advanced by must agree, or a job handed out between two reads would count twice or not at all
    in the positions (one up, then down again)."""
    snapshot = connection.vendor == "postgresql" and not connection.in_atomic_block  # (inside one: its snapshot)
    with transaction.atomic():
        if snapshot:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        runners = [r for r in _live_runners() if not r.draining]
        vtime = fairness.tier_state()
        out = {}
        for model in sorted({m for r in runners for m in r.model_names} | set(CATALOG)):
            serving = [r for r in runners if model in r.model_names]
            capacity = sum(r.slots for r in serving)
            running = Job.objects.filter(
                state__in=(S.DISPATCHED, S.RUNNING), queue__in={r.queue for r in serving}
            ).values_list("cost", "dispatched_at")
            left = [max(0.0, cost - (now - at).total_seconds()) if at else cost for cost, at in running]
            free = capacity - len(left)
            out[model] = {
                "at": now.timestamp(),
                "capacity": capacity,
                "running_work": sum(left),
                "first_free_in": 0.0 if free > 0 or not left else min(left),
                "tiers": _tier_queues(model),
                "vtime": vtime,
            }
    return out
