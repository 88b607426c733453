"""Every write of the job domain. Each state change goes through `_transition`.

Rules (DESIGN §2): a transition locks the job row, checks the table, updates conditionally on
(id, state, attempt), writes a JobEvent and the notification rows it causes, all in one transaction.
Side effects outside the database (GPU, storage, HTTP) never run inside it. Times that fence (leases,
backoff) come from the database clock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import ExpressionWrapper, F, Max, Min, Q, Sum
from django.db.models.fields import DateTimeField
from django.db.models.functions import Coalesce, Now

from jobs import queueing
from jobs.models import PUBLIC_STATUS, Job, JobEvent, Runner, State, can_transition
from jobs.presenters import video_object
from moderation import policy
from moderation.models import ModerationDecision, Stage, Verdict
from notifications.services import notification_create

S = State

# The cpu task that moves a job out of each waiting state.
STAGE_TASKS = {S.PENDING: "jobs.tasks.moderate_input", S.REVIEWING: "jobs.tasks.review_output"}


class TransitionError(Exception):
    """The transition table forbids this change."""


class LostJob(Exception):
    """Fencing: the job moved on (another attempt, cancel, reaper); the caller must stop."""


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with a different request body."""


class NotTerminal(Exception):
    """Only finished jobs can be deleted."""


def _cfg(name: str):
    return settings.VIDEOGEN[name]


def db_now_plus(seconds: float) -> ExpressionWrapper:
    return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())


# --- the one place state changes ------------------------------------------------------------------


def _event_for(from_state: str, to_state: str) -> str | None:
    """The notification a user cares about: a change of public status."""
    before, after = PUBLIC_STATUS[from_state], PUBLIC_STATUS[to_state]
    return None if before == after else f"video.{after}"


def _transition(job: Job, to: str, *, reason: str, actor: str, **fields: object) -> Job:
    """Move a job the caller has locked (select_for_update, same transaction) to `to`."""
    if not can_transition(job.state, to):
        raise TransitionError(f"{job.state} -> {to} is not allowed")
    from_state = job.state
    # The conditional UPDATE is the fence on every database (select_for_update is a no-op on SQLite).
    updated = Job.objects.filter(pk=job.pk, state=from_state, attempt=job.attempt).update(state=to, **fields)
    if updated != 1:
        raise LostJob(f"job {job.pk} changed under us")
    job.refresh_from_db()
    JobEvent.objects.create(
        job_id=job.pk,
        from_state=from_state,
        to_state=to,
        reason=reason[:500],
        actor=actor,
        attempt=job.attempt,
    )
    event = _event_for(from_state, to)
    if event:
        notification_create(user_id=job.user_id, job_id=job.pk, event=event, payload=video_object(job))
    return job


def _locked(job_id: int) -> Job | None:
    return Job.objects.select_for_update().filter(pk=job_id).first()


# --- submission -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitRequest:
    prompt: str
    model: str
    seconds: int
    width: int
    height: int
    reference_png: bytes | None
    request_hash: str


def job_submit(*, user_id: int, request: SubmitRequest, idempotency_key: str | None) -> tuple[Job, bool]:
    """Accept a job at once; returns (job, created). Moderation and everything after run elsewhere."""
    if idempotency_key:
        existing = Job.objects.filter(user_id=user_id, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _idempotent_replay(existing, request), False
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
    )
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


def _insert_submitted(
    job: Job, *, user_id: int, request: SubmitRequest, idempotency_key: str | None
) -> tuple[Job, bool]:
    try:
        with transaction.atomic():
            job.save(force_insert=True)
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
    return job, True


class IdempotentVideoDeleted(Exception):
    """The Idempotency-Key names a video that has since been deleted."""


def _idempotent_replay(existing: Job, request: SubmitRequest) -> Job:
    if existing.request_hash != request.request_hash:
        raise IdempotencyMismatch()
    if existing.deleted_at is not None:
        raise IdempotentVideoDeleted()
    return existing


# --- moderation stages (cpu workers) --------------------------------------------------------------


def _record_decision(job: Job, stage: str, decision: policy.Decision) -> None:
    ModerationDecision.objects.create(
        job_id=job.pk,
        stage=stage,
        verdict=Verdict.ALLOW if decision.allowed else Verdict.BLOCK,
        policy=decision.policy,
        reasons=decision.reasons,
    )


