"""The live streams on the real web role: GET /v1/events (Server-Sent Events), the user's log live, resumed with
Last-Event-ID without a gap or a duplicate, refused in the API's envelope without a key; and both it and the
websocket (/ws/events) resumed across a killed web role and a Redis restart."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import warnings

import httpx
import pytest
from openai import OpenAI

from jobs.accounts import api_key_create, ensure_user

pytestmark = pytest.mark.e2e


def _events(resp, until: str, limit: int = 50) -> list[tuple[int, str, dict]]:
    """(id, event, data) of each logged event until one of type `until` (comments, the gap and ephemeral progress
    skipped)."""
    seen, current = [], {}
    for line in resp.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if "data" in current and "id" in current:  # video.progress (no id) is ephemeral: not the log's
                seen.append((int(current.get("id", 0)), current["event"], json.loads(current["data"])))
                if current["event"] == until or len(seen) >= limit:
                    return seen
            current = {}
            continue
        field, _, value = line.partition(": ")
        current[field] = value
    return seen


def test_events_stream_live_and_resume_without_gap_or_duplicate(platform_factory):
    plat = platform_factory()
    user, _ = ensure_user(username="sse-user")
    key = api_key_create(user_id=user.pk)
    warnings.simplefilter("ignore", DeprecationWarning)
    client = OpenAI(base_url=plat.base_url + "/v1", api_key=key, max_retries=0)
    plat.wait_for_runner()
    auth = {"Authorization": f"Bearer {key}"}

    refused = httpx.get(plat.base_url + "/v1/events", timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"

    with httpx.stream("GET", plat.base_url + "/v1/events", headers=auth, timeout=60) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        first = client.videos.create(prompt="a streamed fox")
        live = _events(resp, until="video.completed")
    assert [e for _, e, _ in live] == ["video.in_progress", "video.completed"], live
    assert all(data["data"]["id"] == first.id for _, _, data in live)
    last = live[-1][0]

    second = client.videos.create_and_poll(prompt="a second fox", poll_interval_ms=200)  # while disconnected
    with httpx.stream(
        "GET", plat.base_url + "/v1/events", headers={**auth, "Last-Event-ID": str(last)}, timeout=60
    ) as resp:
        resumed = _events(resp, until="video.completed")
    assert [seq for seq, _, _ in resumed] == [last + 1, last + 2]  # nothing missed, nothing again
    assert [(e, d["data"]["id"]) for _, e, d in resumed] == [
        ("video.in_progress", second.id),
        ("video.completed", second.id),
    ]

    bad = httpx.get(plat.base_url + "/v1/events", headers={**auth, "Last-Event-ID": "x"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_value"


def _through_a_web_crash_and_a_redis_restart(platform_factory, username: str, follow, caught_up) -> int:
    """Videos made before, between and after two faults (SIGKILL of the web role, then the supervisor's
    restart; a Redis restart) while `follow(plat, key, stop)` reads the user's events on a thread. Returns how
    many events there were, once `caught_up(expected)` holds (or 30 s passed: a lost hint waits for a resync)."""
    from benchmarks.chaos import start_redis

    plat = platform_factory()
    user, _ = ensure_user(username=username)
    key = api_key_create(user_id=user.pk)
    warnings.simplefilter("ignore", DeprecationWarning)
    client = OpenAI(base_url=plat.base_url + "/v1", api_key=key, max_retries=3)
    plat.wait_for_runner()
    stop = threading.Event()
    reader = threading.Thread(target=follow, args=(plat, key, stop), daemon=True)
    reader.start()
    made = [client.videos.create(prompt=f"fox {i}").id for i in range(2)]
    time.sleep(1.0)
    plat.crash_web()
    made += [client.videos.create(prompt=f"fox after web {i}").id for i in range(2)]
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, check=False)
    time.sleep(0.5)
    start_redis("6379")
    made += [client.videos.create(prompt=f"fox after redis {i}").id for i in range(2)]
    for vid in made:
        assert client.videos.poll(vid, poll_interval_ms=200).status == "completed", plat.logs()
    expected = 2 * len(made)  # in progress and completed, for each
    deadline = time.monotonic() + 30
    while not caught_up(expected) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    reader.join(timeout=5)
    return expected


def test_a_stream_resumed_across_a_killed_web_role_and_a_redis_restart_misses_nothing(platform_factory):
    """The client reconnects as EventSource does (Last-Event-ID); events written while it was away arrive once."""
    seen: list[int] = []

    def follow(plat, key: str, stop: threading.Event) -> None:
        while not stop.is_set():
            headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": str(seen[-1] if seen else 0)}
            try:
                with httpx.stream("GET", plat.base_url + "/v1/events", headers=headers, timeout=10) as resp:
                    for line in resp.iter_lines():
                        if line.startswith("id: "):
                            seen.append(int(line[4:]))
                        if stop.is_set():
                            return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    expected = _through_a_web_crash_and_a_redis_restart(
        platform_factory, "sse-fault-user", follow, lambda n: len(seen) >= n
    )
    assert seen == list(range(1, expected + 1)), seen  # every event once, in order, across both faults


def test_a_socket_resumed_across_a_killed_web_role_and_a_redis_restart_misses_nothing(platform_factory):
    """The page's client: reconnect with ?last_seq= (the last seq it saw); no seq is missing or sent twice."""
    from websockets.sync.client import connect

    received: list[int] = []  # every seq as it arrived, duplicates included
    connections: list[int] = []

    def follow(plat, key: str, stop: threading.Event) -> None:
        while not stop.is_set():
            last = max(received, default=0)
            url = plat.base_url.replace("http", "ws") + f"/ws/events?last_seq={last}"
            try:
                with connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=5) as ws:
                    connections.append(last)
                    while not stop.is_set():
                        try:
                            message = json.loads(ws.recv(timeout=0.5))
                        except TimeoutError:
                            continue
                        if message.get("type") == "notification":
                            received.append(message["seq"])
            except Exception:  # the server went away (or is not back yet): reconnect as the page does
                time.sleep(0.2)

    expected = _through_a_web_crash_and_a_redis_restart(
        platform_factory, "ws-fault-user", follow, lambda n: len(set(received)) >= n
    )
    assert len(connections) >= 2, connections  # it did reconnect after the crash
    # A reconnect replays from the last seq seen: every notification once, in order, across both faults.
    assert received == list(range(1, expected + 1)), received


