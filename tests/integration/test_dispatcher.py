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
    services.runner_heartbeat(name="gpu-a", slots=1, model_names=["wan-tiny"], queue="gpu-a")
    services.runner_heartbeat(name="gpu-b", slots=1, model_names=["wan-tiny"], queue="gpu-b")
    assert services.dispatch_once() == 2
    states = [Job.objects.get(pk=j.pk).state for j in jobs]
    assert states == [State.DISPATCHED, State.DISPATCHED, State.QUEUED]
    tasks = [t.task for t in OrmQ.objects.order_by("id")]
    assert all(t["func"] == "gpu_runner.tasks.run_job" for t in tasks)
    # Each job went to its runner's own queue.
    assert sorted(q.key for q in OrmQ.objects.all()) == ["gpu-a", "gpu-b"]
    assert services.dispatch_once() == 0  # both slots busy now


def test_a_runner_that_withdraws_offers_nothing_at_once(make_job):
    make_job("queued")
    services.runner_heartbeat(name="gpu-a", slots=1, model_names=["wan-tiny"], queue="gpu-a")
    services.runner_heartbeat(name="gpu-b", slots=1, model_names=["wan-tiny"], queue="gpu-b")
    services.runner_withdraw(name="gpu-a")  # stopping: not after RUNNER_TTL_SECONDS, now
    assert services.live_slots() == 1
    assert services.dispatch_once() == 1
    assert list(OrmQ.objects.values_list("key", flat=True)) == ["gpu-b"]


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


def test_a_cpu_backlog_is_waited_out_not_failed(make_job, settings):
    """Defect 4: a cpu backlog longer than a few STAGE_RESEND_SECONDS failed healthy jobs as
    moderation_unavailable. While a message older than the job's send still waits, the job is left alone."""
    from django_q.models import OrmQ

    from jobs import queueing

    settings.VIDEOGEN = {**settings.VIDEOGEN, "STAGE_RESEND_SECONDS": 60, "STAGE_MAX_SENDS": 2}
    job = make_job("pending")
    sends = job.stage_sends
    queueing.enqueue_cpu("jobs.tasks.moderate_input", job.pk)  # its message, still waiting: the backlog
    hour_ago = services.db_now_plus(-3600)
    OrmQ.objects.update(lock=hour_ago)  # enqueued an hour ago and never taken
    for _ in range(5):  # many resend periods pass
        Job.objects.filter(pk=job.pk).update(stage_enqueued_at=hour_ago)
        assert services.resend_stalled_stages() == 0
    job.refresh_from_db()
    assert (job.state, job.stage_sends) == (State.PENDING, sends) and OrmQ.objects.count() == 1
    # The message is gone without the stage having run (lost): now it is sent again, and counted.
    OrmQ.objects.all().delete()
    assert services.resend_stalled_stages() == 1
    job.refresh_from_db()
    assert job.stage_sends == sends + 1 and OrmQ.objects.count() == 1


def test_long_gone_runners_are_forgotten_with_their_queues(make_job):
    services.runner_heartbeat(name="old", slots=1, model_names=["wan-tiny"], queue="gpu.old")
    assert services.dispatch_once() == 0
    make_job("queued")
    assert services.dispatch_once() == 1  # a message now waits on gpu.old
    services.runner_heartbeat(name="new", slots=1, model_names=["wan-tiny"], queue="gpu.new")
    make_job("queued")
    assert services.dispatch_once() == 1
    Runner.objects.filter(name="old").update(last_seen_at=services.db_now_plus(-7200))
    assert services.runners_forget_stale() == 1
    assert list(Runner.objects.values_list("name", flat=True)) == ["new"]
    assert list(OrmQ.objects.values_list("key", flat=True)) == ["gpu.new"]  # nobody will ever read gpu.old


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


def _runner(name: str, models=("wan-tiny",), slots: int = 1) -> None:
    services.runner_heartbeat(name=name, slots=slots, model_names=list(models), queue=f"gpu.{name}")


