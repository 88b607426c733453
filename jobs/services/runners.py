"""The runner side: gpu_runner calls these and nothing else. Every write after the claim is
fenced on (id, attempt, state): zero rows means the runner lost the job and must stop."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from jobs import queueing
from jobs.models import Job, Runner, State
from jobs.services import costs, dispatch
from jobs.services.stages import STAGE_TASKS
from jobs.services.transitions import cfg, db_now_plus, locked, retry_or_fail, transition
from notifications.services import push_progress
from videogen import metrics

S = State


def job_claim(*, job_id: int, runner: str) -> Job | None:
    """dispatched -> running; the compare-and-set that increments attempt. None: not ours to run.

    The returned job carries the new `attempt`: the fencing token for every later write of this runner.
    """
    with transaction.atomic():
        job = locked(job_id)
        if job is None or job.state != S.DISPATCHED:
            return None
        return _claim(job, runner=runner)


def _claim(job: Job, *, runner: str) -> Job:
    if job.queued_at is not None and job.attempt == 0:
        waited = max(0.0, (timezone.now() - job.queued_at).total_seconds())
        metrics.on_commit(lambda: metrics.WAIT.labels(job.tier, job.model).observe(waited))
    return transition(
        job,
        S.RUNNING,
        reason="claimed",
        actor=f"runner:{runner}",
        attempt=F("attempt") + 1,
        runner_id=runner,
        progress=0,
        lease_expires_at=db_now_plus(cfg("LEASE_SECONDS")),
        started_at=Coalesce(F("started_at"), Now()),
    )


def job_heartbeat(
    *, job_id: int, attempt: int, progress: int | None = None, announce_to: tuple[int, str] | None = None
) -> bool:
    """Renew the lease (and record progress). False: the runner lost the job and must stop.

    `announce_to` (user id, video id): the progress moved, tell the owner's live streams (video.progress: ephemeral,
    not in the log, at most once per heartbeat)."""
    fields: dict[str, object] = {"lease_expires_at": db_now_plus(cfg("LEASE_SECONDS"))}
    if progress is not None:
        fields["progress"] = max(0, min(99, progress))
    alive = Job.objects.filter(pk=job_id, attempt=attempt, state=S.RUNNING).update(**fields) == 1
    if alive and announce_to is not None and progress is not None:
        push_progress(user_id=announce_to[0], video_id=announce_to[1], progress=fields["progress"])
    return alive


def job_complete(
    *,
    job_id: int,
    attempt: int,
    video_key: str,
    thumbnail_key: str,
    gpu_seconds: float | None = None,
    video_signed: bool = False,
) -> bool:
    """running -> reviewing with the stored clip; queues output moderation. False: fenced out. `video_signed`: the
    clip carries our content credentials (gpu_runner.outputs signs every clip it stores)."""
    done, _ = _complete(
        job_id=job_id,
        attempt=attempt,
        video_key=video_key,
        thumbnail_key=thumbnail_key,
        video_signed=video_signed,
        gpu_seconds=gpu_seconds,
        next_for_queue=None,
        claim_as=None,
    )
    return done


def job_complete_and_claim_next(
    *,
    job_id: int,
    attempt: int,
    video_key: str,
    thumbnail_key: str,
    runner: str,
    gpu_seconds: float | None = None,
    next_for_queue: str | None = None,
    video_signed: bool = False,
) -> tuple[bool, Job | None]:
    """job_complete, and with `next_for_queue` the runner's next job, already claimed by `runner` (running,
    carrying its new attempt).

    The next job is chosen by the same policy, in the transaction that frees the slot, so no dispatcher pass
    can hand that slot out twice; between the GPU finishing one job and starting the next there is one
    transaction and one commit, and no poll.
    """
    return _complete(
        job_id=job_id,
        attempt=attempt,
        video_key=video_key,
        thumbnail_key=thumbnail_key,
        video_signed=video_signed,
        gpu_seconds=gpu_seconds,
        next_for_queue=next_for_queue,
        claim_as=runner,
    )


def _complete(
    *,
    job_id: int,
    attempt: int,
    video_key: str,
    thumbnail_key: str,
    video_signed: bool,
    gpu_seconds: float | None,
    next_for_queue: str | None,
    claim_as: str | None,
) -> tuple[bool, Job | None]:
    """With `claim_as` None, the next job is only handed out (dispatched to the queue), not claimed."""
    with transaction.atomic():
        job = locked(job_id)
        if job is None or job.state != S.RUNNING or job.attempt != attempt:
            return False, None
        transition(
            job,
            S.REVIEWING,
            reason="frames generated",
            actor=f"runner:{job.runner_id}",
            video_key=video_key,
            thumbnail_key=thumbnail_key,
            video_signed=video_signed,
            progress=99,
            lease_expires_at=None,
            stage_enqueued_at=Now(),
            stage_sends=1,
        )
        queueing.enqueue_cpu(STAGE_TASKS[S.REVIEWING], job.pk)
        next_id = dispatch.next_for_runner(queue=next_for_queue) if next_for_queue else None
        next_job = locked(next_id) if next_id is not None else None  # ours: handed out above, in this transaction
        if next_job is not None and claim_as is not None:
            next_job = _claim(next_job, runner=claim_as)
        if gpu_seconds is not None:
            metrics.on_commit(lambda: metrics.RUN.labels(job.model).observe(gpu_seconds))
            # Last, so the shape's row lock (runners finishing the same shape queue on it) is held only until
            # the commit, and not in a commit of its own while the GPU waits for its next job.
            costs.observe(model=job.model, width=job.width, height=job.height, seconds=job.seconds, took=gpu_seconds)
        return True, next_job


def job_holds_clip(*, job_id: int, attempt: int, video_key: str) -> bool:
    """Whether this attempt's completion landed (the job holds its clip), for a runner that lost the answer."""
    return Job.objects.filter(pk=job_id, attempt=attempt, video_key=video_key).exists()