def _apply_decision(
    *, job_id: int, at: str, stage: str, decision: policy.Decision, passed: str, what: str, **passed_fields: object
) -> str | None:
    """Record a stage's decision and move the job on: to `passed`, or rejected with moderation_blocked."""
    with transaction.atomic():
        job = _locked(job_id)
        if job is None or job.state != at:
            return None  # a duplicate message: the job has moved on
        _record_decision(job, stage, decision)
        if decision.allowed:
            _transition(job, passed, reason=f"{stage} moderation passed", actor="moderation", **passed_fields)
        else:
            _transition(
                job,
                S.REJECTED,
                reason=f"{stage} moderation blocked: " + "; ".join(decision.reasons),
                actor="moderation",
                error_code="moderation_blocked",
                error_message=f"The {what} was blocked by the content policy.",
                completed_at=Now(),
            )
        return job.state


def job_moderate_input(*, job_id: int) -> str | None:
    """pending -> queued | rejected. Idempotent: a duplicate message finds the job moved on."""
    job = Job.objects.filter(pk=job_id, state=S.PENDING).first()
    if job is None:
        return None
    decision = policy.check_prompt(job.prompt)  # outside the transaction: a classifier may be slow
    return _apply_decision(
        job_id=job_id, at=S.PENDING, stage=Stage.INPUT, decision=decision, passed=S.QUEUED, what="prompt"
    )


def job_review_output(*, job_id: int) -> str | None:
    """reviewing -> succeeded | rejected, after the policy has looked at frames of the stored clip."""
    job = Job.objects.filter(pk=job_id, state=S.REVIEWING).first()
    if job is None:
        return None
    # Reading and decoding the clip happen before the transition's transaction opens.
    with default_storage.open(job.video_key, "rb") as fh:
        decision = policy.check_video(fh.read())
    return _apply_decision(
        job_id=job_id,
        at=S.REVIEWING,
        stage=Stage.OUTPUT,
        decision=decision,
        passed=S.SUCCEEDED,
        what="generated video",
        completed_at=Now(),
        progress=100,
    )


# --- user and staff actions -----------------------------------------------------------------------


def job_cancel(*, job_id: int, actor: str) -> Job:
    """Any non-terminal job -> cancelled. A running runner notices at its next heartbeat and stops."""
    with transaction.atomic():
        job = _locked(job_id)
        if job is None:
            raise Job.DoesNotExist
        return _transition(job, S.CANCELLED, reason="cancelled", actor=actor, completed_at=Now(), lease_expires_at=None)


def job_delete(*, job_id: int) -> Job:
    """Hide a finished job and remove its files. Not a state change: the audit trail stays."""
    with transaction.atomic():
        job = _locked(job_id)
        if job is None or job.deleted_at is not None:
            raise Job.DoesNotExist
        if not job.is_terminal:
            raise NotTerminal()
        Job.objects.filter(pk=job.pk).update(deleted_at=Now())
    for key in (job.video_key, job.thumbnail_key, job.reference_key):
        if key:
            default_storage.delete(key)
    return job


# --- runner side (gpu_runner calls these and nothing else) ----------------------------------------


def job_claim(*, job_id: int, runner: str) -> Job | None:
    """dispatched -> running; the compare-and-set that increments attempt. None: not ours to run.

    The returned job carries the new `attempt`: the fencing token for every later write of this runner.
    """
    with transaction.atomic():
        job = _locked(job_id)
        if job is None or job.state != S.DISPATCHED:
            return None
        job = _transition(
            job,
            S.RUNNING,
            reason="claimed",
            actor=f"runner:{runner}",
            attempt=F("attempt") + 1,
            runner_id=runner,
            progress=0,
            lease_expires_at=db_now_plus(_cfg("LEASE_SECONDS")),
            started_at=Coalesce(F("started_at"), Now()),
        )
        return job


def job_heartbeat(*, job_id: int, attempt: int, progress: int | None = None) -> bool:
    """Renew the lease (and record progress). False: the runner lost the job and must stop."""
    fields: dict[str, object] = {"lease_expires_at": db_now_plus(_cfg("LEASE_SECONDS"))}
    if progress is not None:
        fields["progress"] = max(0, min(99, progress))
    return Job.objects.filter(pk=job_id, attempt=attempt, state=S.RUNNING).update(**fields) == 1


