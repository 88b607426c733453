"""Remote generation backends (jobs.backends, gpu_runner.remote, the webhook endpoint) against a SIMULATED
conformance server per dialect (harness/remote_sim.py) on loopback. The two-installation test with no stand-ins
is tests/e2e/test_remote_e2e.py."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from standardwebhooks import Webhook

from gpu_runner.remote import RemoteWorker
from harness.remote_sim import QUIRKS, RemoteSim
from jobs import backends, services
from jobs.models import CreditEntry, Job, JobEvent, RemoteJob, State
from jobs.services import remote as remote_services
from videogen.video_io import decode_mp4

P = RemoteJob.Phase
SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLXJlbW90ZS1wb29scw=="


def pool_toml(name: str, base_url: str, dialect: str, **extra: object) -> str:
    lines = [f"[pools.{name}]", f'base_url = "{base_url}"', f'dialect = "{dialect}"', 'api_key = "sk-remote"']
    lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in extra.items()]
    lines += [f"[pools.{name}.models.wan-tiny]", 'remote_model = "remote-wan"']
    return "\n".join(lines) + "\n"


def make_pool(sim: RemoteSim, **extra: object) -> backends.Pool:
    extra.setdefault("poll_seconds", 0.05)
    extra.setdefault("concurrency", 2)
    return backends.parse(pool_toml("sim", sim.base_url, sim.dialect, **extra))["sim"]


def drive(worker: RemoteWorker, until, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        services.dispatch_once()
        worker._beat_once()
        worker.tick()
        time.sleep(0.02)


def state(job: Job) -> str:
    job.refresh_from_db()
    return job.state


@pytest.fixture
def queued(make_job):
    def make(**fields) -> Job:
        return make_job("queued", **fields)

    return make


# --- each dialect, end to end through the worker -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("dialect", sorted(QUIRKS))
def test_each_dialect_runs_a_job_to_a_stored_clip(dialect, queued):
    with RemoteSim(dialect) as sim:
        worker = RemoteWorker(make_pool(sim))
        job = queued()
        drive(worker, lambda: state(job) == State.REVIEWING)
        job.refresh_from_db()
        assert job.attempt == 1 and job.runner_id == worker.name
        with default_storage.open(job.video_key, "rb") as fh:
            # Ours now, in our storage: the server's frames, in a file that now carries our content credentials.
            assert np.array_equal(decode_mp4(fh.read()), decode_mp4(sim.clip))
        assert default_storage.exists(job.thumbnail_key)
        [create] = sim.creates()
        # The dialect's create shape, our model name mapped to the server's, and our key sent.
        multipart_only = QUIRKS[dialect][0] and not QUIRKS[dialect][1]
        if multipart_only or dialect == "openai-videos":
            assert create.content_type.startswith("multipart/form-data")
        if dialect in ("aquiles", "sglang", "tensorrt-llm"):
            assert create.content_type.startswith("application/json")
        assert create.fields["model"] == "remote-wan" and create.fields["prompt"] == "a calm lake"
        assert create.fields["size"] == "128x128" and create.fields["seconds"] == "4"
        assert create.headers["idempotency-key"] == f"videogen-{job.public_id}-1"
        assert create.headers["authorization"] == "Bearer sk-remote"
        rj = RemoteJob.objects.get(job=job)
        assert rj.phase == P.DONE and rj.remote_id and rj.polls >= 1


@pytest.mark.django_db(transaction=True)
def test_progress_is_the_servers_when_real_and_an_estimate_otherwise(queued, settings, tmp_path):
    from jobs.presenters import video_object

    with (
        RemoteSim("openai-videos", queue_seconds=0.1, run_seconds=3) as real,
        RemoteSim("aquiles", run_seconds=3) as fake,
    ):
        for sim in (real, fake):
            path = tmp_path / f"{sim.dialect}.toml"
            path.write_text(pool_toml("sim", sim.base_url, sim.dialect, poll_seconds=0.05))
            settings.REMOTE_POOLS_FILE = str(path)  # the video object names the pool's dialect
            worker = RemoteWorker(make_pool(sim))
            job = queued(cost=2.0)

            def running(job=job) -> bool:
                job.refresh_from_db()
                return job.progress > 0

            drive(worker, running)
            rj = RemoteJob.objects.get(job=job)
            assert video_object(job)["progress_estimated"] is (sim is fake)
            if sim is real:
                assert rj.remote_progress is not None and 0 < job.progress <= rj.remote_progress * 90 // 100
            else:
                assert rj.remote_progress is None  # aquiles' simulated 42 is not taken as progress
                assert 0 < job.progress <= 95  # elapsed over our expected seconds (the job's cost)


# --- the server forgets, fails, stalls --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_restarted_server_that_forgot_the_job_requeues_it_at_once_counted(queued):
    with RemoteSim("vllm-omni", run_seconds=30) as sim:
        worker = RemoteWorker(make_pool(sim))
        job = queued()
        drive(worker, lambda: RemoteJob.objects.filter(job=job, phase=P.ACTIVE).exists())
        sim.restart()
        forgotten = time.monotonic()
        drive(worker, lambda: state(job) == State.QUEUED)
        took = time.monotonic() - forgotten
        job.refresh_from_db()
        assert job.error_code == "backend_lost" and job.attempt == 1 and job.not_before is None
        assert took < 2.0  # within a poll or two (poll_seconds 0.05)
        assert RemoteJob.objects.get(job=job).phase == P.LOST
        # The next attempt runs (a new remote job) and completes.
        sim.run_seconds = 0.2
        drive(worker, lambda: state(job) == State.REVIEWING)
        job.refresh_from_db()
        assert job.attempt == 2 and len(sim.creates()) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("dialect", ["tensorrt-llm", "openai-videos"])
def test_a_remote_failure_string_or_object_retries_then_fails_for_good(dialect, queued, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "RETRY_BACKOFF_SECONDS": 0.0, "MAX_ATTEMPTS": 2}
    with RemoteSim(dialect, queue_seconds=0, run_seconds=0.05) as sim:
        worker = RemoteWorker(make_pool(sim))
        job = queued(prompt="a lake [remote-fail]")
        drive(worker, lambda: state(job) == State.FAILED)
        job.refresh_from_db()
        assert job.attempt == 2 and job.error_code == "backend_failed"
        assert "backend" in job.error_message and "CUDA" not in job.error_message  # the server's words stay ours
        reasons = " ".join(JobEvent.objects.filter(job=job).values_list("reason", flat=True))
        assert ("CUDA out of memory" if dialect == "tensorrt-llm" else "engine_error: boom") in reasons
        assert len(sim.creates()) == 2


@pytest.mark.django_db(transaction=True)
def test_unknown_statuses_and_odd_answers_never_crash_the_worker(queued):
    with RemoteSim("openai-videos", run_seconds=30) as sim:
        worker = RemoteWorker(make_pool(sim))
        job = queued()
        drive(worker, lambda: RemoteJob.objects.filter(job=job, phase=P.ACTIVE).exists())
        sim.running_word = "warming_up"  # a status the dialect does not define
        # Polled until the server says it (not a fixed count of ticks: the sim queues for queue_seconds first).
        drive(worker, lambda: RemoteJob.objects.get(job=job).remote_status == "warming_up")
        for _ in range(3):  # and polled again: the odd status stays harmless
            worker.tick()
            time.sleep(0.06)
        rj = RemoteJob.objects.get(job=job)
        assert rj.remote_status == "warming_up" and rj.phase == P.ACTIVE and state(job) == State.RUNNING
    for body in (None, [], "completed", {"status": 7}, {"status": "completed", "progress": "x"}, {"error": ["?"]}):
        status = backends.read_status(backends.DIALECTS["tensorrt-llm"], body)
        assert status.phase in (backends.UNKNOWN, backends.COMPLETED)
    assert backends.read_status(backends.DIALECTS["tensorrt-llm"], {"status": "failed", "error": "OOM"}).error == "OOM"


@pytest.mark.django_db(transaction=True)
def test_a_remote_job_stuck_past_its_bound_is_cancelled_there_and_retried_here(queued):
    with RemoteSim("openai-videos") as sim:
        worker = RemoteWorker(make_pool(sim, stuck_min_seconds=0.5, stuck_factor=0.0))
        job = queued(prompt="a lake [remote-stuck]")
        drive(worker, lambda: state(job) == State.QUEUED and job.attempt == 1)
        job.refresh_from_db()
        assert job.error_code == "backend_stuck"
        assert [r.method for r in sim.received if r.method == "DELETE"] == ["DELETE"]
        assert RemoteJob.objects.get(job=job).phase == P.LOST


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_server_is_polled_on_until_it_answers(queued):
    with RemoteSim("openai-videos", run_seconds=0.3) as sim:
        worker = RemoteWorker(make_pool(sim))
        job = queued()
        drive(worker, lambda: RemoteJob.objects.filter(job=job, phase=P.ACTIVE).exists())
        port = sim.server.server_address[1]
        worker.client.http.base_url = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/v1/"
        for _ in range(3):
            worker._beat_once()
            worker.tick()
            time.sleep(0.06)
        assert RemoteJob.objects.get(job=job).remote_status == "unreachable" and state(job) == State.RUNNING
        worker.client.http.base_url = sim.base_url + "/"
        drive(worker, lambda: state(job) == State.REVIEWING)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("dialect", ["vllm-omni", "openai-videos"])
def test_a_server_down_at_create_costs_no_attempt_and_gets_the_create_once_it_is_back(dialect, queued):
    with RemoteSim(dialect) as sim:
        worker = RemoteWorker(make_pool(sim))
        port = sim.server.server_address[1]
        worker.client.http.base_url = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/v1/"  # refused
        job = queued()
        drive(worker, lambda: RemoteJob.objects.filter(job=job, remote_status="create-not-sent").exists())
        for _ in range(5):  # it stays down a while: the job waits, holding its attempt, and is never failed
            worker._beat_once()
            worker.tick()
            time.sleep(0.06)
        job.refresh_from_db()
        assert (job.state, job.attempt) == (State.RUNNING, 1)
        worker.client.http.base_url = sim.base_url + "/"
        drive(worker, lambda: state(job) == State.REVIEWING)
        job.refresh_from_db()
        assert job.attempt == 1 and len(sim.creates()) == 1


# --- cancel, crash windows, adoption -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("dialect", ["vllm-omni", "sglang", "fastvideo"])
def test_cancel_reaches_the_remote_job(dialect, queued, user):
    with RemoteSim(dialect, queue_seconds=30) as sim:  # still queued there: every dialect can cancel it
        worker = RemoteWorker(make_pool(sim))
        job = queued()
        drive(worker, lambda: RemoteJob.objects.filter(job=job, phase=P.ACTIVE).exists())
        services.job_cancel(job_id=job.pk, actor=f"user:{user.pk}")
        rj = RemoteJob.objects.get(job=job)
        drive(worker, lambda: RemoteJob.objects.get(pk=rj.pk).phase == P.ABANDONED)
        assert [r.path for r in sim.received if r.method == "DELETE"] == [f"/v1/videos/{rj.remote_id}"]
        assert state(job) == State.CANCELLED
        assert CreditEntry.objects.filter(job=job, kind="charge").count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_crash_between_create_and_record_is_reconciled_by_the_same_key(queued):
    """openai-videos (and videogen) honour Idempotency-Key: the same create again gives the same remote job."""
    with RemoteSim("openai-videos") as sim:
        pool = make_pool(sim)
        worker = RemoteWorker(pool)
        job = queued()
        worker._beat_once()
        services.dispatch_once()
        claimed = services.job_claim(job_id=job.pk, runner=worker.name)
        key = f"videogen-{job.public_id}-{claimed.attempt}"
        rj = remote_services.remote_begin(job_id=job.pk, attempt=claimed.attempt, pool="sim", key=key)
        worker.client.create(fields={"model": "remote-wan", "prompt": job.prompt}, reference=None, key=key)
        # ...and the worker died here, before recording the id. A new worker starts:
        fresh = RemoteWorker(pool)
        drive(fresh, lambda: state(job) == State.REVIEWING)
        assert len(sim.jobs) == 1  # one generation, not two
        assert RemoteJob.objects.get(pk=rj.pk).phase == P.DONE


@pytest.mark.django_db(transaction=True)
def test_without_idempotency_a_cut_off_create_is_marked_unknown_and_retried(queued, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "RETRY_BACKOFF_SECONDS": 0.0}
    with RemoteSim("vllm-omni") as sim:
        pool = make_pool(sim)
        worker = RemoteWorker(pool)
        job = queued()
        worker._beat_once()
        services.dispatch_once()
        claimed = services.job_claim(job_id=job.pk, runner=worker.name)
        rj = remote_services.remote_begin(
            job_id=job.pk, attempt=claimed.attempt, pool="sim", key=f"videogen-{job.public_id}-1"
        )
        drive(RemoteWorker(pool), lambda: state(job) == State.REVIEWING)
        rj.refresh_from_db()
        assert rj.phase == P.UNKNOWN and "no idempotency" in rj.detail
        job.refresh_from_db()
        assert job.attempt == 2


@pytest.mark.django_db(transaction=True)
def test_a_new_attempt_adopts_the_remote_job_a_lost_lease_left_running(queued):
    with RemoteSim("openai-videos", run_seconds=1.0) as sim:
        worker = RemoteWorker(make_pool(sim))
        job = queued()
        drive(worker, lambda: RemoteJob.objects.filter(job=job, phase=P.ACTIVE).exists())
        # The worker's lease runs out (it hung): the reaper requeues the job, the pool gets it again.
        Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
        assert services.reap_expired() == 1
        drive(worker, lambda: state(job) == State.REVIEWING)
        job.refresh_from_db()
        assert job.attempt == 2 and len(sim.creates()) == 1  # the same remote generation, adopted
        assert RemoteJob.objects.get(job=job).attempt == 2


@pytest.mark.django_db(transaction=True)
def test_a_restarted_worker_takes_over_its_pools_running_jobs(queued):
    with RemoteSim("openai-videos", run_seconds=0.8) as sim:
        pool = make_pool(sim)
        first = RemoteWorker(pool)
        job = queued()
        drive(first, lambda: RemoteJob.objects.filter(job=job, phase=P.ACTIVE).exists())
        second = RemoteWorker(pool)
        second.name += "-restarted"
        assert remote_services.remote_takeover(pool="sim", runner=second.name) == 1
        drive(second, lambda: state(job) == State.REVIEWING)
        job.refresh_from_db()
        assert job.attempt == 1 and len(sim.creates()) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("s3_storage")
def test_two_workers_holding_one_attempt_never_delete_the_clip_the_other_completed_with(queued):
    """A worker that stopped heartbeating (hung, not dead) while another took its pool over: both hold the same
    attempt of the job, and both may collect the finished clip into the bucket, where a key is overwritten in
    place. The one fenced out must remove only what it stored itself."""
    with RemoteSim("openai-videos", run_seconds=0.3) as sim:
        pool = make_pool(sim)
        first = RemoteWorker(pool)
        job = queued()
        drive(first, lambda: RemoteJob.objects.filter(job=job, phase=P.ACTIVE).exists())
        second = RemoteWorker(pool)
        second.name += "-took-over"
        assert remote_services.remote_takeover(pool="sim", runner=second.name) == 1
        [rj] = RemoteJob.objects.filter(job=job)
        deadline = time.monotonic() + 15
        while backends.read_status(pool.dialect, first.client.status(rj.remote_id)).phase != backends.COMPLETED:
            assert time.monotonic() < deadline, "the remote job did not finish"
            time.sleep(0.05)
        while not (hung := remote_services.remote_due(pool="sim")):  # what the hung worker read before it stalled
            assert time.monotonic() < deadline, "no poll came due"
            time.sleep(0.02)
        drive(second, lambda: state(job) == State.REVIEWING)
        first.poll(hung[0])  # it wakes up, collects the clip too, and is fenced out at completion
        job.refresh_from_db()
        assert job.runner_id == second.name and job.attempt == 1 and len(sim.creates()) == 1
        with default_storage.open(job.video_key, "rb") as fh:
            assert np.array_equal(decode_mp4(fh.read()), decode_mp4(sim.clip))
        assert default_storage.exists(job.thumbnail_key)
        # Nothing of the fenced-out worker is left behind either.
        _dirs, files = default_storage.listdir(f"videos/{job.public_id}")
        assert sorted(f"videos/{job.public_id}/{name}" for name in files) == sorted([job.video_key, job.thumbnail_key])


@pytest.mark.django_db(transaction=True)
def test_a_second_worker_for_a_pool_stands_by_while_the_first_is_live():
    pool = backends.parse(pool_toml("sim", "http://127.0.0.1:9/v1", "openai-videos"))["sim"]
    first, second = RemoteWorker(pool), RemoteWorker(pool)
    second.name += "-standby"
    first._beat_once()
    assert second._other_worker() == first.name  # its run() waits instead of doubling the pool's slots
    assert services.live_slots() == pool.concurrency
    services.runner_withdraw(name=first.name)
    assert second._other_worker() is None


# --- the webhook endpoint ----------------------------------------------------------------------------------------


@pytest.fixture
def webhook_pool(tmp_path, settings):
    path = tmp_path / "pools.toml"
    path.write_text(
        pool_toml("peer", "http://127.0.0.1:9/v1", "openai-videos", webhook_secret=SECRET)
        + pool_toml("plain", "http://127.0.0.1:9/v1", "vllm-omni", webhook_secret="tok-123")
        + pool_toml("quiet", "http://127.0.0.1:9/v1", "openai-videos")
    )
    settings.REMOTE_POOLS_FILE = str(path)
    return path


def _signed(body: bytes, *, event_id: str = "msg_1", at: dt.datetime | None = None, secret: str = SECRET) -> dict:
    at = at or dt.datetime.now(tz=dt.UTC)
    return {
        "HTTP_WEBHOOK_ID": event_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(at.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": Webhook(secret).sign(event_id, at, body.decode()),
    }


@pytest.mark.django_db
def test_a_signed_webhook_moves_the_poll_to_now_once_per_event(webhook_pool, client, make_job):
    job = make_job("running", attempt=1)
    later = timezone.now() + dt.timedelta(hours=1)
    rj = RemoteJob.objects.create(job=job, attempt=1, pool="peer", idempotency_key="k1", remote_id="video_r1",
                                  phase=P.ACTIVE, next_poll_at=later)  # fmt: skip
    body = b'{"id": "evt_1", "object": "event", "type": "video.completed", "data": {"id": "video_r1"}}'
    url = "/internal/backends/peer/webhook"
    answer = client.post(url, body, content_type="application/json", **_signed(body))
    assert answer.status_code == 200 and answer.json()["result"] == "hinted"
    rj.refresh_from_db()
    assert rj.next_poll_at <= timezone.now() and rj.hints == 1
    again = client.post(url, body, content_type="application/json", **_signed(body))
    assert again.json()["result"] == "duplicate"
    rj.refresh_from_db()
    assert rj.hints == 1
    other = b'{"type": "video.completed", "data": {"id": "video_not_ours"}}'
    late = client.post(url, other, content_type="application/json", **_signed(other, event_id="msg_2"))
    assert late.json()["result"] == "unknown"


@pytest.mark.django_db
def test_bad_webhooks_are_refused_in_the_error_format(webhook_pool, client):
    url = "/internal/backends/peer/webhook"
    body = b'{"type": "video.completed", "data": {"id": "video_r1"}}'
    cases = [
        (_signed(body, secret="whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA=="), 401),  # wrong secret
        (_signed(body, at=dt.datetime.now(tz=dt.UTC) - dt.timedelta(minutes=10)), 401),  # a replay, too old
        ({}, 401),  # unsigned
    ]
    for headers, status in cases:
        answer = client.post(url, body, content_type="application/json", **headers)
        assert answer.status_code == status and answer.json()["error"]["code"] == "invalid_signature"
    for raw, code in ((b"not json", "invalid_json"), (b"[1]", "invalid_body"), (b'{"data": {}}', "invalid_body")):
        answer = client.post(url, raw, content_type="application/json", **_signed(raw))
        assert answer.status_code == 400 and answer.json()["error"]["code"] == code
    big = b'{"pad": "' + b"x" * 70_000 + b'"}'
    assert client.post(url, big, content_type="application/json", **_signed(big)).status_code == 413
    assert client.post("/internal/backends/nope/webhook", body, content_type="application/json").status_code == 404
    assert client.post("/internal/backends/quiet/webhook", body, content_type="application/json").status_code == 404
    assert client.get(url).status_code == 405


@pytest.mark.django_db
def test_an_unsigned_dialect_takes_the_secret_as_a_token(webhook_pool, client, make_job):
    job = make_job("running", attempt=1)
    RemoteJob.objects.create(job=job, attempt=1, pool="plain", idempotency_key="k2", remote_id="video_p1",
                             phase=P.ACTIVE)  # fmt: skip
    body = b'{"id": "video_p1", "status": "completed"}'
    url = "/internal/backends/plain/webhook"
    assert client.post(url, body, content_type="application/json").status_code == 401
    assert client.post(url + "?token=wrong", body, content_type="application/json").status_code == 401
    ok = client.post(url + "?token=tok-123", body, content_type="application/json")
    assert ok.status_code == 200 and ok.json()["result"] == "hinted"
    dup = client.post(url + "?token=tok-123", body, content_type="application/json")
    assert dup.json()["result"] == "duplicate"


# --- configuration --------------------------------------------------------------------------------------------


def test_pool_configuration_mistakes_name_the_pool_and_the_key():
    good = pool_toml("a", "http://127.0.0.1:1/v1", "openai-videos", concurrency=3)
    pool = backends.parse(good)["a"]
    assert pool.concurrency == 3 and pool.queue == "remote.a" and pool.remote_model("wan-tiny") == "remote-wan"
    for bad, needle in [
        (good.replace('"openai-videos"', '"bogus"'), "dialect"),
        (good.replace("http://127.0.0.1:1/v1", "ftp://x"), "base_url"),
        (good.replace("concurrency = 3", "concurrency = 0"), "concurrency"),
        ('[pools.b]\nbase_url = "http://x/v1"\n', "models"),
        (good.replace("[pools.a]", '[pools."a b"]').replace("[pools.a.models", '[pools."a b".models'), "name"),
    ]:
        with pytest.raises(backends.PoolConfigError, match=needle):
            backends.parse(bad)


def test_estimated_progress_never_claims_the_end():
    assert backends.estimated_progress(0, 10) == 0
    assert backends.estimated_progress(5, 10) == 50
    assert backends.estimated_progress(1000, 10) == 95
    assert backends.estimated_progress(5, 0) == 0
