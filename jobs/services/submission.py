"""Submission: admission (a moderation cooldown, caps, credits, capacity), then the job, its audit event, its credit
reservation and its first stage task, in one transaction. A refused request creates nothing."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Generator
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import QuerySet, Subquery
from django.db.models.functions import Now
from django.utils import timezone

from jobs import batch, queueing, selectors
from jobs.accounts import tier_limits
from jobs.catalog import get_spec
from jobs.models import Account, Job, JobEvent, State
from jobs.prepared import Prepared
from jobs.services import admission, costs, credits
from jobs.services.stages import STAGE_TASKS
from jobs.services.transitions import cfg, db_now_plus
from videogen import logcontext, metrics

S = State
UNFINISHED = (S.PENDING, S.QUEUED, S.DISPATCHED, S.RUNNING, S.REVIEWING)
WAITING = frozenset({S.PENDING, S.QUEUED, S.DISPATCHED})


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with a different request body."""


class IdempotentVideoDeleted(Exception):
    """The Idempotency-Key names a video that has since been deleted."""


class Refused(Exception):
    """Admission said no (a moderation cooldown, a cap, credits or capacity); nothing was created."""

    def __init__(self, refusal: admission.Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True)
class SubmitRequest:
    prompt: str
    model: str
    seconds: int
    width: int
    height: int
    reference_png: bytes | None
    request_hash: str
    start_deadline_seconds: int | None = None


