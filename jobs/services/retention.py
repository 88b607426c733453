"""Retention of stored files (README "Retention"): what a finished job keeps, and for how long.

A finished job's files (its clip and thumbnail, every attempt's leftovers under `videos/<id>/`, its reference
image) are removed once the retention of its end state has passed; a user's DELETE removes them at once and
erases the prompt. The sweep reads its work from a partial index of finished jobs whose files are still
there, deletes the files (outside any transaction), then marks the job. Deleting is idempotent, so sweeps that
overlap (two dispatchers) or die half-way only repeat work; a file written by a runner killed after the
sweep would stay, which needs a kill between its save and its own clean-up.
"""

from __future__ import annotations

import logging
import posixpath

from django.core.files.storage import default_storage
from django.db.models.functions import Now

from jobs.models import Job, State
from jobs.services.transitions import cfg, db_now_plus

log = logging.getLogger("jobs.retention")
S = State
RETENTION_BATCH = 200  # jobs per sweep


def retention_seconds() -> dict[str, float]:
    """How long each end state keeps its files after the job finished."""
    return {
        S.SUCCEEDED: cfg("VIDEO_RETENTION_SECONDS"),
        S.REJECTED: cfg("REJECTED_RETENTION_SECONDS"),
        S.FAILED: cfg("DISCARDED_RETENTION_SECONDS"),
        S.CANCELLED: cfg("DISCARDED_RETENTION_SECONDS"),
    }


def stored_keys(job: Job) -> set[str]:
    """Every file the job may have in storage: its recorded keys and whatever its attempts left."""
    keys = {k for k in (job.video_key, job.thumbnail_key, job.reference_key) if k}
    folder = f"videos/{job.public_id}"
    try:
        _dirs, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        files = []
    keys.update(posixpath.join(folder, name) for name in files)
    return keys


def purge_job_files(job: Job, *, erase_prompt: bool = False) -> int:
    """Delete the job's files, then record that they are gone. Returns how many files were deleted."""
    keys = stored_keys(job)
    for key in keys:
        default_storage.delete(key)
    fields: dict[str, object] = {"video_key": "", "thumbnail_key": "", "reference_key": "", "files_purged_at": Now()}
    if erase_prompt:
        fields["prompt"] = ""
    Job.objects.filter(pk=job.pk, state__in=list(retention_seconds())).update(**fields)
    return len(keys)


def purge_expired_files(*, limit: int = RETENTION_BATCH) -> int:
    """One sweep: remove the files of up to `limit` finished jobs whose retention has passed. Returns jobs purged."""
    purged = 0
    for state, seconds in retention_seconds().items():
        due = (
            Job.objects.filter(state=state, files_purged_at__isnull=True, completed_at__lt=db_now_plus(-seconds))
            .order_by("completed_at")
            .only("pk", "public_id", "video_key", "thumbnail_key", "reference_key")[: limit - purged]
        )
        for job in due:
            try:
                purge_job_files(job)
            except Exception:  # one unreachable file must not stop the sweep; the job stays due
                log.exception("removing the files of job %s failed; retried at the next sweep", job.pk)
                continue
            purged += 1
        if purged >= limit:
            break
    return purged
