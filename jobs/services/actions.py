"""What users and staff do to a job: cancel it, delete it."""

from __future__ import annotations

from django.db import transaction
from django.db.models.functions import Now

from jobs.models import Job
from jobs.services import retention
from jobs.services.transitions import locked, transition


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


def job_delete(*, job_id: int) -> Job:
    """Hide a finished job, remove its files and erase its prompt. Not a state change: the audit trail stays."""
    with transaction.atomic():
        job = locked(job_id)
        if job is None or job.deleted_at is not None:
            raise Job.DoesNotExist
        if not job.is_terminal:
            raise NotTerminal()
        Job.objects.filter(pk=job.pk).update(deleted_at=Now())
    retention.purge_job_files(job, erase_prompt=True)
    return job
