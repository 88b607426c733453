"""The notification log: per-user seq in the transition's transaction, API and websocket delivery."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection, transaction

from jobs import services
from jobs.models import Job, State
from notifications.models import Notification
from notifications.services import notification_create


def _run_to_success(job: Job) -> None:
    services.job_moderate_input(job_id=job.pk)  # a first model load may outlast a runner's TTL: beat after it
    services.runner_heartbeat(name="r", slots=1, model_names=["wan-tiny"])
    services.dispatch_once()
    attempt = services.job_claim(job_id=job.pk, runner="r").attempt
    services.job_complete(job_id=job.pk, attempt=attempt, video_key="v.mp4", thumbnail_key="v.webp")
    with transaction.atomic():
        services.transition(services.locked(job.pk), State.SUCCEEDED, reason="t", actor="t")


@pytest.mark.django_db
def test_lifecycle_writes_one_notification_per_public_change_with_increasing_seq(make_job, user, make_user):
    a, b = make_job("pending"), make_job("pending")
    other_job = make_job("pending", owner=make_user("zed"))
    for job in (a, b, other_job):
        _run_to_success(job)
    mine = list(Notification.objects.filter(user=user).order_by("seq"))
    assert [n.seq for n in mine] == [1, 2, 3, 4]
    assert [(n.job_id, n.event) for n in mine] == [
        (a.pk, "video.in_progress"),
        (a.pk, "video.completed"),
        (b.pk, "video.in_progress"),
        (b.pk, "video.completed"),
    ]
    assert mine[-1].payload["status"] == "completed" and mine[-1].payload["id"] == b.public_id
    assert list(Notification.objects.exclude(user=user).values_list("seq", flat=True)) == [1, 2]


@pytest.mark.django_db
def test_notification_rolls_back_with_its_transition(make_job):
    job = make_job("queued")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.job_cancel(job_id=job.pk, actor="t")
        raise RuntimeError("the transaction fails after the transition")
    assert Notification.objects.count() == 0
    assert Job.objects.get(pk=job.pk).state == State.QUEUED


@pytest.mark.django_db
def test_at_most_one_notification_per_job_event(make_job, user):
    job = make_job("running")
    with transaction.atomic():
        first = notification_create(user_id=user.pk, job_id=job.pk, event="video.completed", payload={})
        second = notification_create(user_id=user.pk, job_id=job.pk, event="video.completed", payload={})
    assert first is not None and second is None
    assert Notification.objects.count() == 1


@pytest.mark.django_db
def test_a_notification_is_four_statements_and_the_first_one_makes_the_counter(user, make_user):
    """The seq comes back from its UPDATE (RETURNING); the outbox lookups are compiled reads."""
    from django.test.utils import CaptureQueriesContext

    with transaction.atomic():
        assert notification_create(user_id=user.pk, job_id=None, event="video.completed", payload={}).seq == 1
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        assert notification_create(user_id=user.pk, job_id=None, event="video.completed", payload={}).seq == 2
    sql = [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(sql) == 4, sql  # the seq, the row, the user's live endpoints, the user's address
    assert "RETURNING" in sql[0]
    other = make_user("no-counter-yet")
    with transaction.atomic():
        assert notification_create(user_id=other.pk, job_id=None, event="video.failed", payload={}).seq == 1


@pytest.mark.django_db(transaction=True)
def test_notification_outside_a_transaction_is_refused(user):
    with pytest.raises(RuntimeError):
        notification_create(user_id=user.pk, job_id=None, event="x", payload={})


@pytest.mark.django_db
def test_api_after_seq(api, make_job):
    for _ in range(3):
        services.job_cancel(job_id=make_job("queued").pk, actor="t")
    page = api.get("/v1/notifications?after_seq=1&limit=1").json()
    assert [n["seq"] for n in page["data"]] == [2] and page["has_more"] is True and page["last_seq"] == 2
    page = api.get("/v1/notifications?after_seq=2").json()
    assert [n["seq"] for n in page["data"]] == [3] and page["has_more"] is False
    assert page["data"][0]["event"] == "video.cancelled" and page["data"][0]["data"]["status"] == "cancelled"
    assert api.get("/v1/notifications?after_seq=-1").status_code == 400


async def _receive(comm: WebsocketCommunicator) -> dict:
    return await comm.receive_json_from(timeout=5)


@pytest.mark.django_db(transaction=True)
def test_websocket_resumes_from_last_seq_and_pushes_new_rows(make_job, api_key, user):
    from videogen.asgi import application

    jobs = [make_job("queued") for _ in range(3)]
    services.job_cancel(job_id=jobs[0].pk, actor="t")
    services.job_cancel(job_id=jobs[1].pk, actor="t")
    headers = [(b"authorization", f"Bearer {api_key}".encode())]

    async def scenario():
        comm = WebsocketCommunicator(application, "/ws/events?last_seq=1", headers=headers)
        connected, _ = await comm.connect()
        assert connected
        backlog = await _receive(comm)
        assert (backlog["type"], backlog["seq"], backlog["event"]) == ("notification", 2, "video.cancelled")
        # A new row written by another process arrives through the channels-redis hint.
        await database_sync_to_async(services.job_cancel)(job_id=jobs[2].pk, actor="t")
        pushed = await _receive(comm)
        assert pushed["seq"] == 3 and pushed["data"]["id"] == jobs[2].public_id
        await comm.send_json_to({"type": "resume", "last_seq": 0})
        replay = [await _receive(comm) for _ in range(3)]
        assert [m["seq"] for m in replay] == [1, 2, 3]
        await comm.send_to(text_data="not json")
        assert (await _receive(comm))["type"] == "error"
        await comm.send_json_to({"type": "resume", "last_seq": "x"})
        assert (await _receive(comm))["type"] == "error"
        await comm.disconnect()

        anonymous = WebsocketCommunicator(application, "/ws/events")
        connected, code = await anonymous.connect()
        assert not connected and code == 4401

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_websocket_resync_covers_lost_pushes_and_reads_the_log_only_when_it_moved(user, api_key, settings, monkeypatch):
    from notifications import consumers
    from notifications import services as notify
    from videogen.asgi import application

    settings.VIDEOGEN = {**settings.VIDEOGEN, "NOTIFY_RESYNC_SECONDS": 0.3}
    headers = [(b"authorization", f"Bearer {api_key}".encode())]
    monkeypatch.setattr(notify, "_push", lambda user_id, message: None)  # every push is lost
    log_reads = []
    real = consumers.notifications_after
    monkeypatch.setattr(consumers, "notifications_after", lambda **kw: log_reads.append(kw) or real(**kw))

    async def messages_for(seconds: float) -> list[dict]:
        out, deadline = [], asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            # receive_nothing, not a receive timeout: a timed-out receive cancels the application
            if await comm.receive_nothing(timeout=left, interval=0.01):
                break
            out.append(await comm.receive_json_from())
        return out

    async def scenario():
        nonlocal comm
        comm = WebsocketCommunicator(application, "/ws/events", headers=headers)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "ping"})
        assert (await _receive(comm))["type"] == "pong"  # the connect's replay is done
        idle = await messages_for(1.2)  # about four resyncs of an idle socket
        assert [m["type"] for m in idle] == ["read"], idle  # the badge once, then nothing
        assert len(log_reads) == 1, log_reads  # the connect's replay: idle resyncs read one counter row only
        await database_sync_to_async(_notify)(user)
        got = await messages_for(1.2)
        assert [(m["type"], m.get("seq")) for m in got] == [("notification", 1), ("read", None)], got
        assert got[1]["unread_count"] == 1
        await database_sync_to_async(notify.notifications_mark_read)(user_id=user.pk, up_to_seq=1)
        got = await messages_for(1.2)
        assert [(m["type"], m["read_seq"], m["unread_count"]) for m in got] == [("read", 1, 0)], got
        await comm.disconnect()

    comm = None
    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_hint_carries_the_next_row_so_a_caught_up_socket_reads_no_log_and_one_behind_reads_it(
    user, api_key, monkeypatch
):
    from notifications import consumers
    from notifications import services as notify
    from videogen.asgi import application

    headers = [(b"authorization", f"Bearer {api_key}".encode())]
    log_reads = []
    real_read, real_push = consumers.notifications_after, notify._push
    monkeypatch.setattr(consumers, "notifications_after", lambda **kw: log_reads.append(kw) or real_read(**kw))

    async def scenario():
        comm = WebsocketCommunicator(application, "/ws/events", headers=headers)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "ping"})
        assert (await _receive(comm))["type"] == "pong"
        assert len(log_reads) == 1  # the connect's replay
        await database_sync_to_async(_notify)(user)
        first = await _receive(comm)
        assert (first["type"], first["seq"], first["data"]) == ("notification", 1, {"id": "video_x"})
        assert len(log_reads) == 1  # sent from the hint itself
        monkeypatch.setattr(notify, "_push", lambda user_id, message: None)
        await database_sync_to_async(_notify)(user)  # seq 2: its hint is lost
        monkeypatch.setattr(notify, "_push", real_push)
        await database_sync_to_async(_notify)(user)  # seq 3's hint reaches a socket that never saw 2
        got = [await _receive(comm) for _ in range(2)]
        assert [m["seq"] for m in got] == [2, 3] and len(log_reads) == 2  # it read the log from its last seq
        await comm.disconnect()

    asyncio.run(scenario())


def _notify(user) -> None:
    with transaction.atomic():
        notification_create(user_id=user.pk, job_id=None, event="video.completed", payload={"id": "video_x"})


# --- defect 9: the socket's origin, its replay, and how many a user may hold -----------------------------------

HOST = (b"host", b"127.0.0.1:8000")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        ("http://127.0.0.1:8000", True),  # the page's own origin
        ("http://127.0.0.1:9999", False),  # another port on the same host is another site
        ("https://127.0.0.1:8000", False),  # another scheme too
        ("http://evil.example:8000", False),
        ("null", False),  # sandboxed frames and file:// pages
        ("https://app.example.com", True),  # listed in CSRF_TRUSTED_ORIGINS
    ],
)
def test_a_browser_socket_must_come_from_this_origin(user, settings, origin, accepted):
    """Defect 9: the origin check ignored scheme and port."""
    from django.contrib.auth import SESSION_KEY
    from django.test import Client

    from videogen.asgi import application

    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com"]
    browser = Client()
    browser.force_login(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    assert browser.session[SESSION_KEY]

    async def scenario() -> bool:
        headers = [HOST, (b"origin", origin.encode()), (b"cookie", cookie)]
        comm = WebsocketCommunicator(application, "/ws/events", headers=headers)
        connected, _ = await comm.connect()
        await comm.disconnect()
        return connected

    assert asyncio.run(scenario()) is accepted


@pytest.mark.django_db(transaction=True)
def test_a_reconnect_replays_only_the_newest_notifications_after_a_gap(user, api_key, settings):
    """Defect 9: `last_seq=0` (or a resume from 0) replayed the user's whole history every time."""
    from videogen.asgi import application

    settings.VIDEOGEN = {**settings.VIDEOGEN, "NOTIFY_REPLAY_MAX": 2}
    for seq in range(1, 6):
        Notification.objects.create(user=user, seq=seq, event="video.completed")
    headers = [HOST, (b"authorization", f"Bearer {api_key}".encode())]

    async def scenario():
        comm = WebsocketCommunicator(application, "/ws/events?last_seq=0", headers=headers)
        assert (await comm.connect())[0]
        assert await _receive(comm) == {"type": "gap", "skipped_to_seq": 3}
        assert [(await _receive(comm))["seq"] for _ in range(2)] == [4, 5]
        await comm.send_json_to({"type": "resume", "last_seq": 3})  # within the cap: no gap
        assert [(await _receive(comm))["seq"] for _ in range(2)] == [4, 5]
        await comm.disconnect()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_user_holds_a_bounded_number_of_sockets(user, api_key, settings):
    """Defect 9: no cap on sockets per user (counted over every web process, through Redis)."""
    from jobs.api.ratelimit import redis_client
    from notifications import sockets
    from videogen.asgi import application

    settings.VIDEOGEN = {**settings.VIDEOGEN, "WS_MAX_SOCKETS_PER_USER": 2}
    found = redis_client()
    if found is not None:  # user ids repeat across test databases
        found[0].delete(f"{found[1]}:{sockets.KEY.format(user.pk)}")
    headers = [HOST, (b"authorization", f"Bearer {api_key}".encode())]

    async def scenario():
        first, second, third = (WebsocketCommunicator(application, "/ws/events", headers=headers) for _ in range(3))
        assert (await first.connect())[0] and (await second.connect())[0]
        connected, code = await third.connect()
        assert not connected and code == 4429
        # As a server does once the app closed a socket: left running, the refused consumer's channel-layer
        # receive could hang asyncio.run's cleanup (one run in five once imports got slower).
        await third.disconnect()
        await first.disconnect()
        again = WebsocketCommunicator(application, "/ws/events", headers=headers)
        assert (await again.connect())[0]  # a closed socket frees its place
        await second.disconnect()
        await again.disconnect()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_retried_job_shows_queued_and_in_progress_again_and_ends_once(make_job, user):
    """Defect 5: the second in_progress of a retried job was dropped by the (job, event) uniqueness, so its
    owner saw it go back to queued and then nothing while it ran again."""
    job = make_job("dispatched")
    assert services.job_claim(job_id=job.pk, runner="r") is not None  # attempt 1
    assert services.job_fail_attempt(job_id=job.pk, attempt=1, error_code="e", message="m", retryable=True)
    Job.objects.filter(pk=job.pk).update(not_before=services.db_now_plus(-1))  # its backoff has passed
    services.runner_heartbeat(name="r", slots=1, model_names=["wan-tiny"])
    assert services.dispatch_once() == 1
    assert services.job_claim(job_id=job.pk, runner="r") is not None  # attempt 2
    services.job_cancel(job_id=job.pk, actor="t")
    events = list(Notification.objects.filter(job=job).order_by("seq").values_list("event", "attempt"))
    assert events == [
        ("video.in_progress", 1),
        ("video.queued", 1),
        ("video.in_progress", 2),
        ("video.cancelled", 2),
    ]
    with transaction.atomic():  # a terminal event stays once per job, whatever the attempt
        again = notification_create(user_id=user.pk, job_id=job.pk, event="video.cancelled", payload={}, attempt=3)
    assert again is None


