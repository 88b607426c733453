"""Operations endpoints and metrics in one process (the several-process scrape is in tests/e2e/test_e2e.py)."""

from __future__ import annotations

import os

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs import services
from jobs.models import QueueSummary, Runner
from videogen import metrics_state


def scrape(client, **extra) -> dict[tuple[str, tuple], float]:
    answer = client.get("/metrics", **extra)
    assert answer.status_code == 200, answer.content
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.content.decode())
        for s in family.samples
    }


def test_healthz_answers_without_touching_anything(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_readyz_checks_the_database_the_broker_and_redis(client, settings):
    ready = client.get("/readyz")
    assert ready.status_code == 200 and set(ready.json()["checks"]) == {"database", "broker", "redis"}
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: refused at once, on loopback
    down = client.get("/readyz")
    assert down.status_code == 503 and down.json()["checks"]["redis"].startswith("failed")
    assert down.json()["checks"]["database"].startswith("ok")


@pytest.mark.django_db
def test_metrics_are_served_to_loopback_or_to_the_token_only(client, settings):
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403  # a documentation address
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    ok = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-token")
    assert ok.status_code == 200 and b"videogen_runner_slots" in ok.content


@pytest.mark.django_db(transaction=True)
def test_a_committed_transition_is_counted_once_and_a_rolled_back_one_not(client, make_job):
    from django.db import transaction

    key = ("videogen_transitions_total", (("from_state", "pending"), ("to_state", "cancelled")))
    before = scrape(client).get(key, 0.0)
    services.job_cancel(job_id=make_job("pending").pk, actor="test")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.job_cancel(job_id=make_job("pending").pk, actor="test")
        raise RuntimeError("rolled back")
    assert scrape(client)[key] == before + 1


def test_the_autoscaling_signal_drains_each_tier_within_its_bound(settings):
    bounds = {t: settings.VIDEOGEN_TIERS[t]["WAIT_BOUND_SECONDS"] for t in ("free", "paid")}
    assert metrics_state.needed_slots(busy=0, work_by_tier={}) == 0
    assert metrics_state.needed_slots(busy=2, work_by_tier={"free": 2 * bounds["free"]}) == 4
    assert metrics_state.needed_slots(busy=0, work_by_tier={"free": 1.0, "paid": 1.0}) == 1
    # A tier with no bound (internal) still drains within DEFAULT_WAIT_BOUND_SECONDS.
    assert metrics_state.needed_slots(busy=0, work_by_tier={"internal": 3 * 3600.0}) == 3


@pytest.mark.django_db
def test_pool_gauges_come_from_live_runners_and_the_published_queue(settings):
    now = timezone.now()
    for i in range(2):
        Runner.objects.create(name=f"r{i}", queue=f"gpu.r{i}", pool="a100", slots=1, model_names=["wan-tiny"],
                              started_at=now, last_seen_at=now)  # fmt: skip
    Runner.objects.create(name="gone", queue="gpu.gone", pool="a100", slots=1, model_names=["wan-tiny"],
                          started_at=now, last_seen_at=now - timezone.timedelta(hours=1))  # fmt: skip
    bound = settings.VIDEOGEN_TIERS["paid"]["WAIT_BOUND_SECONDS"]
    QueueSummary.objects.create(
        model="wan-tiny", published_at=now, data={"tiers": {"paid": {"count": 40, "work": 5 * bound}}}
    )
    [state] = metrics_state.pools()
    assert (state.pool, state.runners, state.slots, state.busy) == ("a100", 2, 2, 0)
    assert state.needed_runners == 5  # five runners' worth of GPU-seconds must drain within paid's bound


@pytest.mark.django_db
def test_check_liveness_exits_non_zero_when_the_role_is_stale():
    import datetime as dt
    import socket

    from django.core.management import call_command

    from jobs import liveness
    from jobs.models import RoleHeartbeat

    for role in liveness.ROLES:
        with pytest.raises(SystemExit) as stale:
            call_command("check_liveness", role)
        assert stale.value.code == 1
    liveness.beat("dispatcher")
    call_command("check_liveness", "dispatcher")  # returns: exit status 0
    RoleHeartbeat.objects.update(last_seen_at=timezone.now() - dt.timedelta(seconds=60))
    with pytest.raises(SystemExit):
        call_command("check_liveness", "dispatcher", "--max-age", "30")
    call_command("check_liveness", "dispatcher", "--max-age", "120")
    now = timezone.now()
    Runner.objects.create(name="elsewhere:1", queue="gpu.elsewhere.1", host="elsewhere", started_at=now,
                          last_seen_at=now)  # fmt: skip
    with pytest.raises(SystemExit):
        call_command("check_liveness", "gpu")  # live, but not on this host
    call_command("check_liveness", "gpu", "--any-host")
    Runner.objects.create(name=f"{socket.gethostname()}:2", queue="remote.peer", host=socket.gethostname(),
                          started_at=now, last_seen_at=now)  # fmt: skip
    call_command("check_liveness", "remote")


@pytest.mark.django_db
def test_a_request_id_is_answered_and_follows_the_job_into_its_events(api):
    from jobs.models import Job, JobEvent

    made = api.post("/v1/videos", {"prompt": "a calm lake"}, format="json", HTTP_X_REQUEST_ID="req-abc.123")
    assert made.status_code == 201 and made["X-Request-ID"] == "req-abc.123"
    job = Job.objects.get(public_id=made.json()["id"])
    assert job.request_id == "req-abc.123"
    services.job_moderate_input(job_id=job.pk)  # as the cpu worker runs it, outside any request
    assert set(JobEvent.objects.filter(job=job).values_list("request_id", flat=True)) == {"req-abc.123"}
    # A later request that acts on the job stamps its own id on what it causes.
    cancelled = api.post(f"/v1/videos/{job.public_id}/cancel", HTTP_X_REQUEST_ID="req-cancel")
    assert cancelled.status_code == 200
    assert JobEvent.objects.filter(job=job).last().request_id == "req-cancel"
    for bad in ("has spaces", "x" * 129, "semi;colon", ""):
        answer = api.get(f"/v1/videos/{job.public_id}", HTTP_X_REQUEST_ID=bad)
        assert answer["X-Request-ID"] != bad and len(answer["X-Request-ID"]) == 32  # replaced by our own


def test_the_asgi_layer_settles_the_id_for_every_route_and_binds_it():
    import asyncio

    from videogen import logcontext
    from videogen.requestid import RequestIdASGI

    seen = {}

    async def app(scope, receive, send):
        seen["header"] = dict(scope["headers"])[b"x-request-id"]
        seen["bound"] = logcontext.request_id()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"app's own")]})
        await send({"type": "http.response.body", "body": b""})

    async def run(headers):
        sent = []

        async def send(message):
            sent.append(message)

        await RequestIdASGI(app)({"type": "http", "headers": headers}, None, send)
        return dict(sent[0]["headers"])[b"x-request-id"]

    assert asyncio.run(run([(b"x-request-id", b"from-proxy-1")])) == b"from-proxy-1"
    assert seen == {"header": b"from-proxy-1", "bound": "from-proxy-1"}
    made = asyncio.run(run([]))
    assert len(made) == 32 and seen["header"] == made and logcontext.request_id() == ""


