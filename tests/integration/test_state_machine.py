"""The transition table and fencing: every pair, stale runners, duplicate messages."""

from __future__ import annotations

import itertools

import pytest
from django.db import transaction

from jobs import services
from jobs.models import TRANSITIONS, Job, JobEvent, State, can_transition, is_terminal
from notifications.models import Notification

ALL_PAIRS = list(itertools.product(State.values, State.values))

# The transition table, written out by hand so that a wrong edit of the table in jobs/models.py fails here.
# (pending/reviewing -> failed: the moderation stage itself could not run.)
EXPECTED = {
    ("pending", "queued"), ("pending", "rejected"), ("pending", "failed"), ("pending", "cancelled"),
    ("queued", "dispatched"), ("queued", "cancelled"),
    ("dispatched", "running"), ("dispatched", "queued"), ("dispatched", "failed"), ("dispatched", "cancelled"),
    ("running", "reviewing"), ("running", "queued"), ("running", "failed"), ("running", "cancelled"),
    ("reviewing", "succeeded"), ("reviewing", "rejected"), ("reviewing", "failed"), ("reviewing", "cancelled"),
}  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(("from_state", "to_state"), ALL_PAIRS)
def test_every_pair_follows_the_table(make_job, from_state, to_state):
    job = make_job(from_state, attempt=1)
    allowed = (from_state, to_state) in EXPECTED
    assert allowed == (to_state in TRANSITIONS[from_state])
    if allowed:
        with transaction.atomic():
            services.transition(services.locked(job.pk), to_state, reason="test", actor="test")
        job.refresh_from_db()
        assert job.state == to_state
        event = JobEvent.objects.get(job=job)
        assert (event.from_state, event.to_state, event.attempt) == (from_state, to_state, 1)
    else:
        with pytest.raises(services.TransitionError), transaction.atomic():
            services.transition(services.locked(job.pk), to_state, reason="test", actor="test")
        job.refresh_from_db()
        assert job.state == from_state
        assert not JobEvent.objects.filter(job=job).exists()


def test_table_shape():
    terminal = {s for s in State.values if is_terminal(s)}
    assert terminal == {"succeeded", "failed", "rejected", "cancelled"}
    for state in terminal:
        assert TRANSITIONS[state] == frozenset()
    for state in set(State.values) - terminal:
        assert can_transition(state, State.CANCELLED), f"{state} must be cancellable"


@pytest.mark.django_db
def test_claim_increments_attempt_and_takes_a_database_clock_lease(make_job):
    job = make_job("dispatched")
    claimed = services.job_claim(job_id=job.pk, runner="r1")
    assert claimed.attempt == 1 and claimed.state == State.RUNNING
    assert claimed.lease_expires_at is not None
    # A second claim of the same dispatch (a duplicate message) gets nothing.
    assert services.job_claim(job_id=job.pk, runner="r2") is None
    assert Job.objects.get(pk=job.pk).attempt == 1


@pytest.mark.django_db
def test_stale_runner_cannot_heartbeat_complete_fail_or_notify(make_job):
    job = make_job("dispatched")
    first = services.job_claim(job_id=job.pk, runner="old").attempt
    # The lease expires; the reaper requeues it; a new runner claims attempt 2.
    Job.objects.filter(pk=job.pk).update(lease_expires_at=services.db_now_plus(-1))
    assert services.reap_expired() == 1
    Job.objects.filter(pk=job.pk).update(not_before=None)
    with transaction.atomic():
        services.transition(services.locked(job.pk), State.DISPATCHED, reason="t", actor="t")
    second = services.job_claim(job_id=job.pk, runner="new").attempt
    assert (first, second) == (1, 2)
    notes_before = Notification.objects.count()

    assert services.job_heartbeat(job_id=job.pk, attempt=first, progress=50) is False
    assert services.job_complete(job_id=job.pk, attempt=first, video_key="x.mp4", thumbnail_key="x.webp") is False
    assert (
        services.job_fail_attempt(job_id=job.pk, attempt=first, error_code="e", message="m", retryable=False) is False
    )
    job.refresh_from_db()
    assert (job.state, job.attempt, job.video_key, job.progress) == (State.RUNNING, 2, "", 0)
    assert Notification.objects.count() == notes_before
    # The current attempt still can.
    assert services.job_heartbeat(job_id=job.pk, attempt=second, progress=40) is True