def job_submit(
    *, user_id: int, request: SubmitRequest, idempotency_key: str | None, retried: bool = False
) -> tuple[Job, bool]:
    """Accept a job at once; returns (job, created). Moderation and everything after run elsewhere.

    `retried`: a client's retry of a create sent without an Idempotency-Key (the SDKs mark those). If the
    same user's identical request made a job within CREATE_RETRY_WINDOW_SECONDS, that job is the answer."""
    if idempotency_key:
        existing = Job.objects.filter(user_id=user_id, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _idempotent_replay(existing, request), False
    job = new_job(user_id=user_id, request=request, idempotency_key=idempotency_key)
    if request.start_deadline_seconds is not None:
        job.start_deadline_at = db_now_plus(request.start_deadline_seconds)
    if request.reference_png is not None:
        job.reference_key = default_storage.save(f"references/{job.public_id}.png", ContentFile(request.reference_png))
    new_reference = job.reference_key
    try:
        saved, created = _insert_submitted(
            job, user_id=user_id, request=request, idempotency_key=idempotency_key, retried=retried
        )
    except BaseException:
        if new_reference:  # nothing refers to it: don't leave it behind
            default_storage.delete(new_reference)
        raise
    if not created and new_reference:
        default_storage.delete(new_reference)  # a concurrent twin won; it keeps its own copy
    if created and saved.credits:
        metrics.CREDITS.labels("reserve").inc(saved.credits)
    return saved, created


def new_job(*, user_id: int, request: SubmitRequest, idempotency_key: str | None) -> Job:
    """The job a request asks for, unsaved (no reference image, no deadline: job_submit adds those; its cost
    estimate comes with the submission's reads)."""
    spec = get_spec(request.model)
    return Job(
        user_id=user_id,
        prompt=request.prompt,
        model=request.model,
        seconds=request.seconds,
        width=request.width,
        height=request.height,
        seed=secrets.randbelow(2**31),
        idempotency_key=idempotency_key or None,
        request_hash=request.request_hash,
        request_id=logcontext.request_id(),
        stage_enqueued_at=Now(),
        credits=spec.price(width=request.width, height=request.height, seconds=request.seconds) if spec else 1,
    )


# The submission's reads, compiled once (jobs.prepared): the user's account, locked, and their unfinished and
# waiting jobs through the partial index of unfinished jobs, each cut at the largest cap of any tier: a count
# is exact up to the cap that judges it, and no user's history is ever read whole.
_locked_account = Prepared(Account, lambda user_id: Account.objects.select_for_update().filter(user_id=user_id)[:1])
_unfinished = Prepared(
    Job, lambda limit, user_id: Job.objects.filter(user_id=user_id, state__in=UNFINISHED).values_list("pk")[:limit]
)
_waiting = Prepared(
    Job, lambda limit, user_id: Job.objects.filter(user_id=user_id, state__in=WAITING).values_list("pk")[:limit]
)


def _largest_cap(field: str) -> int:
    return int(max(limits[field] for limits in settings.VIDEOGEN_TIERS.values()))


# A retry's first try is among the user's newest jobs (the account lock orders them): no history is read.
RETRY_LOOKBACK_JOBS = 50


def _twin_query(window: int, user_id: int, request_hash: str) -> QuerySet[Job]:
    """The job an earlier try of this unkeyed request made, among the user's newest jobs in the window (on the
    database's clock, as the jobs' rows are stamped there too)."""
    newest = Job.objects.filter(user_id=user_id).order_by("-id").values("pk")[:RETRY_LOOKBACK_JOBS]
    return Job.objects.filter(
        pk__in=Subquery(newest),
        request_hash=request_hash,
        idempotency_key__isnull=True,
        deleted_at__isnull=True,
        created_at__gte=Now() - dt.timedelta(seconds=window),
    ).order_by("-id")[:1]


_retried_twin = Prepared(Job, _twin_query)

# A step of the submission: statements to run in order in the open transaction, and whether they are its last
# (a driver sends COMMIT with them). The driver sends back each statement's rows.
Step = tuple[list[batch.Statement], bool]
Steps = Generator[Step, list[list[tuple]], tuple[Job, bool]]


def _insert_submitted(
    job: Job, *, user_id: int, request: SubmitRequest, idempotency_key: str | None, retried: bool = False
) -> tuple[Job, bool]:
    """submission_steps on Django's connection, in one transaction; a lost race for the Idempotency-Key
    answers with the winner."""
    try:
        with transaction.atomic():
            saved, created = batch.drive(submission_steps(job, user_id=user_id, request=request, retried=retried))
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the insert.
        existing = Job.objects.filter(user_id=user_id, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _idempotent_replay(existing, request), False
    if created and job.start_deadline_at is not None:
        job.refresh_from_db(fields=["start_deadline_at"])  # the deadline as the database clock set it
    return saved, created


def submission_steps(job: Job, *, user_id: int, request: SubmitRequest, retried: bool = False) -> Steps:
    """The submission's transaction as the statements it sends and the decisions it makes between them, with no
    I/O of its own: a driver (jobs.batch.drive on Django's connection, videogen.aiodb.transact on the event
    loop) runs each step inside one transaction and sends its rows back. Returns (job, created).

    On Postgres, two round trips: the reads (the account's lock, then the caps' counts, the queue summary if
    this process has none fresh, an earlier try's job for an SDK retry, the job's id from its sequence), then
    the writes (job, credit reservation, account usage, audit event, moderation task) with COMMIT. On SQLite
    the job's insert returns its id in a step of its own. A refusal raises Refused: the driver rolls back."""
    # One submission of this user at a time: caps and credits are checked against what is committed (each count
    # runs after the lock is granted, with its own snapshot; so does the retry's lookup: a first try still in
    # flight has committed by then).
    reads = [_locked_account.statement(user_id=user_id)]
    for prepared, cap in ((_unfinished, "MAX_INFLIGHT"), (_waiting, "MAX_QUEUED")):
        reads.append(prepared.statement(max(1, _largest_cap(cap)), user_id=user_id))
    # What this process has not read lately (the queue summary, the shape's learned cost) comes along too.
    summary = selectors.summary_cached(job.model)
    if summary is None:
        reads.append(selectors.summary_statement(job.model))
    shape = (job.model, job.width, job.height, job.seconds)
    job.cost = costs.cached(shape)
    if job.cost is None:
        reads.append(costs.learned_statement(shape))
    window = cfg("CREATE_RETRY_WINDOW_SECONDS")
    lookup_twin = retried and not job.idempotency_key and window > 0
    if lookup_twin:
        reads.append(_retried_twin.statement(window, user_id=user_id, request_hash=request.request_hash))
    allocate = batch.next_id(Job)
    rows = yield [statement for statement, _ in reads] + ([allocate] if allocate else []), False
    found, unfinished, waiting, *more = (build(r) for (_, build), r in zip(reads, rows, strict=False))
    if summary is None:
        summary = selectors.summary_remember(job.model, more.pop(0))
    if job.cost is None:
        job.cost = costs.remember(shape, more.pop(0))
    if lookup_twin and more[0]:
        return more[0][0], False
    if not found:  # an account made outside the API (createsuperuser): made here, then locked as any other
        created = yield [batch.insert(Account(user_id=user_id)), reads[0][0]], False
        found = reads[0][1](created[1])
    account = found[0]
    credits.roll_day(account)
    limits = tier_limits(account.tier)
    usage = admission.Usage(jobs_today=account.day_jobs, unfinished=len(unfinished), waiting=len(waiting))
    now = timezone.now()
    # A cooldown costs no read of its own: it is a field of the account row locked above.
    refusal = (
        admission.check_cooldown(until=account.moderation_cooldown_until, now=now)
        or admission.check_caps(
            usage=usage,
            limits=limits,
            tier=account.tier,
            now=now,
            retry_after=cfg("CAP_RETRY_AFTER_SECONDS"),
        )
        or admission.check_capacity(
            wait=selectors.wait_in(summary[0], tier=account.tier),
            bound=limits["WAIT_BOUND_SECONDS"],
            tier=account.tier,
        )
    )
    if refusal is not None:
        raise Refused(refusal)
    metered = limits["DAILY_CREDITS"] >= 0
    job.tier = account.tier
    if not metered:
        job.credits = 0
    writes = []
    if allocate:
        job.pk = rows[-1][0][0]
        writes.append(batch.insert(job))
    else:
        inserted = yield [batch.insert(job, returning=True)], False
        job.pk = inserted[0][0][0]
    job._state.adding, job._state.db = False, "default"  # as save() leaves it
    if metered:
        try:
            entry = credits.reserve(account=account, job=job, daily_allowance=int(limits["DAILY_CREDITS"]))
        except credits.InsufficientCredits as exc:
            raise Refused(
                admission.Refusal(
                    402,
                    "insufficient_credits",
                    f"This video costs {exc.needed} credits and you have {exc.available} available "
                    "(today's allowance plus your balance).",
                    admission.seconds_to_midnight(timezone.now()),
                )
            ) from None
        writes.append(batch.insert(entry))
    account.day_jobs += 1
    usage_fields = ("usage_day", "day_jobs", "day_allowance_used", "credit_balance")
    writes.append(batch.update_fields(account, usage_fields))
    event = JobEvent(
        job_id=job.pk,
        from_state="",
        to_state=S.PENDING,
        reason="submitted",
        actor=f"user:{user_id}",
        attempt=0,
        request_id=job.request_id,
    )
    writes.append(batch.insert(event))
    writes.append(batch.insert(queueing.cpu_message(STAGE_TASKS[S.PENDING], job.pk)))
    yield writes, True
    return job, True


def _idempotent_replay(existing: Job, request: SubmitRequest) -> Job:
    if existing.request_hash != request.request_hash:
        raise IdempotencyMismatch()
    if existing.deleted_at is not None:
        raise IdempotentVideoDeleted()
    return existing