def test_log_lines_are_json_with_the_bound_request_and_job(settings):
    import json
    import logging

    from pythonjsonlogger.json import JsonFormatter

    from videogen import logcontext

    spec = dict(settings.LOGGING["formatters"]["json"])
    spec.pop("()")
    formatter = JsonFormatter(spec.pop("format"), **spec)
    record = logging.LogRecord("jobs.test", logging.INFO, __file__, 1, "claimed %s", ("it",), None)
    with logcontext.bind(request_id="req-9", job_id=42, attempt=2, runner="host:7", user=3, tier="paid"):
        logcontext.ContextFilter().filter(record)
    line = json.loads(formatter.format(record))
    assert line["message"] == "claimed it" and line["level"] == "INFO" and line["logger"] == "jobs.test"
    assert {k: line[k] for k in logcontext.FIELDS} == {
        "request_id": "req-9", "job_id": 42, "attempt": 2, "runner": "host:7", "user": 3, "tier": "paid",
    }  # fmt: skip


def test_plain_log_lines_are_short_and_name_only_the_bound_fields():
    import logging

    from videogen import logcontext

    formatter = logcontext.ReadableFormatter()
    record = logging.LogRecord("jobs.test", logging.INFO, __file__, 1, "claimed %s", ("it",), None)
    with logcontext.bind(job_id=42, attempt=2):
        logcontext.ContextFilter().filter(record)
    line = formatter.format(record)
    assert line.endswith(" INFO    jobs.test: claimed it  [job_id=42 attempt=2]") and "None" not in line
    unbound = logging.LogRecord("axes.apps", logging.INFO, __file__, 1, "ready", (), None)
    logcontext.ContextFilter().filter(unbound)
    assert formatter.format(unbound).endswith(" INFO    axes.apps: ready")


@pytest.mark.parametrize(("database_url", "fmt"), [("", "plain"), ("postgres://postgres@127.0.0.1:5432/x", "json")])
def test_the_embedded_profile_logs_readable_lines_and_production_json(database_url, fmt):
    import subprocess
    import sys

    code = "from django.conf import settings; print(settings.LOGGING['handlers']['console']['formatter'])"
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "videogen.settings"}
    env.pop("LOG_FORMAT", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == fmt


@pytest.mark.django_db
def test_every_submission_answer_is_counted_a_refused_key_too(client, api):
    def count(outcome: str, tier: str) -> float:
        key = ("videogen_submissions_total", (("outcome", outcome), ("tier", tier)))
        return scrape(client).get(key, 0.0)

    before = count("rejected", "unknown"), count("rejected", "free"), count("accepted", "free")
    refused = client.post("/v1/videos", {"prompt": "x"}, content_type="application/json",
                          HTTP_AUTHORIZATION="Bearer vg-not-a-key")  # fmt: skip
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert api.post("/v1/videos", {"prompt": ""}, format="json").status_code == 400
    assert api.post("/v1/videos", {"prompt": "a calm lake"}, format="json").status_code == 201
    assert (count("rejected", "unknown"), count("rejected", "free"), count("accepted", "free")) == (
        before[0] + 1, before[1] + 1, before[2] + 1,
    )  # fmt: skip
