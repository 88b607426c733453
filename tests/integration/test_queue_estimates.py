"""Queue positions and start-time estimates: published by the dispatcher, read without scanning the queue.

Controlled clock: costs are set, the running job's start is placed in the past, and the estimate is compared
with the schedule the policy will actually follow. Tolerance: 1.5 s (timestamps are whole seconds, as in the
OpenAI video object, plus the publication's own clock reads).
"""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs import selectors, services
from jobs.models import Job, State

pytestmark = pytest.mark.django_db
TOLERANCE = 1.5


@pytest.fixture
def busy_runner(make_job):
    """One slot, busy with a 10 s job that started 4 s ago: 6 s left."""
    services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"], queue="gpu.a")
    running = make_job("running", attempt=1, cost=10.0, queue="gpu.a")
    Job.objects.filter(pk=running.pk).update(dispatched_at=services.db_now_plus(-4))
    return running


def _read(api, job: Job) -> tuple[int, float]:
    body = api.get(f"/v1/videos/{job.public_id}").json()
    return body["queue_position"], body["estimated_start_at"] - time.time()


def _publish():
    services.publish_queue_summary()
    selectors.forget_summaries()


def test_positions_and_start_times_follow_the_policy(api, user, make_user, make_job, busy_runner, client_for):
    other = make_user("bob")
    a1, a2, a3 = (make_job("queued", cost=10.0) for _ in range(3))  # alice's tags 0, 10, 20
    b1 = make_job("queued", owner=other, cost=10.0)  # bob's first job: tag 0, after a1 (older) at the same tag
    clients = {user.pk: api, other.pk: client_for(other)}
    for job in (a1, b1):  # a first request loads what the API needs (seconds on a busy machine): not timed below
        clients[job.user_id].get(f"/v1/videos/{job.public_id}")
    Job.objects.filter(pk=busy_runner.pk).update(dispatched_at=services.db_now_plus(-4))  # 6 s left, however slow
    _publish()
    expected = {a1: (1, 6), b1: (2, 16), a2: (3, 26), a3: (4, 36)}
    for job, (position, start_in) in expected.items():
        got_position, got_start = _read(clients[job.user_id], job)
        assert got_position == position
        assert got_start == pytest.approx(start_in, abs=TOLERANCE)
    # The dispatcher's real order is the one estimated.
    Job.objects.filter(pk=busy_runner.pk).update(state=State.SUCCEEDED)
    order = []
    for _ in range(4):
        services.dispatch_once()
        dispatched = Job.objects.get(state=State.DISPATCHED)
        order.append(dispatched.pk)
        Job.objects.filter(pk=dispatched.pk).update(state=State.SUCCEEDED)
    assert order == [a1.pk, b1.pk, a2.pk, a3.pk]


def test_a_position_falls_as_the_queue_moves_and_rises_only_for_higher_tier_work(
    api, make_user, make_job, busy_runner, client_for
):
    _first, second, third = (make_job("queued", cost=10.0) for _ in range(3))
    _publish()
    assert _read(api, third)[0] == 3
    Job.objects.filter(pk=busy_runner.pk).update(state=State.SUCCEEDED)
    services.dispatch_once()  # `first` goes to the runner
    _publish()
    assert _read(api, third)[0] == 2 and _read(api, second)[0] == 1
    # Paid work arrives: paid has 3x the weight, so it goes ahead and the free jobs move back.
    payer = make_user("payer", tier="paid")
    for _ in range(3):
        make_job("queued", owner=payer, cost=10.0)
    _publish()
    position, start_in = _read(api, third)
    assert position > 2
    assert start_in > 10 + 10  # the running job, the free job ahead, and paid work now


def test_a_waiting_position_never_rises_while_earlier_submissions_clear_moderation(
    api, user, make_user, make_job, busy_runner, client_for
):
    """Free jobs of several users and one paid job, all submitted before the first read; input moderation clears
    them in another order than they came. No read of a waiting job's position is above the one before (they used
    to climb as other users' earlier submissions entered the queue ahead: 2, 3, 4, 5), and each pass of the
    dispatcher hands out the job announced at position 1."""
    bob, carol, payer = make_user("bob"), make_user("carol"), make_user("payer", tier="paid")
    a1, a2 = (make_job("pending", cost=10.0) for _ in range(2))
    b1, b2 = (make_job("pending", owner=bob, cost=10.0) for _ in range(2))
    c1 = make_job("pending", owner=carol, cost=10.0)
    p1 = make_job("pending", owner=payer, cost=10.0)
    clients = {user.pk: api, bob.pk: client_for(bob), carol.pk: client_for(carol), payer.pk: client_for(payer)}
    everyone = [a1, a2, b1, b2, c1, p1]
    seen: dict[int, list[int]] = {job.pk: [] for job in everyone}

    def read() -> dict[int, int]:
        services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"], queue="gpu.a")  # alive, however slow
        _publish()
        positions = {}
        for job in everyone:
            body = clients[job.user_id].get(f"/v1/videos/{job.public_id}").json()
            if body["status"] == "queued" and body["queue_position"] is not None:
                positions[job.pk] = body["queue_position"]
                seen[job.pk].append(body["queue_position"])
        return positions

    for cleared in ([a1, a2], [b2], [c1, b1], [p1]):
        for job in cleared:
            assert services.job_moderate_input(job_id=job.pk) == State.QUEUED
        read()
    Job.objects.filter(pk=busy_runner.pk).update(state=State.SUCCEEDED)
    positions = read()
    while positions:
        assert services.dispatch_once() == 1
        dispatched = Job.objects.get(state=State.DISPATCHED)
        assert positions[dispatched.pk] == 1
        Job.objects.filter(pk=dispatched.pk).update(state=State.SUCCEEDED)
        positions = read()
    for job in everyone:
        assert seen[job.pk] == sorted(seen[job.pk], reverse=True), (job.pk, seen[job.pk])
    assert seen[a2.pk][0] == 5  # a1, bob's and carol's first jobs, and the paid one: counted from the first read


