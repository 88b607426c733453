"""Late binding onto live runner slots, round-robin across users, capacity from live runners only."""

from __future__ import annotations

import pytest
from django_q.models import OrmQ

from jobs import services
from jobs.models import Job, Runner, State

pytestmark = pytest.mark.django_db


def test_nothing_is_dispatched_without_a_live_runner(make_job):
    make_job("queued")
    assert services.free_slots() == 0
    assert services.dispatch_once() == 0
    assert OrmQ.objects.count() == 0


def test_dispatch_binds_only_as_many_jobs_as_free_slots(make_job):
    jobs = [make_job("queued") for _ in range(3)]
    services.runner_heartbeat(name="gpu-a", slots=1, model_names=["wan-tiny"])
    services.runner_heartbeat(name="gpu-b", slots=1, model_names=["wan-tiny"])
    assert services.dispatch_once() == 2
    states = [Job.objects.get(pk=j.pk).state for j in jobs]
    assert states == [State.DISPATCHED, State.DISPATCHED, State.QUEUED]
    tasks = [t.task for t in OrmQ.objects.order_by("id")]
    assert all(t["func"] == "gpu_runner.tasks.run_job" for t in tasks)
    assert {q.key for q in OrmQ.objects.all()} == {"gpu"}
    assert services.dispatch_once() == 0  # both slots busy now


def test_stale_runners_offer_no_capacity(make_job):
    make_job("queued")
    services.runner_heartbeat(name="gpu-a", slots=2, model_names=["wan-tiny"])
    Runner.objects.update(last_seen_at=services.db_now_plus(-3600))
    assert services.live_slots() == 0
    assert services.dispatch_once() == 0
    services.runner_heartbeat(name="gpu-a", slots=2, model_names=["wan-tiny"])  # it came back
    assert services.live_slots() == 2
    assert services.dispatch_once() == 1


def test_round_robin_across_users(make_job, make_user):
    heavy, light, late = make_user("heavy"), make_user("light"), make_user("late")
    heavy_jobs = [make_job("queued", owner=heavy) for _ in range(4)]
    light_job = make_job("queued", owner=light)
    late_job = make_job("queued", owner=late)
    services.runner_heartbeat(name="gpu", slots=3, model_names=["wan-tiny"])
    assert services.dispatch_once() == 3
    dispatched = set(Job.objects.filter(state=State.DISPATCHED).values_list("pk", flat=True))
    # One per user, not the three oldest (which are all heavy's).
    assert dispatched == {heavy_jobs[0].pk, light_job.pk, late_job.pk}


def test_user_who_received_more_service_waits(make_job, make_user):
    """Virtual time: a user whose earlier work cost 10 GPU-seconds goes after one who has had none."""
    served, waiting = make_user("served"), make_user("waiting")
    make_job("queued", owner=served, cost=10.0)
    services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"])
    assert services.dispatch_once() == 1  # served's first job: nobody else was waiting
    first = make_job("queued", owner=served, cost=1.0)  # older than waiting's job, but served had 10 s
    second = make_job("queued", owner=waiting, cost=1.0)
    Job.objects.filter(state=State.DISPATCHED).update(state=State.SUCCEEDED)
    assert services.dispatch_once() == 1
    assert Job.objects.get(pk=second.pk).state == State.DISPATCHED
    assert Job.objects.get(pk=first.pk).state == State.QUEUED


def test_cancelled_queued_job_is_never_dispatched(make_job):
    job = make_job("queued")
    services.job_cancel(job_id=job.pk, actor="user:1")
    services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"])
    assert services.dispatch_once() == 0


def test_dispatch_command_once(make_job, capsys):
    from django.core.management import call_command

    make_job("queued")
    services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"])
    call_command("dispatch", "--once")
    assert "dispatched 1" in capsys.readouterr().out


def test_stalled_moderation_stages_are_sent_again(make_job, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "STAGE_RESEND_SECONDS": 60}
    old = services.db_now_plus(-120)
    pending = make_job("pending")
    reviewing = make_job("reviewing", attempt=1)
    fresh = make_job("pending")
    queued = make_job("queued")
    Job.objects.filter(pk__in=[pending.pk, reviewing.pk, queued.pk]).update(stage_enqueued_at=old)
    Job.objects.filter(pk=fresh.pk).update(stage_enqueued_at=services.db_now_plus(0))
    assert services.resend_stalled_stages() == 2
    sent = sorted((q.task["func"], q.task["args"][0]) for q in OrmQ.objects.all())
    assert sent == [("jobs.tasks.moderate_input", pending.pk), ("jobs.tasks.review_output", reviewing.pk)]
    assert {q.key for q in OrmQ.objects.all()} == {"cpu"}
    assert services.resend_stalled_stages() == 0  # not again until another timeout has passed
    # A stage that never runs does not strand the job: after STAGE_MAX_SENDS it fails, visibly.
    settings.VIDEOGEN = {**settings.VIDEOGEN, "STAGE_MAX_SENDS": 2}
    Job.objects.filter(pk=pending.pk).update(stage_enqueued_at=old)
    assert services.resend_stalled_stages() == 1
    pending.refresh_from_db()
    assert (pending.state, pending.error_code) == (State.FAILED, "moderation_unavailable")


def test_long_gone_runners_are_forgotten():
    services.runner_heartbeat(name="old", slots=1, model_names=["wan-tiny"])
    services.runner_heartbeat(name="new", slots=1, model_names=["wan-tiny"])
    Runner.objects.filter(name="old").update(last_seen_at=services.db_now_plus(-7200))
    assert services.runners_forget_stale() == 1
    assert list(Runner.objects.values_list("name", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)
def test_dispatch_passes_are_serialised_across_dispatchers(make_job):
    """Two dispatchers must not both count the same free slot: a pass waits while another one runs."""
    import threading

    from django.db import connection, transaction

    make_job("queued")
    services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"])
    holding, release = threading.Event(), threading.Event()

    def other_dispatcher_mid_pass() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [services.DISPATCH_LOCK_KEY])
            holding.set()
            release.wait(10)
        connection.close()

    result: list[int] = []

    def dispatcher() -> None:
        result.append(services.dispatch_once())
        connection.close()

    other = threading.Thread(target=other_dispatcher_mid_pass)
    other.start()
    assert holding.wait(10)
    mine = threading.Thread(target=dispatcher)
    mine.start()
    mine.join(0.5)
    assert mine.is_alive() and result == []  # waiting for the other pass to end
    assert Job.objects.filter(state=State.DISPATCHED).count() == 0
    release.set()
    other.join()
    mine.join(10)
    assert result == [1]
