"""Submission: admission (caps, credits, capacity), then the job, its audit event, its credit reservation and
its first stage task, in one transaction. A refused request creates nothing."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Subquery
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

S = State
UNFINISHED = (S.PENDING, S.QUEUED, S.DISPATCHED, S.RUNNING, S.REVIEWING)
WAITING = frozenset({S.PENDING, S.QUEUED, S.DISPATCHED})


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with a different request body."""


class IdempotentVideoDeleted(Exception):
    """The Idempotency-Key names a video that has since been deleted."""


class Refused(Exception):
    """Admission said no (a cap, credits or capacity); nothing was created."""

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
    spec = get_spec(request.model)
    job = Job(
        user_id=user_id,
        prompt=request.prompt,
        model=request.model,
        seconds=request.seconds,
        width=request.width,
        height=request.height,
        seed=secrets.randbelow(2**31),
        idempotency_key=idempotency_key or None,
        request_hash=request.request_hash,
        stage_enqueued_at=Now(),
        cost=costs.estimate(request.model, request.width, request.height, request.seconds),
        credits=spec.price(width=request.width, height=request.height, seconds=request.seconds) if spec else 1,
    )
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
    return saved, created


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


def _retried_twin(*, user_id: int, request: SubmitRequest) -> Job | None:
    """The job an earlier try of this unkeyed request made, among the user's newest jobs in the window."""
    window = cfg("CREATE_RETRY_WINDOW_SECONDS")
    if window <= 0:
        return None
    newest = Job.objects.filter(user_id=user_id).order_by("-id").values("pk")[:RETRY_LOOKBACK_JOBS]
    return (
        Job.objects.filter(
            pk__in=Subquery(newest),
            request_hash=request.request_hash,
            idempotency_key__isnull=True,
            deleted_at__isnull=True,
            created_at__gte=timezone.now() - dt.timedelta(seconds=window),
        )
        .order_by("-id")
        .first()
    )


def _insert_submitted(
    job: Job, *, user_id: int, request: SubmitRequest, idempotency_key: str | None, retried: bool = False
) -> tuple[Job, bool]:
    """One transaction in three round trips on Postgres: BEGIN; the reads (account lock, then the caps'
    counts, then the job's id from its sequence); the writes (job, credit reservation, account usage, audit
    event, moderation task) and COMMIT. On SQLite the same statements run one by one."""
    try:
        with transaction.atomic():
            # One submission of this user at a time: caps and credits are checked against what is committed
            # (the count runs after the lock is granted, with its own snapshot).
            reads = [_locked_account.statement(user_id=user_id)]
            for prepared, cap in ((_unfinished, "MAX_INFLIGHT"), (_waiting, "MAX_QUEUED")):
                reads.append(prepared.statement(max(1, _largest_cap(cap)), user_id=user_id))
            allocate = batch.next_id(Job)
            rows = batch.run([sql for sql, _ in reads] + ([allocate] if allocate else []))
            found, unfinished, waiting = (to_result(r) for (_, to_result), r in zip(reads, rows[:3], strict=True))
            if retried and not idempotency_key:
                # Under the account's lock: a first try still in flight has committed by now.
                twin = _retried_twin(user_id=user_id, request=request)
                if twin is not None:
                    return twin, False
            account = found[0] if found else Account.objects.create(user_id=user_id)  # e.g. createsuperuser
            credits.roll_day(account)
            limits = tier_limits(account.tier)
            usage = admission.Usage(jobs_today=account.day_jobs, unfinished=len(unfinished), waiting=len(waiting))
            refusal = admission.check_caps(
                usage=usage,
                limits=limits,
                tier=account.tier,
                now=timezone.now(),
                retry_after=cfg("CAP_RETRY_AFTER_SECONDS"),
            ) or admission.check_capacity(
                wait=selectors.tier_wait(model=job.model, tier=account.tier),
                bound=limits["WAIT_BOUND_SECONDS"],
                tier=account.tier,
            )
            if refusal is not None:
                raise Refused(refusal)
            metered = limits["DAILY_CREDITS"] >= 0
            job.tier = account.tier
            if not metered:
                job.credits = 0
            writes = []
            if allocate:
                job.pk = rows[3][0][0]
                writes.append(batch.insert(job))
                job._state.adding, job._state.db = False, "default"  # as save() leaves it
            else:
                job.save(force_insert=True)
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
            writes.append(
                batch.update(Account.objects.filter(pk=account.pk), **{f: getattr(account, f) for f in usage_fields})
            )
            event = JobEvent(
                job_id=job.pk, from_state="", to_state=S.PENDING, reason="submitted", actor=f"user:{user_id}", attempt=0
            )
            writes.append(batch.insert(event))
            writes.append(batch.insert(queueing.cpu_message(STAGE_TASKS[S.PENDING], job.pk)))
            batch.run(writes, commit=True)  # the block's last statements: COMMIT goes with them
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the insert.
        existing = Job.objects.filter(user_id=user_id, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _idempotent_replay(existing, request), False
    if job.start_deadline_at is not None:
        job.refresh_from_db(fields=["start_deadline_at"])  # the deadline as the database clock set it
    return job, True


def _idempotent_replay(existing: Job, request: SubmitRequest) -> Job:
    if existing.request_hash != request.request_hash:
        raise IdempotencyMismatch()
    if existing.deleted_at is not None:
        raise IdempotentVideoDeleted()
    return existing