def test_a_job_submitted_after_the_summary_has_no_position_until_the_next_one(api, make_user, make_job, busy_runner):
    make_job("queued", cost=10.0)
    _publish()
    # Both came after it: bob's first job goes before alice's second, which the summary cannot know yet (read
    # from it, alice's would be 2, then 3 at the next one).
    make_job("queued", owner=make_user("bob"), cost=10.0)
    late = make_job("queued", cost=10.0)
    body = api.get(f"/v1/videos/{late.public_id}").json()
    assert (body["queue_position"], body["estimated_start_at"]) == (None, None)
    _publish()
    assert _read(api, late)[0] == 3


def test_jobs_in_moderation_take_their_places_in_the_published_line():
    from jobs.services.dispatch import merge_waiting

    queued = [[0.0, 1, 0, 0.0], [10.0, 2, 1, 10.0], [20.0, 3, 2, 20.0]]
    tiers = {"free": {"count": 3, "work": 30.0, "checkpoints": queued}}
    merged = merge_waiting(tiers, [("free", 5.0, 4, 10.0), ("free", 30.0, 5, 5.0), ("paid", 0.0, 6, 10.0)])
    line = [[0.0, 1, 0, 0.0], [5.0, 4, 1, 10.0], [10.0, 2, 2, 20.0], [20.0, 3, 3, 30.0], [30.0, 5, 4, 40.0]]
    assert merged["free"] == {"count": 5, "work": 45.0, "checkpoints": line}
    assert merged["paid"] == {"count": 1, "work": 10.0, "checkpoints": [[0.0, 6, 0, 0.0]]}


def test_a_status_read_does_not_scan_the_queue(api, make_job, busy_runner):
    jobs = [make_job("queued", cost=1.0) for _ in range(50)]
    _publish()
    api.get(f"/v1/videos/{jobs[-1].public_id}")  # warm the per-process summary cache
    with CaptureQueriesContext(connection) as queries:
        body = api.get(f"/v1/videos/{jobs[-1].public_id}").json()
    assert body["queue_position"] == 50
    # One indexed query, the job (the key's user is remembered from the warm-up read).
    assert len(queries) == 1, [q["sql"] for q in queries]


def test_positions_in_the_list_too(api, make_job, busy_runner):
    make_job("queued", cost=5.0)
    _publish()
    (video,) = api.get("/v1/videos").json()["data"][:1]
    assert video["queue_position"] == 1 and video["estimated_start_at"] is not None


def test_capacity_drop_is_seen_within_one_runner_ttl(make_job, settings):
    """Half the fleet stops heartbeating: the next publication counts only the live half, so waits double."""
    settings.VIDEOGEN = {**settings.VIDEOGEN, "RUNNER_TTL_SECONDS": 10}
    for name in ("a", "b", "c", "d"):
        services.runner_heartbeat(name=name, slots=1, model_names=["wan-tiny"], queue=f"gpu.{name}")
    for _ in range(40):
        make_job("queued", cost=30.0)
    _publish()
    full = selectors.tier_wait(model="wan-tiny", tier="free")
    from jobs.models import Runner

    Runner.objects.filter(name__in=("c", "d")).update(last_seen_at=services.db_now_plus(-11))
    _publish()
    assert services.live_slots() == 2
    assert selectors.tier_wait(model="wan-tiny", tier="free") == pytest.approx(2 * full)


def test_polling_is_paced_by_the_wait(api, make_job, busy_runner, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "POLL_AFTER_MS": 500}
    soon = make_job("queued", cost=1.0)
    later = [make_job("queued", cost=20.0) for _ in range(3)][-1]
    _publish()
    # Starts in ~6 s (the running job's rest): poll in about a quarter of that.
    assert int(api.get(f"/v1/videos/{soon.public_id}")["openai-poll-after-ms"]) == pytest.approx(1500, abs=400)
    assert api.get(f"/v1/videos/{later.public_id}")["openai-poll-after-ms"] == "10000"  # ~47 s: capped


def test_a_long_queue_is_published_as_sampled_checkpoints(api, make_job, busy_runner):
    from jobs.models import QueueSummary

    jobs = [make_job("queued", cost=2.0) for _ in range(700)]
    services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"], queue="gpu.a")  # alive after that
    _publish()
    free = QueueSummary.objects.get(model="wan-tiny").data["tiers"]["free"]
    assert (free["count"], free["work"]) == (700, 1400.0)
    cps = free["checkpoints"]
    assert 256 <= len(cps) <= 400  # one every 700 // 256 = 2 jobs, and the last
    assert cps[0][1:] == [jobs[0].pk, 0, 0.0] and cps[-1][1:] == [jobs[-1].pk, 699, 1398.0]
    # Between checkpoints the position is interpolated, exactly here (equal costs).
    assert _read(api, jobs[0])[0] == 1
    assert _read(api, jobs[400])[0] == 401
    assert _read(api, jobs[-1])[0] == 700