def job_fail_attempt(
    *,
    job_id: int,
    attempt: int,
    error_code: str,
    message: str,
    retryable: bool,
    detail: str = "",
    backoff: bool = True,
) -> bool:
    """The runner's attempt failed: retry with backoff, or fail for good. False: fenced out.

    `message` is what the user sees; `detail` (an exception's text: paths, hosts, library internals) goes only
    to the audit event, for staff. `backoff=False`: the job did nothing wrong (a remote server forgot it)."""
    with transaction.atomic():
        job = locked(job_id)
        if job is None or job.state != S.RUNNING or job.attempt != attempt:
            return False
        retry_or_fail(
            job,
            error_code=error_code,
            message=message,
            retryable=retryable,
            actor=f"runner:{job.runner_id}",
            detail=detail,
            backoff=backoff,
        )
        return True


def job_release(*, job_id: int, attempt: int | None, reason: str) -> bool:
    """The runner is shutting down: give the job back to the queue now, not after its lease expires.

    `attempt` fences a running job; None releases a job dispatched to the runner and not yet claimed.
    """
    with transaction.atomic():
        job = locked(job_id)
        if job is None:
            return False
        if not (job.state == S.RUNNING and job.attempt == attempt) and not (
            attempt is None and job.state == S.DISPATCHED
        ):
            return False
        # The stopping runner still looks live until its registration expires: take it out of service in
        # this transaction, or the next pass could hand the job straight back to it.
        Runner.objects.filter(queue=job.queue).update(draining=True)
        transition(
            job,
            S.QUEUED,
            reason=f"released: {reason}",
            actor=f"runner:{job.runner_id}",
            lease_expires_at=None,
            progress=0,
            queue="",
        )
        return True


def runner_heartbeat(
    *,
    name: str,
    slots: int,
    model_names: list[str],
    queue: str = "gpu",
    host: str = "",
    pool: str = "default",
    version: str = "",
) -> bool:
    """Register or refresh a runner. Returns whether it is draining (then it must take no new work)."""
    fields = {"slots": slots, "model_names": model_names, "queue": queue, "host": host, "pool": pool}
    fields["version"] = version
    if not Runner.objects.filter(name=name).update(last_seen_at=Now(), **fields):
        Runner.objects.update_or_create(name=name, defaults={**fields, "started_at": Now(), "last_seen_at": Now()})
    return bool(Runner.objects.filter(name=name).values_list("draining", flat=True).first())


def runners_holding_jobs(*, host: str) -> set[str]:
    """The runners of a host that hold a running job (their names are host:pid)."""
    return set(
        Job.objects.filter(state=S.RUNNING, runner_id__startswith=f"{host}:").values_list("runner_id", flat=True)
    )


def runner_gone(*, name: str, successor: str) -> int:
    """A runner known dead (its process is gone, as a worker starting on its host saw): its running job goes back
    to the queue now, as the reaper would once its lease expired. Fenced like every runner write."""
    given_back = 0
    for job_id, attempt in Job.objects.filter(state=S.RUNNING, runner_id=name).values_list("pk", "attempt"):
        with transaction.atomic():
            job = locked(job_id)
            if job is None or (job.state, job.attempt, job.runner_id) != (S.RUNNING, attempt, name):
                continue
            retry_or_fail(
                job,
                error_code="runner_died",
                message="the runner stopped (its process died)",
                retryable=True,
                actor=f"runner:{successor}",
                backoff=False,
            )
            given_back += 1
    runner_withdraw(name=name)
    return given_back


def runner_withdraw(*, name: str) -> int:
    """A runner that stops: it offers no capacity from now on, rather than until its registration times out."""
    return Runner.objects.filter(name=name).update(
        draining=True, last_seen_at=db_now_plus(-cfg("RUNNER_TTL_SECONDS") - 1)
    )


def runner_drain(*, name: str, draining: bool = True) -> int:
    """Staff: stop handing work to a runner (it finishes what it has), or take it back into service."""
    return Runner.objects.filter(name=name).update(draining=draining)


def runner_is_draining(*, name: str) -> bool:
    return bool(Runner.objects.filter(name=name).values_list("draining", flat=True).first())


def runners_forget_stale(*, after_seconds: float = 3600) -> int:
    """Drop rows of runners long gone (workers are recycled and re-register under a new name), and the
    broker messages left on queues no runner consumes any more (their jobs were re-queued by the reaper)."""
    forgotten = Runner.objects.filter(last_seen_at__lt=db_now_plus(-after_seconds)).delete()[0]
    if forgotten:
        from django_q.models import OrmQ

        live_queues = set(Runner.objects.values_list("queue", flat=True))
        OrmQ.objects.filter(key__startswith="gpu").exclude(key__in=live_queues).delete()
    return forgotten
