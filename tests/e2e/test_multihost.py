"""Scale-out, proven: the roles as separate hosts (network namespaces with hostnames of their own, made by the run:
tests/hosts.py), a gpu host's cable pulled mid-job and the web host cut from Redis (benchmarks/multihost.py, whose
short run this is; `make chaos-hosts` is the long one). And the defect that run found, tested on its own."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from harness import hosts
from harness.platform import ROOT


@pytest.fixture
def no_leftover_hosts():
    """Whatever happens to the run (a timeout kills it outright), no namespace of it outlives the test."""
    yield
    if hosts.namespaces():
        hosts.remove_leftovers()


@pytest.mark.e2e
def test_jobs_spread_over_two_gpu_hosts_and_survive_a_pulled_cable_and_a_redis_cut(tmp_path, no_leftover_hosts):
    proc = subprocess.run(
        [sys.executable, "benchmarks/multihost.py", "--short", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    print(proc.stdout[-8000:], proc.stderr[-4000:])
    if proc.returncode == 77:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["violations"] == 0 and summary["http_500"] == 0
    # Both gpu hosts ran jobs; the pulled cable's job ran once more, on the other host, and ended there.
    assert set(summary["per_host"]) == {"gpu-a", "gpu-b"} and min(summary["per_host"].values()) >= 1
    (cut,) = summary["gpu_cuts"]
    assert cut["rerun_on"] != cut["host"] and cut["end_state"] == "succeeded" and cut["attempts"] == 2
    assert cut["to_running_s"] > 0  # not before the lease ran out: nothing killed, the host was only cut off
    (redis_cut,) = summary["redis_cuts"]
    assert redis_cut["readyz_503_naming_redis"] >= 1 and redis_cut["recover_s"] is not None
    # What needs Redis says so: the event stream 503, a websocket closed with 1013 (try again later).
    assert redis_cut["statuses"].get("GET /v1/events 503") and redis_cut["statuses"].get(
        "WS /ws/events 101 closed 1013"
    )
    assert summary["statuses"].get("503", 0) >= 1


def _sse_scope(key: str) -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def _run_bounded(coro):
    """asyncio.run, without waiting on what the app left running: cancelling the application's task once hung
    this test for over ten minutes on a loaded machine (the answer had already been read)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 60))
    finally:
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=5))
        loop.close()


@pytest.mark.django_db(transaction=True)
def test_the_event_stream_answers_503_not_500_while_redis_is_out_of_reach(api_key, settings):
    """Found by the multi-host run: with the web host cut from Redis, GET /v1/events answered 500 (counting the
    user's streams in Redis raised), where every other route answers or says 503 to retry."""
    from channels.testing import ApplicationCommunicator

    from videogen.asgi import application

    unreachable = "redis://127.0.0.1:1/0"  # nothing listens there: refused at once
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": unreachable}}
    if settings.CACHES["default"]["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
        pytest.skip("the production profile's Redis cache is what the stream count uses")

    async def scenario() -> tuple[dict, dict]:
        comm = ApplicationCommunicator(application, _sse_scope(api_key))
        await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await comm.receive_output(timeout=10)
        body = await comm.receive_output(timeout=10)
        return start, body

    start, body = _run_bounded(scenario())
    assert start["status"] == 503
    assert (b"retry-after", b"1") in start["headers"]
    assert json.loads(body["body"])["error"]["code"] == "unavailable"


@pytest.mark.django_db(transaction=True)
def test_a_websocket_is_told_to_try_again_later_while_redis_is_out_of_reach(api_key, settings):
    """The same for /ws/events: the handshake failed (a 500 from the server) while Redis was out of reach; now the
    socket is accepted and closed with 1013, try again later."""
    from channels.testing import WebsocketCommunicator

    from videogen.asgi import application

    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}}
    if settings.CACHES["default"]["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
        pytest.skip("the production profile's Redis cache is what the socket count uses")
    headers = [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {api_key}".encode())]

    async def scenario():
        comm = WebsocketCommunicator(application, "/ws/events", headers=headers)
        connected, _ = await comm.connect(timeout=10)
        closed = await comm.receive_output(timeout=10)
        await comm.disconnect()
        return connected, closed

    connected, closed = _run_bounded(scenario())
    assert connected and closed == {"type": "websocket.close", "code": 1013}