def test_work_goes_only_to_a_runner_that_serves_its_model(make_job):
    turbo = make_job("queued", model="wan-tiny-turbo")
    _runner("plain", models=("wan-tiny",))
    assert services.dispatch_once() == 0  # the only free runner does not serve it
    _runner("fast", models=("wan-tiny", "wan-tiny-turbo"))
    assert services.dispatch_once() == 1
    assert Job.objects.get(pk=turbo.pk).queue == "gpu.fast"


def test_a_draining_runner_is_handed_nothing(make_job):
    make_job("queued")
    _runner("a")
    services.runner_drain(name="a")
    assert services.live_slots() == 0 and services.dispatch_once() == 0
    services.runner_drain(name="a", draining=False)
    assert services.dispatch_once() == 1


def test_paid_goes_before_free_by_weight(make_job, make_user):
    free_user, paid_user = make_user("f"), make_user("p", tier="paid")
    for _ in range(8):
        make_job("queued", owner=free_user, cost=1.0)
        make_job("queued", owner=paid_user, cost=1.0)
    _runner("a", slots=4)
    assert services.dispatch_once() == 4
    tiers = list(Job.objects.filter(state=State.DISPATCHED).values_list("tier", flat=True))
    assert sorted(tiers) == ["free", "paid", "paid", "paid"]


def test_an_aged_free_job_goes_before_paid_work(make_job, make_user, settings):
    tiers = settings.VIDEOGEN_TIERS
    settings.VIDEOGEN_TIERS = {**tiers, "free": {**tiers["free"], "AGING_SECONDS": 60}}
    old = make_job("queued", owner=make_user("f"), cost=1.0)
    Job.objects.filter(pk=old.pk).update(queued_at=services.db_now_plus(-61))
    from jobs.models import SchedTier

    SchedTier.objects.create(tier="free", vtime=1e6)  # free had far more than its share
    for _ in range(3):
        make_job("queued", owner=make_user(tier="paid"), cost=1.0)
    _runner("a")
    assert services.dispatch_once() == 1
    assert Job.objects.get(pk=old.pk).state == State.DISPATCHED
    from jobs.services import dispatch

    assert dispatch.last_pass.aged == [old.pk]


def test_a_finishing_runner_claims_its_next_job_in_the_same_commit(make_job):
    first, second = make_job("queued"), make_job("queued")
    _runner("a")
    assert services.dispatch_once() == 1
    claimed = services.job_claim(job_id=first.pk, runner="a")
    done, nxt = services.job_complete_and_claim_next(
        job_id=first.pk, attempt=claimed.attempt, video_key="v", thumbnail_key="t", runner="a", next_for_queue="gpu.a"
    )
    assert done and nxt.pk == second.pk
    assert (nxt.state, nxt.queue, nxt.attempt, nxt.runner_id) == (State.RUNNING, "gpu.a", 1, "a")
    assert services.job_claim(job_id=second.pk, runner="b") is None  # nobody else can take it
    # No broker message for it (the runner runs it directly); only output review was queued.
    assert [q.task["func"] for q in OrmQ.objects.all()][-1] == "jobs.tasks.review_output"
    assert not [q for q in OrmQ.objects.all() if q.task["args"] == (second.pk,) and q.key == "gpu.a"]
    assert services.dispatch_once() == 0  # the slot is taken: no second hand-out
    events = list(Job.objects.get(pk=second.pk).events.values_list("to_state", flat=True))
    assert events[-2:] == [State.DISPATCHED, State.RUNNING]


def test_release_requeues_at_once_and_takes_the_runner_out_of_service(make_job):
    job = make_job("queued")
    _runner("a")
    services.dispatch_once()
    claimed = services.job_claim(job_id=job.pk, runner="a")
    assert services.job_release(job_id=job.pk, attempt=claimed.attempt - 1, reason="x") is False  # fenced
    assert services.job_release(job_id=job.pk, attempt=claimed.attempt, reason="runner stopping")
    job.refresh_from_db()
    assert job.state == State.QUEUED and job.queue == ""
    assert Runner.objects.get(name="a").draining
    assert services.dispatch_once() == 0  # not handed back to the stopping runner


def _submitted_cost(user, width: int, height: int, seconds: int) -> float:
    """The cost estimate a new submission of this shape gets (read in its transaction, cached per process)."""
    request = services.SubmitRequest(
        prompt="p", model="wan-tiny", seconds=seconds, width=width, height=height, reference_png=None, request_hash="h"
    )
    job, _ = services.job_submit(user_id=user.pk, request=request, idempotency_key=None)
    return job.cost