def job_complete(*, job_id: int, attempt: int, video_key: str, thumbnail_key: str) -> bool:
    """running -> reviewing with the stored clip; queues output moderation. False: fenced out."""
    with transaction.atomic():
        job = _locked(job_id)
        if job is None or job.state != S.RUNNING or job.attempt != attempt:
            return False
        _transition(
            job,
            S.REVIEWING,
            reason="frames generated",
            actor=f"runner:{job.runner_id}",
            video_key=video_key,
            thumbnail_key=thumbnail_key,
            progress=99,
            lease_expires_at=None,
            stage_enqueued_at=Now(),
            stage_sends=1,
        )
        queueing.enqueue_cpu(STAGE_TASKS[S.REVIEWING], job.pk)
        return True


def job_fail_attempt(*, job_id: int, attempt: int, error_code: str, message: str, retryable: bool) -> bool:
    """The runner's attempt failed: retry with backoff, or fail for good. False: fenced out."""
    with transaction.atomic():
        job = _locked(job_id)
        if job is None or job.state != S.RUNNING or job.attempt != attempt:
            return False
        _retry_or_fail(
            job, error_code=error_code, message=message, retryable=retryable, actor=f"runner:{job.runner_id}"
        )
        return True


def _retry_or_fail(job: Job, *, error_code: str, message: str, retryable: bool, actor: str) -> None:
    if job.state == S.DISPATCHED:
        # Never claimed: the message was lost or no worker took it. Attempts count at claim, so requeue,
        # but not forever: a fleet that keeps taking no work must not bounce a job for ever unseen.
        expired = JobEvent.objects.filter(job_id=job.pk, from_state=S.DISPATCHED, to_state=S.QUEUED).count()
        if expired + 1 >= _cfg("MAX_DISPATCHES"):
            reason = f"dispatched {expired + 1} times and never claimed"
            _fail(job, reason=reason, actor=actor, code="no_runner", message="No GPU runner took the job; try again.")
        else:
            _transition(job, S.QUEUED, reason="dispatch expired unclaimed", actor=actor, lease_expires_at=None)
        return
    if retryable and job.attempt < _cfg("MAX_ATTEMPTS"):
        backoff = _cfg("RETRY_BACKOFF_SECONDS") * (2 ** (job.attempt - 1))
        _transition(
            job,
            S.QUEUED,
            reason=f"attempt {job.attempt} failed ({error_code}): {message}; retry in {backoff:.0f}s",
            actor=actor,
            lease_expires_at=None,
            not_before=db_now_plus(backoff),
            progress=0,
            error_code=error_code,  # the last error stays visible while it waits
            error_message=message[:2000],
        )
    else:
        reason = f"attempt {job.attempt} failed ({error_code}): {message}"
        _fail(job, reason=reason, actor=actor, code=error_code, message=message)


def _fail(job: Job, *, reason: str, actor: str, code: str, message: str) -> None:
    """Any non-terminal job -> failed, for good, with the error the user will see."""
    _transition(
        job,
        S.FAILED,
        reason=reason,
        actor=actor,
        lease_expires_at=None,
        completed_at=Now(),
        error_code=code,
        error_message=message[:2000],
    )


def runner_heartbeat(*, name: str, slots: int, model_names: list[str]) -> None:
    updated = Runner.objects.filter(name=name).update(slots=slots, model_names=model_names, last_seen_at=Now())
    if not updated:
        Runner.objects.update_or_create(
            name=name,
            defaults={"slots": slots, "model_names": model_names, "started_at": Now(), "last_seen_at": Now()},
        )


def runners_forget_stale(*, after_seconds: float = 3600) -> int:
    """Drop rows of runners long gone (workers are recycled and re-register under a new name)."""
    return Runner.objects.filter(last_seen_at__lt=db_now_plus(-after_seconds)).delete()[0]


# --- the dispatcher -------------------------------------------------------------------------------


def live_slots() -> int:
    ttl = _cfg("RUNNER_TTL_SECONDS")
    total = Runner.objects.filter(last_seen_at__gte=db_now_plus(-ttl)).aggregate(n=Sum("slots"))["n"]
    return total or 0


def free_slots() -> int:
    busy = Job.objects.filter(state__in=(S.DISPATCHED, S.RUNNING)).count()
    return live_slots() - busy


def _runnable() -> Q:
    return Q(state=S.QUEUED) & (Q(not_before__isnull=True) | Q(not_before__lte=Now()))


