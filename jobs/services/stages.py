"""The cpu stages around generation: input moderation (pending) and output review (reviewing)."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.functions import Now

from jobs.models import Job, State
from jobs.services.transitions import locked, transition
from moderation import policy
from moderation.models import ModerationDecision, Stage, Verdict

S = State

# The cpu task that moves a job out of each waiting state.
STAGE_TASKS = {S.PENDING: "jobs.tasks.moderate_input", S.REVIEWING: "jobs.tasks.review_output"}


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
        job = locked(job_id)
        if job is None or job.state != at:
            return None  # a duplicate message: the job has moved on
        _record_decision(job, stage, decision)
        if decision.allowed:
            transition(job, passed, reason=f"{stage} moderation passed", actor="moderation", **passed_fields)
        else:
            transition(
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
