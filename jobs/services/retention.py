"""Retention (docs/retention.md): what a finished job keeps, and for how long.

A finished job's files (its clip and thumbnail, every attempt's leftovers under `videos/<id>/`, its reference
image) are removed once the retention of its end state has passed. Its prompt, and every copy of it (its
notifications, the webhook bodies and emails made from them, the text of its moderation records), is erased
PROMPT_RETENTION_SECONDS after it ended, unless an appeal of it waits for a moderator. A user's DELETE does both
at once. The sweep reads its work from a partial index of finished jobs whose files are still
there, deletes the files (outside any transaction), then marks the job. Deleting is idempotent, so sweeps that
overlap (two dispatchers) or die half-way only repeat work; a file written by a runner killed after the
sweep would stay, which needs a kill between its save and its own clean-up.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterable

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import Now
from django_q.models import Task

from jobs.models import TERMINAL, Job, JobEvent, State
from jobs.services.transitions import cfg, db_now_plus
from moderation.models import ModerationDecision, Review
from notifications.erasure import erase_job_text
from notifications.models import Notification, WebhookDelivery

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


def purge_job_files(job: Job) -> int:
    """Delete the job's files, then record that they are gone. Returns how many files were deleted."""
    keys = stored_keys(job)
    for key in keys:
        default_storage.delete(key)
    fields: dict[str, object] = {"video_key": "", "thumbnail_key": "", "reference_key": "", "files_purged_at": Now()}
    Job.objects.filter(pk=job.pk, state__in=list(retention_seconds())).update(**fields)
    return len(keys)


def _without_text(reason: str) -> str:
    # "rule (name): matched words", "moderator: note": the kind of reason stays, the words go.
    return reason.split(":", 1)[0]


def erase_prompts(*, job_ids: Iterable[int]) -> int:
    """In the caller's transaction: erase the prompts of these finished jobs and every copy of them. A decision
    keeps its stage, action, category and scores. An appeal still open is withdrawn (nothing is left to run
    again). Returns how many jobs were erased."""
    ids = list(Job.objects.filter(pk__in=list(job_ids), state__in=list(TERMINAL)).values_list("pk", flat=True))
    if not ids:
        return 0
    Job.objects.filter(pk__in=ids).update(prompt="", prompt_erased_at=Now())
    erase_job_text(job_ids=ids)
    decisions = [d for d in ModerationDecision.objects.filter(job_id__in=ids).only("pk", "reasons") if d.reasons]
    for decision in decisions:
        decision.reasons = [_without_text(str(reason)) for reason in decision.reasons]
    ModerationDecision.objects.bulk_update(decisions, ["reasons"], batch_size=500)
    Review.objects.filter(job_id__in=ids, status=Review.Status.OPEN).update(
        status=Review.Status.WITHDRAWN, decided_at=Now()
    )
    Review.objects.filter(job_id__in=ids).update(message="", note="")
    return len(ids)


def erase_expired_prompts(*, limit: int = RETENTION_BATCH) -> int:
    """One sweep: erase the prompts of up to `limit` jobs that ended over PROMPT_RETENTION_SECONDS ago. A job
    whose appeal waits for a moderator keeps its prompt until the appeal is decided."""
    seconds = cfg("PROMPT_RETENTION_SECONDS")
    with transaction.atomic():
        due = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(state__in=list(TERMINAL), prompt_erased_at__isnull=True, completed_at__lt=db_now_plus(-seconds))
            .exclude(Exists(Review.objects.filter(job_id=OuterRef("pk"), kind="appeal", status="open")))
            .order_by("completed_at")
            .values_list("pk", flat=True)[:limit]
        )
        return erase_prompts(job_ids=due)


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


# --- rows: the audit trail and the notification log -------------------------------------------------------------

ROW_BATCH = 5000  # rows per statement: short transactions, no long lock on anything a request reads


def _delete_oldest(queryset: QuerySet, *, seconds: float, batch: int) -> int:
    """Delete up to `batch` of the oldest rows of `queryset` created over `seconds` ago. The primary key grows with
    `created_at`, so its index serves the sweep: the oldest rows are its first entries, and no extra index is written
    on every insert. Rows whose cascades reach other tables (a notification's deliveries) go with them."""
    oldest = queryset.order_by("pk").values("pk")[:batch]
    model = queryset.model
    with transaction.atomic():
        deleted, _ = model.objects.filter(pk__in=Subquery(oldest), created_at__lt=db_now_plus(-seconds)).delete()
    return deleted


def purge_expired_rows(*, batch: int = ROW_BATCH) -> dict[str, int]:
    """One sweep of the rows that grow with every job: audit events, notifications (with their webhook deliveries,
    attempts and emails), test deliveries and django-q2's task results, each after its retention. Jobs, credit
    entries and moderation decisions stay (the user's list, the ledger and appeals read them)."""
    done = {
        "events": _delete_oldest(JobEvent.objects.all(), seconds=cfg("EVENT_RETENTION_SECONDS"), batch=batch),
        "notifications": _delete_oldest(
            Notification.objects.all(), seconds=cfg("NOTIFICATION_RETENTION_SECONDS"), batch=batch
        ),
        "test_deliveries": _delete_oldest(
            WebhookDelivery.objects.filter(notification__isnull=True),
            seconds=cfg("NOTIFICATION_RETENTION_SECONDS"),
            batch=batch,
        ),
    }
    with transaction.atomic():
        stale = Task.objects.filter(stopped__lt=db_now_plus(-cfg("TASK_RESULT_RETENTION_SECONDS")))
        done["task_results"], _ = Task.objects.filter(pk__in=Subquery(stale.values("pk")[:batch])).delete()
    return done


def sweep() -> tuple[dict[str, int], bool]:
    """What the dispatcher's retention thread runs every RETENTION_SWEEP_SECONDS: files, prompts, then rows.
    Returns what each part removed, and whether a batch came back full (more is due: sweep again at once)."""
    done = {"files": purge_expired_files(), "prompts": erase_expired_prompts()}
    rows = purge_expired_rows()
    full = done["files"] >= RETENTION_BATCH or done["prompts"] >= RETENTION_BATCH
    full = full or any(n >= ROW_BATCH for n in rows.values())
    return done | rows, full