@pytest.mark.django_db
def test_cancel_fences_out_the_running_attempt(make_job):
    job = make_job("dispatched")
    attempt = services.job_claim(job_id=job.pk, runner="r").attempt
    services.job_cancel(job_id=job.pk, actor="user:1")
    assert services.job_heartbeat(job_id=job.pk, attempt=attempt) is False
    assert services.job_complete(job_id=job.pk, attempt=attempt, video_key="v", thumbnail_key="t") is False
    assert Job.objects.get(pk=job.pk).state == State.CANCELLED


@pytest.mark.django_db
def test_terminal_jobs_cannot_be_cancelled(make_job):
    job = make_job("succeeded")
    with pytest.raises(services.TransitionError):
        services.job_cancel(job_id=job.pk, actor="user:1")


@pytest.mark.django_db
def _db_now():
    from django.db.models.functions import Now

    return Job.objects.annotate(now=Now()).values_list("now", flat=True).first()


def test_retry_with_backoff_then_failed_with_last_error(make_job, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "MAX_ATTEMPTS": 3, "RETRY_BACKOFF_SECONDS": 30}
    job = make_job("dispatched")
    a1 = services.job_claim(job_id=job.pk, runner="r").attempt
    assert services.job_fail_attempt(
        job_id=job.pk, attempt=a1, error_code="generation_error", message="boom", retryable=True
    )
    job.refresh_from_db()
    assert job.state == State.QUEUED and job.error_code == "generation_error"
    wait = Job.objects.filter(pk=job.pk).values_list("not_before", flat=True).get() - _db_now()
    assert 25 < wait.total_seconds() <= 30  # the first backoff is RETRY_BACKOFF_SECONDS
    # Not runnable before its backoff: the dispatcher skips it even with a free slot.
    services.runner_heartbeat(name="r", slots=1, model_names=["wan-tiny"])
    assert services.dispatch_once() == 0
    Job.objects.filter(pk=job.pk).update(not_before=services.db_now_plus(-1))
    assert services.dispatch_once() == 1
    a2 = services.job_claim(job_id=job.pk, runner="r").attempt
    assert services.job_fail_attempt(
        job_id=job.pk, attempt=a2, error_code="generation_error", message="boom", retryable=True
    )
    wait = Job.objects.filter(pk=job.pk).values_list("not_before", flat=True).get() - _db_now()
    assert 55 < wait.total_seconds() <= 60  # doubled for the second attempt
    settings.VIDEOGEN = {**settings.VIDEOGEN, "MAX_ATTEMPTS": 2}
    Job.objects.filter(pk=job.pk).update(not_before=services.db_now_plus(-1))
    assert services.dispatch_once() == 1
    a3 = services.job_claim(job_id=job.pk, runner="r").attempt
    Job.objects.filter(pk=job.pk).update(lease_expires_at=services.db_now_plus(-1))
    assert services.reap_expired() == 1
    job.refresh_from_db()
    assert (a3, job.state, job.error_code) == (3, State.FAILED, "lease_expired")
    assert "lease expired" in job.error_message
    assert job.completed_at is not None


@pytest.mark.django_db
def test_unclaimed_dispatch_expires_back_to_queued_without_counting_an_attempt(make_job, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "MAX_DISPATCHES": 3}
    job = make_job("dispatched", lease_expires_at=None)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=services.db_now_plus(-1))
    assert services.reap_expired() == 1
    job.refresh_from_db()
    assert (job.state, job.attempt) == (State.QUEUED, 0)
    # ... but not for ever: the third unclaimed dispatch fails it, visibly.
    services.runner_heartbeat(name="ghost", slots=1, model_names=["wan-tiny"])
    for _ in range(2):
        assert services.dispatch_once() == 1
        Job.objects.filter(pk=job.pk).update(lease_expires_at=services.db_now_plus(-1))
        assert services.reap_expired() == 1
    job.refresh_from_db()
    assert (job.state, job.error_code, job.attempt) == (State.FAILED, "no_runner", 0)


def test_a_job_whose_runner_vanished_is_runnable_again_at_once(make_job, settings):
    """A lease that expired is the runner's loss, not the job's failure: no backoff before the next slot."""
    settings.VIDEOGEN = {**settings.VIDEOGEN, "MAX_ATTEMPTS": 3, "RETRY_BACKOFF_SECONDS": 30}
    job = make_job("dispatched")
    services.job_claim(job_id=job.pk, runner="r")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=services.db_now_plus(-1))
    assert services.reap_expired() == 1
    job.refresh_from_db()
    assert (job.state, job.error_code, job.not_before) == (State.QUEUED, "lease_expired", None)
    services.runner_heartbeat(name="r2", slots=1, model_names=["wan-tiny"])
    assert services.dispatch_once() == 1