def test_mark_read_counts_only_outcomes_and_never_goes_back(api, user, make_job):
    from django.db import transaction

    from notifications.services import notification_create

    with transaction.atomic():
        for event in ("video.in_progress", "video.completed", "video.in_progress", "video.failed"):
            notification_create(user_id=user.pk, job_id=None, event=event, payload={"id": "video_x"})
    page = api.get("/v1/notifications").json()
    assert (page["read_seq"], page["unread_count"]) == (0, 2)  # the two outcomes, not each step
    resp = api.post("/v1/notifications/read", {"up_to_seq": 2}, format="json").json()
    assert (resp["read_seq"], resp["unread_count"]) == (2, 1)
    assert api.post("/v1/notifications/read", {"up_to_seq": 1}, format="json").json()["read_seq"] == 2  # no going back
    assert api.post("/v1/notifications/read", {"up_to_seq": 99}, format="json").json()["read_seq"] == 4  # capped
    for bad in ({"up_to_seq": -1}, {"up_to_seq": "3"}, {"up_to_seq": True}, {}):
        resp = api.post("/v1/notifications/read", bad, format="json")
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "up_to_seq"


def test_the_channel_layers_redis_pool_outlasts_its_blocking_receive_and_a_wave_of_sockets(settings):
    """redis-py 8 times socket reads out after 5 s, the very time channels-redis blocks in BZPOPMIN: a busy web
    process then lost every socket's consumer ("Timeout reading"). And redis-py's default pool of 100 refused a
    wave of a thousand sockets joining or leaving their groups. Seen with `make bench-notify`."""
    from channels_redis.core import RedisChannelLayer

    (host,) = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    assert host["socket_timeout"] > 2 * RedisChannelLayer.brpop_timeout
    assert host["max_connections"] >= 1000
