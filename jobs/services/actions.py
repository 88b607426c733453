"""What users and staff do to a job: cancel it, delete it, requeue it when it is stuck."""

from __future__ import annotations

from django.db import transaction
from django.db.models.functions import Now

from jobs.models import Job
from jobs.services import retention
from jobs.services.transitions import locked, retry_or_fail, transition


class NotTerminal(Exception):
    """Only finished jobs can be deleted."""


def job_cancel(*, job_id: int, actor: str) -> Job:
    """Any non-terminal job -> cancelled. A running runner notices at its next heartbeat and stops."""
    with transaction.atomic():
        job = locked(job_id)
        if job is None:
            raise Job.DoesNotExist
        return transition(
            job,
            "cancelled",
            reason="cancelled",
            actor=actor,
            completed_at=Now(),
            lease_expires_at=None,
            error_code="",  # a retry's last error no longer applies
            error_message="",
        )


def job_requeue_stuck(*, job_id: int, attempt: int, actor: str) -> bool:
    """Staff: a stuck running job goes back to the queue now, as the reaper would once its lease expired. Fenced
    on the attempt staff looked at: the runner that has it is fenced out (its completion, progress and charge
    are refused from here on), and a job that moved on meanwhile is left alone (False). The attempt counts; at
    the last one the job fails instead, as any retry."""
    with transaction.atomic():
        job = locked(job_id)
        if job is None or job.state != "running" or job.attempt != attempt:
            return False
        retry_or_fail(
            job,
            error_code="stuck_requeued",
            message="The runner stopped making progress; the video was queued again.",
            retryable=True,
            actor=actor,
            detail=f"requeued from the stuck-job view (runner {job.runner_id})",
            backoff=False,
        )
        return True


def job_delete(*, job_id: int) -> Job:
    """Hide a finished job, remove its files and erase its prompt. Not a state change: the audit trail stays."""
    with transaction.atomic():
        job = locked(job_id)
        if job is None or job.deleted_at is not None:
            raise Job.DoesNotExist
        if not job.is_terminal:
            raise NotTerminal()
        Job.objects.filter(pk=job.pk).update(deleted_at=Now())
        retention.erase_prompts(job_ids=[job.pk])
    retention.purge_job_files(job)
    return job
