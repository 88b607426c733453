"""GET /v1/events (Server-Sent Events) on the real web role: the user's log live, resumed with Last-Event-ID
without a gap or a duplicate; refused in the API's envelope without a key."""

from __future__ import annotations

import json
import warnings

import httpx
import pytest
from openai import OpenAI

from jobs.accounts import api_key_create, ensure_user

pytestmark = pytest.mark.e2e


def _events(resp, until: str, limit: int = 50) -> list[tuple[int, str, dict]]:
    """(id, event, data) of each event until one of type `until` (comments and the gap skipped)."""
    seen, current = [], {}
    for line in resp.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if "data" in current:
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