def test_costs_are_learned_from_observed_runs(make_user, settings):
    from jobs.services import costs

    user = make_user(tier="paid")
    costs.forget_cache()
    assert _submitted_cost(user, 256, 256, 4) == pytest.approx(0.5 + 0.5 * 256 * 256 * 17 / 1e6)  # the prior
    costs.observe(model="wan-tiny", width=256, height=256, seconds=4, took=10.0)
    assert _submitted_cost(user, 256, 256, 4) == pytest.approx(10.0)
    costs.observe(model="wan-tiny", width=256, height=256, seconds=4, took=20.0)
    assert _submitted_cost(user, 256, 256, 4) == pytest.approx(12.0)  # 10 + 0.2 * (20 - 10)
    assert _submitted_cost(user, 128, 128, 4) == pytest.approx(0.5 + 0.5 * 128 * 128 * 17 / 1e6)


def test_a_completion_teaches_the_cost_model(make_job, make_user):
    from jobs.services import costs

    job = make_job("queued", width=256, height=144, seconds=8)
    _runner("a")
    services.dispatch_once()
    claimed = services.job_claim(job_id=job.pk, runner="a")
    services.job_complete(job_id=job.pk, attempt=claimed.attempt, video_key="v", thumbnail_key="t", gpu_seconds=3.5)
    costs.forget_cache()
    assert _submitted_cost(make_user(tier="paid"), 256, 144, 8) == pytest.approx(3.5)


def test_a_worker_starting_on_a_host_gives_back_the_jobs_of_its_dead_runners_at_once(make_job, settings):
    """The sentinel replacing a killed gpu worker (or a restarted cluster) does not leave the dead one's job to
    its lease: a process that no longer exists here is dead. A live one's job stays where it is."""
    import os
    import socket
    import subprocess

    from gpu_runner import worker

    settings.VIDEOGEN = {**settings.VIDEOGEN, "RETRY_BACKOFF_SECONDS": 30}
    host = socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that existed and is gone
    dead = make_job("running", runner_id=f"{host}:{gone.pid}", attempt=1, lease_expires_at=services.db_now_plus(30))
    live = make_job("running", runner_id=f"{host}:{os.getpid()}", attempt=1, lease_expires_at=services.db_now_plus(30))
    elsewhere = make_job("running", runner_id=f"other-host:{gone.pid}", attempt=1)
    services.runner_heartbeat(name=f"{host}:{gone.pid}", slots=1, model_names=["wan-tiny"])

    worker._give_back_jobs_of_dead_runners()

    dead.refresh_from_db()
    assert (dead.state, dead.error_code, dead.not_before, dead.attempt) == (State.QUEUED, "runner_died", None, 1)
    assert Job.objects.get(pk=live.pk).state == State.RUNNING
    assert Job.objects.get(pk=elsewhere.pk).state == State.RUNNING  # another host's pids mean nothing here
    assert services.live_slots() == 0  # the dead runner's slot is withdrawn too


def test_a_runner_whose_job_lease_ran_out_is_handed_nothing_until_it_reports_again(make_job):
    """Its host may be cut off: handing it the reaped job would leave that job there until the dispatch timeout.
    (The runner's own registration has not timed out yet: both heartbeats stopped at the same moment.)"""
    job = make_job("dispatched")
    services.runner_heartbeat(name="gpu-a", slots=1, model_names=["wan-tiny"], queue="gpu-a")
    services.job_claim(job_id=job.pk, runner="gpu-a")
    services.runner_heartbeat(name="gpu-b", slots=1, model_names=["wan-tiny"], queue="gpu-b")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=services.db_now_plus(-1))
    assert services.reap_expired() == 1
    assert services.dispatch_once() == 1
    assert list(OrmQ.objects.values_list("key", flat=True)) == ["gpu-b"]
    assert services.live_slots() == 1
    services.runner_heartbeat(name="gpu-a", slots=1, model_names=["wan-tiny"], queue="gpu-a")  # it was alive
    assert services.live_slots() == 2