def test_progress_streams_live_as_ephemeral_events(platform_factory):
    """video.progress: pushed with heartbeats while the GPU works, without an id (never replayed, not in the log)."""
    plat = platform_factory()
    user, _ = ensure_user(username="sse-progress-user")
    key = api_key_create(user_id=user.pk)
    warnings.simplefilter("ignore", DeprecationWarning)
    client = OpenAI(base_url=plat.base_url + "/v1", api_key=key, max_retries=0)
    plat.wait_for_runner()
    with httpx.stream(
        "GET", plat.base_url + "/v1/events", headers={"Authorization": f"Bearer {key}"}, timeout=90
    ) as resp:
        video = client.videos.create(prompt="a slow pan", size="480x832", seconds="4")  # seconds of GPU work
        seen, current = [], {}
        for line in resp.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if "event" in current:
                    seen.append(current)
                    if current["event"] == "video.completed":
                        break
                current = {}
                continue
            field, _, value = line.partition(": ")
            current[field] = value
    progress = [json.loads(e["data"])["data"]["progress"] for e in seen if e["event"] == "video.progress"]
    assert progress and progress == sorted(progress) and 0 < progress[-1] < 100, seen
    assert all("id" not in e for e in seen if e["event"] == "video.progress")
    assert all(json.loads(e["data"])["data"]["id"] == video.id for e in seen)
    from notifications.models import Notification

    assert not Notification.objects.filter(event="video.progress").exists()  # never in the log
