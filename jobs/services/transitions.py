"""The one place job states change, and the shared helpers of every service module.

A transition locks the job row, checks the table, updates conditionally on (id, state, attempt), writes a
JobEvent and the notification rows it causes, gives a newly queued job its fair-queuing tag, and settles the
job's credits when it ends: all in the caller's transaction. Side effects outside the database (GPU, storage,
HTTP) never run inside it. Times that fence (leases, backoff) come from the database clock.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import ExpressionWrapper, F
from django.db.models.fields import DateTimeField
from django.db.models.functions import Coalesce, Now

from jobs.models import PUBLIC_STATUS, TERMINAL, Job, JobEvent, State, can_transition
from jobs.presenters import video_object
from jobs.services import credits, fairness
from moderation.models import Review
from notifications.services import notification_create
from videogen import logcontext, metrics

S = State
HELD_STATES = (S.PENDING, S.REVIEWING)  # where a job waits while a moderator holds it


class TransitionError(Exception):
    """The transition table forbids this change."""


class LostJob(Exception):
    """Fencing: the job moved on (another attempt, cancel, reaper); the caller must stop."""


def cfg(name: str):
    return settings.VIDEOGEN[name]


def db_now_plus(seconds: float) -> ExpressionWrapper:
    return ExpressionWrapper(Now() + timedelta(seconds=seconds), output_field=DateTimeField())


def _event_for(from_state: str, to_state: str) -> str | None:
    """The notification a user cares about: a change of public status."""
    before, after = PUBLIC_STATUS[from_state], PUBLIC_STATUS[to_state]
    return None if before == after else f"video.{after}"


def transition(job: Job, to: str, *, reason: str, actor: str, **fields: object) -> Job:
    """Move a job the caller has locked (select_for_update, same transaction) to `to`."""
    if not can_transition(job.state, to):
        raise TransitionError(f"{job.state} -> {to} is not allowed")
    from_state = job.state
    if to == S.QUEUED and job.vtag is None:
        # First time it waits for a GPU: its place among its tier's users, and the start of its wait.
        fields.update(vtag=fairness.tag_new_job(job), queued_at=Coalesce(F("queued_at"), Now()))
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
        request_id=logcontext.request_id() or job.request_id,
    )
    metrics.on_commit(metrics.TRANSITIONS.labels(from_state, to).inc)
    if from_state in HELD_STATES:
        # A held job that moves on without a verdict (cancelled, past its deadline) leaves nothing to decide; a
        # verdict marks its review after this.
        Review.objects.filter(job_id=job.pk, kind=Review.Kind.HOLD, status=Review.Status.OPEN).update(
            status=Review.Status.WITHDRAWN, decided_at=Now(), note=f"withdrawn: {reason}"[:1000]
        )
    if to in TERMINAL and job.credits:  # unmetered jobs (credits 0) hold nothing
        credits.settle(job)
    event = _event_for(from_state, to)
    if event:
        notification_create(
            user_id=job.user_id, job_id=job.pk, event=event, payload=video_object(job), attempt=job.attempt
        )
    return job


def locked(job_id: int) -> Job | None:
    return Job.objects.select_for_update().filter(pk=job_id).first()


def fail(job: Job, *, reason: str, actor: str, code: str, message: str) -> None:
    """Any non-terminal job -> failed, for good, with the error the user will see."""
    transition(
        job,
        S.FAILED,
        reason=reason,
        actor=actor,
        lease_expires_at=None,
        completed_at=Now(),
        error_code=code,
        error_message=message[:2000],
    )


def retry_or_fail(
    job: Job, *, error_code: str, message: str, retryable: bool, actor: str, detail: str = "", backoff: bool = True
) -> None:
    """`message` is the user's; the audit event's reason also carries `detail` (for staff only). `backoff=False`
    requeues at once: the attempt did not fail, its runner vanished (a lease that expired)."""
    why = f"{message} [{detail}]" if detail else message
    if job.state == S.DISPATCHED:
        # Never claimed: the message was lost or no worker took it. Attempts count at claim, so requeue,
        # but not forever: a fleet that keeps taking no work must not bounce a job for ever unseen.
        expired = JobEvent.objects.filter(job_id=job.pk, from_state=S.DISPATCHED, to_state=S.QUEUED).count()
        if expired + 1 >= cfg("MAX_DISPATCHES"):
            reason = f"dispatched {expired + 1} times and never claimed"
            fail(job, reason=reason, actor=actor, code="no_runner", message="No GPU runner took the job; try again.")
        else:
            transition(job, S.QUEUED, reason="dispatch expired unclaimed", actor=actor, lease_expires_at=None, queue="")
        return
    if retryable and job.attempt < cfg("MAX_ATTEMPTS"):
        delay = cfg("RETRY_BACKOFF_SECONDS") * (2 ** (job.attempt - 1)) if backoff else 0.0
        transition(
            job,
            S.QUEUED,
            reason=f"attempt {job.attempt} failed ({error_code}): {why}; retry in {delay:.0f}s",
            actor=actor,
            lease_expires_at=None,
            not_before=db_now_plus(delay) if delay else None,
            progress=0,
            queue="",
            error_code=error_code,  # the last error stays visible while it waits
            error_message=message[:2000],
        )
        metrics.on_commit(metrics.RETRIES.labels(error_code).inc)
    else:
        reason = f"attempt {job.attempt} failed ({error_code}): {why}"
        fail(job, reason=reason, actor=actor, code=error_code, message=message)
        metrics.on_commit(metrics.DEAD_JOBS.labels(error_code).inc)
