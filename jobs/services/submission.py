"""Submission: admission (caps, credits, capacity), then the job, its audit event, its credit reservation and
its first stage task, in one transaction. A refused request creates nothing."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models.functions import Now
from django.utils import timezone

from jobs import queueing, selectors
from jobs.accounts import tier_limits
from jobs.catalog import get_spec
from jobs.models import Account, Job, JobEvent, State
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


def job_submit(*, user_id: int, request: SubmitRequest, idempotency_key: str | None) -> tuple[Job, bool]:
    """Accept a job at once; returns (job, created). Moderation and everything after run elsewhere."""
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
        saved, created = _insert_submitted(job, user_id=user_id, request=request, idempotency_key=idempotency_key)
    except BaseException:
        if new_reference:  # nothing refers to it: don't leave it behind
            default_storage.delete(new_reference)
        raise
    if not created and new_reference:
        default_storage.delete(new_reference)  # a concurrent twin won; it keeps its own copy
    return saved, created


def _usage(user_id: int, account: Account, limits: dict[str, float]) -> admission.Usage:
    states: list[str] = []
    if limits["MAX_INFLIGHT"] or limits["MAX_QUEUED"]:
        # Bounded by the caps themselves, and read through the partial index of unfinished jobs.
        states = list(Job.objects.filter(user_id=user_id, state__in=UNFINISHED).values_list("state", flat=True))
    return admission.Usage(
        jobs_today=account.day_jobs, unfinished=len(states), waiting=sum(1 for s in states if s in WAITING)
    )


def _insert_submitted(
    job: Job, *, user_id: int, request: SubmitRequest, idempotency_key: str | None
) -> tuple[Job, bool]:
    try:
        with transaction.atomic():
            # One submission of this user at a time: caps and credits are checked against what is committed.
            account = Account.objects.select_for_update().filter(user_id=user_id).first()
            if account is None:  # a user made outside jobs.accounts (e.g. createsuperuser)
                account = Account.objects.create(user_id=user_id)
            credits.roll_day(account)
            limits = tier_limits(account.tier)
            refusal = admission.check_caps(
                usage=_usage(user_id, account, limits),
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
            job.save(force_insert=True)
            if metered:
                try:
                    credits.reserve(account=account, job=job, daily_allowance=int(limits["DAILY_CREDITS"]))
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
            account.day_jobs += 1
            account.save(update_fields=["usage_day", "day_jobs", "day_allowance_used", "credit_balance"])
            JobEvent.objects.create(
                job_id=job.pk,
                from_state="",
                to_state=S.PENDING,
                reason="submitted",
                actor=f"user:{user_id}",
                attempt=0,
            )
            queueing.enqueue_cpu(STAGE_TASKS[S.PENDING], job.pk)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the insert.
        existing = Job.objects.filter(user_id=user_id, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _idempotent_replay(existing, request), False
    if job.start_deadline_at is not None:
        job.refresh_from_db()  # the deadline as the database clock set it
    return job, True


def _idempotent_replay(existing: Job, request: SubmitRequest) -> Job:
    if existing.request_hash != request.request_hash:
        raise IdempotencyMismatch()
    if existing.deleted_at is not None:
        raise IdempotentVideoDeleted()
    return existing
