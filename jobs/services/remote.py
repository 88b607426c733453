"""Writes for jobs run on remote generation servers (jobs.backends; the worker is gpu_runner.remote).

The remote job is held under the same fencing as a runner's claim: its intent, its id and its adoption by a
later attempt are each written only while the job is `running` under the attempt that writes. Completion and
failure go through jobs.services.runners (job_complete, job_fail_attempt), so a remote job ends, charges and
notifies exactly as a local one does. A webhook is only a hint: it moves the job's next poll to now.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Now

from jobs.models import Job, RemoteJob, RemoteWebhookEvent, State
from jobs.services.transitions import db_now_plus, locked

S = State
P = RemoteJob.Phase
LIVE = (P.CREATING, P.ACTIVE)


def _holds(job: Job | None, attempt: int) -> bool:
    return job is not None and job.state == S.RUNNING and job.attempt == attempt


def remote_begin(*, job_id: int, attempt: int, pool: str, key: str) -> RemoteJob | None:
    """The intent, before the create is sent: from here a crash leaves a trace to reconcile. None: fenced out."""
    with transaction.atomic():
        if not _holds(locked(job_id), attempt):
            return None
        return RemoteJob.objects.create(job_id=job_id, attempt=attempt, pool=pool, idempotency_key=key)


def remote_record(*, remote_job_id: int, attempt: int, remote_id: str, poll_in: float) -> bool:
    """The server's id for our intent, under the fence. False: the job moved on (the caller cancels it there)."""
    with transaction.atomic():
        rj = RemoteJob.objects.select_for_update().filter(pk=remote_job_id).first()
        if rj is None or rj.attempt != attempt or rj.phase not in LIVE or not _holds(locked(rj.job_id), attempt):
            if rj is not None and rj.phase in LIVE:
                RemoteJob.objects.filter(pk=rj.pk).update(remote_id=remote_id, phase=P.ABANDONED, finished_at=Now())
            return False
        RemoteJob.objects.filter(pk=rj.pk).update(
            remote_id=remote_id, phase=P.ACTIVE, recorded_at=Now(), next_poll_at=db_now_plus(poll_in)
        )
        return True


def remote_adoptable(*, job_id: int, pool: str) -> RemoteJob | None:
    """A remote job an earlier attempt of this job left running on this pool (its worker died, the lease ran out
    and the job came back here): the new attempt takes it over instead of paying for a second generation."""
    return RemoteJob.objects.filter(job_id=job_id, pool=pool, phase__in=LIVE).order_by("-id").first()


def remote_adopt(*, remote_job_id: int, attempt: int) -> bool:
    """Move a live remote job to the attempt that now holds our job (fenced on that attempt)."""
    with transaction.atomic():
        rj = RemoteJob.objects.select_for_update().filter(pk=remote_job_id, phase__in=LIVE).first()
        if rj is None or not _holds(locked(rj.job_id), attempt):
            return False
        RemoteJob.objects.filter(pk=rj.pk).update(attempt=attempt, next_poll_at=Now())
        return True


def remote_takeover(*, pool: str, runner: str) -> int:
    """A remote worker starting for a pool takes the pool's running jobs over from the worker before it (one
    worker per pool at a time): same attempts, same remote jobs; only the runner name, and a fresh lease."""
    job_ids = RemoteJob.objects.filter(pool=pool, phase__in=LIVE).values_list("job_id", flat=True)
    return Job.objects.filter(pk__in=list(job_ids), state=S.RUNNING).update(runner_id=runner)


def remote_polled(*, remote_job_id: int, status: str, progress: int | None, poll_in: float, detail: str = "") -> None:
    fields: dict[str, object] = {
        "remote_status": status[:64],
        "polled_at": Now(),
        "polls": F("polls") + 1,
        "next_poll_at": db_now_plus(poll_in),
    }
    if progress is not None:
        fields["remote_progress"] = progress
    if detail:
        fields["detail"] = detail[:2000]
    RemoteJob.objects.filter(pk=remote_job_id, phase__in=LIVE).update(**fields)


def remote_end(*, remote_job_id: int, phase: str, detail: str = "") -> bool:
    """Mark a remote job finished (done, lost, abandoned, unknown). False: it had ended already."""
    fields: dict[str, object] = {"phase": phase, "finished_at": Now(), "next_poll_at": None}
    if detail:
        fields["detail"] = detail[:2000]
    return RemoteJob.objects.filter(pk=remote_job_id, phase__in=LIVE).update(**fields) == 1


def remote_hint(*, pool: str, event_id: str, remote_id: str) -> str:
    """A webhook from a pool: "duplicate" (this event was taken already), "unknown" (no live job of ours has that
    remote id: late, or not ours) or "hinted" (its next poll is now). Polling stays the truth either way."""
    try:
        with transaction.atomic():
            RemoteWebhookEvent.objects.create(pool=pool, event_id=event_id[:200])
    except IntegrityError:
        return "duplicate"
    updated = RemoteJob.objects.filter(pool=pool, remote_id=remote_id, phase__in=LIVE).update(
        next_poll_at=Now(), hints=F("hints") + 1
    )
    return "hinted" if updated else "unknown"


def remote_forget_events(*, older_than_seconds: float) -> int:
    """Webhook event ids past the replay window (a replay that old is refused by its timestamp anyway)."""
    return RemoteWebhookEvent.objects.filter(received_at__lt=db_now_plus(-older_than_seconds)).delete()[0]


def remote_due(*, pool: str, limit: int = 100) -> list[RemoteJob]:
    """The pool's live remote jobs whose poll is due (or whose job moved on: they are cancelled there)."""
    return list(
        RemoteJob.objects.filter(pool=pool, phase__in=LIVE)
        .filter(Q(next_poll_at__lte=Now()) | Q(next_poll_at__isnull=True))
        .select_related("job")
        .order_by("next_poll_at")[:limit]
    )


def remote_live(*, pool: str) -> list[RemoteJob]:
    return list(RemoteJob.objects.filter(pool=pool, phase__in=LIVE).select_related("job"))


def remote_poll_now(*, remote_job_id: int) -> None:
    RemoteJob.objects.filter(pk=remote_job_id, phase__in=LIVE).update(next_poll_at=Now())