def _next_round(limit: int) -> list[int]:
    """One job per user, users least recently served first (round-robin), at most `limit` jobs."""
    heads = dict(
        Job.objects.filter(_runnable()).values("user_id").annotate(first=Min("id")).values_list("user_id", "first")
    )
    if not heads:
        return []
    served = dict(
        # Only recent service counts (and the scan stays small): anyone unserved for an hour goes first.
        Job.objects.filter(user_id__in=heads.keys(), dispatched_at__gte=db_now_plus(-3600))
        .values("user_id")
        .annotate(last=Max("dispatched_at"))
        .values_list("user_id", "last")
    )

    # Never-served users first, then the longest-waiting; ties by their oldest job.
    def key(user_id: int) -> tuple[int, float, int]:
        last = served.get(user_id)
        return (0, 0.0, heads[user_id]) if last is None else (1, last.timestamp(), heads[user_id])

    order = sorted(heads, key=key)
    return [heads[u] for u in order[:limit]]


def _dispatch_job(job_id: int) -> bool:
    with transaction.atomic():
        job = Job.objects.select_for_update(skip_locked=True).filter(pk=job_id).filter(_runnable()).first()
        if job is None:
            return False
        _transition(
            job,
            S.DISPATCHED,
            reason="slot free",
            actor="dispatcher",
            dispatched_at=Now(),
            lease_expires_at=db_now_plus(_cfg("DISPATCH_TIMEOUT_SECONDS")),
        )
        # "Try to claim job X": duplicates and losses are harmless, the claim is the guard.
        queueing.enqueue_gpu("gpu_runner.tasks.run_job", job.pk)
        return True


DISPATCH_LOCK_KEY = 0x76696465  # "vide"


def dispatch_once() -> int:
    """Bind queued jobs to free runner slots, round-robin across users. Returns jobs dispatched.

    One pass is one transaction under a transaction-scoped advisory lock, so any number of dispatchers
    can run (on several hosts) without two of them counting the same free slot.
    """
    if free_slots() <= 0:
        return 0  # the common idle case: no lock, no write transaction
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DISPATCH_LOCK_KEY])
        # (SQLite: IMMEDIATE transactions already serialise writers.) Count again under the lock.
        free = free_slots()
        dispatched = 0
        while free > 0:
            taken = sum(_dispatch_job(job_id) for job_id in _next_round(free))
            if not taken:
                break  # nothing runnable, or the heads are locked by a cancel: next pass
            dispatched += taken
            free -= taken
        return dispatched


def reap_expired(batch: int = 100) -> int:
    """Dispatched or running jobs whose lease ran out (database clock): retry with backoff or fail."""
    expired = Job.objects.filter(state__in=(S.DISPATCHED, S.RUNNING), lease_expires_at__lt=Now())
    reaped = 0
    for job_id in expired.values_list("pk", flat=True)[:batch]:
        with transaction.atomic():
            job = (
                Job.objects.select_for_update(skip_locked=True)
                .filter(pk=job_id, state__in=(S.DISPATCHED, S.RUNNING), lease_expires_at__lt=Now())
                .first()
            )
            if job is None:
                continue
            _retry_or_fail(
                job,
                error_code="lease_expired",
                message="the runner stopped reporting (lease expired)",
                retryable=True,
                actor="reaper",
            )
            reaped += 1
    return reaped


def resend_stalled_stages(batch: int = 100) -> int:
    """Re-send the cpu task of jobs stuck in pending/reviewing: a failed or lost message must not strand a job.

    The tasks are idempotent, so a stage that was merely slow and then runs twice does no harm. A stage
    that still has not run after STAGE_MAX_SENDS sends fails the job with `moderation_unavailable`.
    """
    stalled = Job.objects.filter(
        state__in=tuple(STAGE_TASKS), stage_enqueued_at__lt=db_now_plus(-_cfg("STAGE_RESEND_SECONDS"))
    )
    handled = 0
    for job_id in stalled.values_list("pk", flat=True)[:batch]:
        with transaction.atomic():
            # Re-check under the lock: the stage may have moved the job on since the scan.
            job = stalled.select_for_update(skip_locked=True).filter(pk=job_id).first()
            if job is None:
                continue
            if job.stage_sends >= _cfg("STAGE_MAX_SENDS"):
                _fail(
                    job,
                    reason=f"{job.state} stage did not run after {job.stage_sends} sends",
                    actor="dispatcher",
                    code="moderation_unavailable",
                    message="Moderation could not be completed; please try again later.",
                )
            else:
                Job.objects.filter(pk=job.pk).update(stage_enqueued_at=Now(), stage_sends=F("stage_sends") + 1)
                queueing.enqueue_cpu(STAGE_TASKS[job.state], job.pk)
            handled += 1
    return handled
