"""Faults the platform must ride out, and the defects an outside review found (issue 13), one test each."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from gpu_runner.tasks import LeaseKeeper

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def _terminate(pid: int) -> None:
    """pg_terminate_backend from a connection of its own, then wait until the server has closed it."""
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 5
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the backend outlived its termination"
            time.sleep(0.05)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates a Postgres backend")
@pytest.mark.django_db(transaction=True)
def test_the_lease_heartbeat_recovers_from_a_dropped_connection(make_job):
    """Defect 1: after one dropped connection (a restart, a failover) every later heartbeat failed, so every
    running job was reaped and run again elsewhere while its runner kept going."""
    job = make_job("running", attempt=1, runner_id="r1")
    keeper = LeaseKeeper(job.pk, attempt=1)
    beats: list[bool] = []

    def heartbeat_thread() -> None:  # as LeaseKeeper._run: the thread's own connection
        try:
            keeper.progress = 10
            beats.append(keeper.beat())
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            _terminate(pid)
            keeper.progress = 20
            beats.append(keeper.beat())  # fails (logged), the lease is not given up for it
            keeper.progress = 30
            beats.append(keeper.beat())
        finally:
            connection.close()

    thread = threading.Thread(target=heartbeat_thread)
    thread.start()
    thread.join()
    assert beats == [True, True, True]
    job.refresh_from_db()
    assert job.progress == 30  # the beat after the failure renewed the lease again


# --- defect 10: production defaults ---------------------------------------------------------------------------


def _settings_in_a_process(**env: str) -> subprocess.CompletedProcess:
    """Load the settings as a fresh process would, with this environment on top of the test run's."""
    code = (
        "import django, json; from django.conf import settings; django.setup(); "
        "print(json.dumps({k: getattr(settings, k, None) for k in ('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
        "'SECURE_HSTS_SECONDS', 'SECURE_SSL_REDIRECT', 'SECURE_PROXY_SSL_HEADER')}))"
    )
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "videogen.settings", **env}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("key", ["dev-insecure-change-me", "short"])
def test_the_production_profile_refuses_a_development_or_short_secret_key(key):
    """Defect 10: django-q2 signs its pickled task payloads with SECRET_KEY."""
    done = _settings_in_a_process(DATABASE_URL="postgres://postgres@127.0.0.1:5432/videogen", SECRET_KEY=key)
    assert done.returncode != 0 and "SECRET_KEY must be set" in done.stderr, done.stderr[-500:]


def test_the_embedded_profile_runs_with_the_development_key():
    done = _settings_in_a_process(DATABASE_URL="", SECRET_KEY="dev-insecure-change-me")
    assert done.returncode == 0, done.stderr[-500:]


def test_https_turns_on_secure_cookies_hsts_and_the_redirect():
    plain = json.loads(_settings_in_a_process().stdout)
    assert plain == {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    tls = json.loads(_settings_in_a_process(HTTPS="true", TRUST_X_FORWARDED_PROTO="true").stdout)
    assert tls["SESSION_COOKIE_SECURE"] and tls["CSRF_COOKIE_SECURE"] and tls["SECURE_SSL_REDIRECT"]
    assert tls["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert tls["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"HTTPS": "ture"}, "HTTPS must be one of 1/true/yes/on or 0/false/no/off, not 'ture'"),
        ({"WEB_WORKERS": "four"}, "WEB_WORKERS must be an integer, not 'four'"),
        ({"JOB_LEASE_SECONDS": "30s"}, "JOB_LEASE_SECONDS must be a number, not '30s'"),
        ({"WEBHOOK_RETRY_SCHEDULE": "5,30,soon"}, "WEBHOOK_RETRY_SCHEDULE must be numbers separated by commas"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of json, plain, not 'xml'"),
        ({"Q_CLUSTER_NAME": "gpu"}, "Q_CLUSTER_NAME=gpu is named per process by the entry point"),
    ],
)
def test_a_setting_that_does_not_parse_stops_start_up_naming_it(env, error):
    done = _settings_in_a_process(**env)
    assert done.returncode != 0 and error in done.stderr, done.stderr[-500:]


@pytest.mark.parametrize("value", ["FALSE", " off ", "0", "no"])
def test_false_reads_as_false_however_it_is_written(value):
    assert json.loads(_settings_in_a_process(HTTPS=value).stdout)["SECURE_SSL_REDIRECT"] is False


def test_reading_the_settings_writes_nothing(tmp_path):
    """No folder made, no environment variable written: that is the entry points' work (videogen.boot)."""
    var = tmp_path / "var"
    code = (
        "import json, os; before = dict(os.environ); import videogen.settings; "
        "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    for database_url in ("", env["DATABASE_URL"]):
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "VIDEOGEN_VAR_DIR": str(var), "DATABASE_URL": database_url},
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr[-500:]
        assert json.loads(done.stdout) == [] and not var.exists()


def test_weak_passwords_are_refused(user):
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    for weak in ("123", "password", "12345678901", user.username):
        with pytest.raises(ValidationError):
            validate_password(weak, user)
    validate_password("a-long-unusual-passphrase-7", user)


# --- defect 14: a create retried without an Idempotency-Key ---------------------------------------------------


