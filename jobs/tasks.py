"""cpu-worker tasks: they take ids, are idempotent, and call services."""

from __future__ import annotations

from jobs import services
from videogen import logcontext


def moderate_input(job_id: int) -> str | None:
    with logcontext.for_job(job_id):
        return services.job_moderate_input(job_id=job_id)


def review_output(job_id: int) -> str | None:
    with logcontext.for_job(job_id):
        return services.job_review_output(job_id=job_id)