@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")  # the SDK's own notice on videos.create
def test_an_sdk_retry_of_a_create_whose_answer_was_lost_makes_one_video(wsgi_app, user, monkeypatch):
    """Defect 14: the SDK retries a failed create (twice by default) without an Idempotency-Key. Here the
    first try reaches the server and creates the video, and its answer is lost on the way back."""
    import httpx2
    import openai

    from jobs.accounts import api_key_create
    from jobs.models import Job

    app, hits = wsgi_app
    monkeypatch.setattr(openai._base_client.time, "sleep", lambda seconds: None)  # the SDK's back-off
    wsgi = httpx2.WSGITransport(app=app)
    lost: list[str] = []

    class LosesTheFirstAnswer(httpx2.BaseTransport):
        def handle_request(self, request):
            response = wsgi.handle_request(request)  # the server did its work
            if not lost and request.method == "POST":
                lost.append(request.headers.get("x-stainless-retry-count", ""))
                raise httpx2.ReadTimeout("the answer was lost", request=request)
            return response

    client = openai.OpenAI(
        api_key=api_key_create(user_id=user.pk),
        base_url="http://localhost/v1",
        max_retries=2,
        http_client=httpx2.Client(transport=LosesTheFirstAnswer()),
    )
    video = client.videos.create(prompt="a lighthouse at dawn", size="128x128")
    assert lost == ["0"] and hits.count("/v1/videos") == 2  # two tries reached the server
    assert Job.objects.filter(user=user).count() == 1 and video.id == Job.objects.get(user=user).public_id

    # A new create (not a retry) of the same body is a new video, as the user asked for another.
    again = client.videos.create(prompt="a lighthouse at dawn", size="128x128")
    assert again.id != video.id and Job.objects.filter(user=user).count() == 2


def test_retries_of_different_requests_or_after_the_window_create(api, user, settings):
    from jobs.models import Job

    body = {"prompt": "a calm lake"}
    first = api.post("/v1/videos", body, format="json")
    retry = api.post("/v1/videos", body, format="json", HTTP_X_STAINLESS_RETRY_COUNT="1")
    assert first.status_code == 201 and retry.status_code == 200 and retry.json()["id"] == first.json()["id"]
    other = api.post("/v1/videos", {"prompt": "a stormy lake"}, format="json", HTTP_X_STAINLESS_RETRY_COUNT="1")
    assert other.status_code == 201
    Job.objects.update(created_at=timezone.now() - dt.timedelta(seconds=901))
    late = api.post("/v1/videos", body, format="json", HTTP_X_STAINLESS_RETRY_COUNT="2")
    assert late.status_code == 201 and Job.objects.count() == 3
    settings.VIDEOGEN = {**settings.VIDEOGEN, "CREATE_RETRY_WINDOW_SECONDS": 0}
    off = api.post("/v1/videos", {"prompt": "a stormy lake"}, format="json", HTTP_X_STAINLESS_RETRY_COUNT="1")
    assert off.status_code == 201 and Job.objects.count() == 4


# --- defect 12: broker visibility on one clock -------------------------------------------------------------


def test_a_message_from_a_host_whose_clock_runs_ahead_is_visible_at_once(monkeypatch):
    """Defect 12: the ORM broker stamped visibility with the sender's clock and compared it with the
    receiver's; a sender a minute ahead hid every message for that minute. Now both are the database's."""
    from django.utils import timezone as tz
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    real_now = tz.now
    ahead = lambda: real_now() + dt.timedelta(minutes=10)  # noqa: E731 - the sender host's clock
    broker = get_broker("gpu.skewed")
    monkeypatch.setattr(tz, "now", ahead)
    first = broker.enqueue("first")
    second = broker.enqueue("second")
    monkeypatch.setattr(tz, "now", real_now)  # the receiver's clock is right
    assert broker.dequeue() == [(first, "first")]  # at once, and in the order sent
    assert broker.dequeue() == [(second, "second")]
    assert broker.queue_size() == 0 and broker.lock_size() == 2  # taken: hidden for RETRY
    from django_q.models import OrmQ

    hidden_until = OrmQ.objects.get(pk=first).lock
    assert dt.timedelta(seconds=Conf.RETRY - 60) < hidden_until - real_now() <= dt.timedelta(seconds=Conf.RETRY + 1)


# --- defect 3: progress, not liveness -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_generation_that_stops_progressing_gives_its_attempt_back_and_ends_its_worker(make_job, settings):
    """Defect 3: a hung generation kept its lease until GPU_TASK_TIMEOUT (an hour): the heartbeat proved the
    thread alive, not generation moving."""
    from gpu_runner.tasks import JobLost
    from jobs.models import Job

    settings.VIDEOGEN = {**settings.VIDEOGEN, "GENERATION_STALL_SECONDS": 1.0}
    job = make_job("running", attempt=1, runner_id="r1")
    ended: list[bool] = []
    keeper = LeaseKeeper(job.pk, attempt=1, on_stall=lambda: ended.append(True))
    keeper.on_step(1, 10)
    assert keeper.beat() is True  # moving: renewed
    time.sleep(0.6)
    keeper.on_step(2, 10)
    time.sleep(0.6)
    assert keeper.beat() is True and not ended  # running 1.2 s, but a step 0.6 s ago
    time.sleep(1.1)  # then nothing
    assert keeper.beat() is False
    assert ended == [True] and keeper.lost.is_set()
    job = Job.objects.get(pk=job.pk)
    assert (job.state, job.error_code) == ("queued", "generation_stalled")  # retried elsewhere, attempt counted
    assert job.events.filter(reason__contains="no progress for").exists()
    with pytest.raises(JobLost):  # should it ever wake up, it stops at its next step
        keeper.on_step(3, 10)
