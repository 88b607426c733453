"""End to end: the real processes on Postgres and Redis, driven by the official openai SDK and a browser."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from openai import NotFoundError, OpenAI

from harness.platform import Platform
from jobs.accounts import api_key_create, ensure_user
from jobs.models import Job, JobEvent, State
from notifications.models import Notification
from videogen.video_io import decode_mp4, probe_mp4

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def platform(platform_factory):
    return platform_factory()


def test_openai_sdk_create_and_poll_to_a_downloaded_decodable_mp4(platform):
    user, _ = ensure_user(username="sdk-user")
    client = OpenAI(base_url=platform.base_url + "/v1", api_key=api_key_create(user_id=user.pk), max_retries=0)
    platform.wait_for_runner()
    warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks the Videos API deprecated

    video = client.videos.create_and_poll(prompt="a paper boat on a pond", size="256x144", seconds="4")
    assert video.status == "completed", (video, platform.logs())
    assert (video.progress, video.size, video.seconds, video.model) == (100, "256x144", "4", "wan-tiny")

    assert client.videos.retrieve(video.id).status == "completed"
    assert [v.id for v in client.videos.list()] == [video.id]

    data = client.videos.download_content(video.id).read()
    info = probe_mp4(data)
    assert (info["codec"], info["width"], info["height"], info["frames"]) == ("h264", 256, 144, 17)
    assert decode_mp4(data).shape == (17, 144, 256, 3)
    thumb = client.videos.download_content(video.id, variant="thumbnail").read()
    assert thumb[:4] == b"RIFF" and thumb[8:12] == b"WEBP"

    job = Job.objects.get(public_id=video.id)
    assert job.state == State.SUCCEEDED and job.attempt == 1
    states = list(job.events.values_list("to_state", flat=True))
    assert states == ["pending", "queued", "dispatched", "running", "reviewing", "succeeded"]
    events = list(Notification.objects.filter(job=job).order_by("seq").values_list("event", flat=True))
    assert events == ["video.in_progress", "video.completed"]

    # A blocked prompt ends failed with the moderation code, through the same processes.
    blocked = client.videos.create_and_poll(prompt="terrorist propaganda", poll_interval_ms=100)
    assert blocked.status == "failed" and blocked.error.code == "moderation_blocked"

    deleted = client.videos.delete(video.id)
    assert deleted.deleted is True
    with pytest.raises(NotFoundError):
        client.videos.retrieve(video.id)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (make test installs it)")
def test_browser_page_submits_and_updates_live_to_a_playable_video(platform, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ensure_user(username="browser-user", password="pw-browser")
    platform.wait_for_runner()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()  # two tabs of one signed-in browser, below
        page = context.new_page()
        page.goto(platform.base_url + "/")
        assert "/accounts/login/" in page.url  # login required
        page.fill("input[name=username]", "browser-user")
        page.fill("input[name=password]", "pw-browser")
        page.click("button[type=submit]")
        expect(page.locator("#live")).to_have_text("live", timeout=15_000)

        page.fill("textarea[name=prompt]", "a lighthouse in a storm")
        page.select_option("select[name=size]", "256x144")
        page.click("#submit")
        card = page.locator("li.video").first
        expect(card.locator(".status")).to_have_text("completed", timeout=90_000)
        video = card.locator("video")
        expect(video).to_have_count(1)
        page.wait_for_function("document.querySelector('li.video video').readyState >= 1", timeout=15_000)
        duration = page.evaluate("document.querySelector('li.video video').duration")
        assert duration > 3.5  # 17 frames at 4 fps
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

        # The notification centre: a toast when it ended, one unread, the same in a second tab; marking it read
        # in one tab clears the other live, and a reload keeps it read.
        expect(page.locator(".toast")).to_contain_text("Your video is ready", timeout=10_000)
        expect(page.locator("#unread")).to_have_text("1")
        other = context.new_page()
        other.goto(platform.base_url + "/")
        expect(other.locator("#live")).to_have_text("live", timeout=15_000)
        expect(other.locator("#unread")).to_have_text("1")
        page.click("#bell")
        expect(page.locator("#inbox-list li.unread")).to_contain_text("a lighthouse in a storm")
        page.click("#mark-read")
        expect(page.locator("#unread")).to_have_text("0")
        expect(other.locator("#unread")).to_have_text("0", timeout=10_000)
        other.reload()
        expect(other.locator("#live")).to_have_text("live", timeout=15_000)
        expect(other.locator("#unread")).to_have_text("0")
        other.close()

        # A blocked prompt fails with the policy's category, and its card offers one appeal.
        page.fill("textarea[name=prompt]", "a prisoner being beheaded, blood spraying")
        page.click("#submit")
        blocked = page.locator("li.video").first
        expect(blocked.locator(".status")).to_have_text("failed", timeout=60_000)
        expect(blocked.locator(".error")).to_contain_text("blocked by the content policy: graphic violence")
        page.once("dialog", lambda dialog: dialog.accept("it is a history film"))
        blocked.locator("button.appeal").click()
        expect(blocked.locator(".appeal-status")).to_have_text("Appeal open: a moderator will look at it.")
        expect(blocked.locator("button.appeal")).to_have_count(0)

        # A bad submission shows the API's message and creates nothing.
        page.fill("textarea[name=prompt]", "   ")
        page.evaluate("document.querySelector('textarea[name=prompt]').removeAttribute('required')")
        page.click("#submit")
        expect(page.locator("#form-error")).to_contain_text("must not be empty")
        browser.close()
    assert Job.objects.filter(user__username="browser-user").count() == 2
    appealed = Job.objects.get(user__username="browser-user", state="rejected")
    assert appealed.reviews.get().message == "it is a history film"
    if os.environ.get("VIDEOGEN_SCREENSHOT"):  # for people who want to look at the page
        shutil.copy(tmp_path / "page.png", os.environ["VIDEOGEN_SCREENSHOT"])


def test_a_killed_gpu_runner_loses_nothing(platform_factory):
    """SIGKILL the gpu cluster mid-job: the restarted cluster's worker gives the dead runner's job back (or the
    reaper, once its lease expired), a new runner finishes it, exactly once."""
    # The lease must outlast the longest stall of a live runner (importing torch holds the GIL for seconds).
    plat = platform_factory(JOB_LEASE_SECONDS="5", JOB_RETRY_BACKOFF_SECONDS="0.5", RUNNER_TTL_SECONDS="2")
    user, _ = ensure_user(username="fault-user")
    client = OpenAI(base_url=plat.base_url + "/v1", api_key=api_key_create(user_id=user.pk), max_retries=0)
    plat.wait_for_runner()
    warnings.simplefilter("ignore", DeprecationWarning)
    video = client.videos.create(prompt="a long slow pan", size="480x832", seconds="4")
    job = Job.objects.get(public_id=video.id)
    deadline = time.monotonic() + 60
    while Job.objects.get(pk=job.pk).state != State.RUNNING:
        assert time.monotonic() < deadline, plat.logs()
        time.sleep(0.02)
    plat.kill("gpu")
    plat.start_gpu()

    done = client.videos.poll(video.id, poll_interval_ms=200)
    assert done.status == "completed", plat.logs()
    job.refresh_from_db()
    assert job.attempt >= 2  # 2 unless the loaded machine also stalled the new runner past its lease
    transitions = list(job.events.values_list("from_state", "to_state", "actor"))
    first_runner = next(actor for _, to, actor in transitions if to == "running")
    requeue = [actor for before, to, actor in transitions if (before, to) == ("running", "queued")]
    assert len(requeue) == 1 and requeue[0] != first_runner, transitions
    assert requeue[0] == "reaper" or requeue[0].startswith("runner:"), transitions
    assert transitions[-1][:2] == ("reviewing", "succeeded"), transitions
    assert [t[1] for t in transitions].count("succeeded") == 1, transitions
    events = list(Notification.objects.filter(job=job).order_by("seq").values_list("event", flat=True))
    # Each attempt is seen (queued and in progress once per attempt); the end once.
    assert events == ["video.in_progress", "video.queued", "video.in_progress", "video.completed"], (
        events,
        transitions,
    )
    assert probe_mp4(client.videos.download_content(video.id).read())["frames"] == 17


def _notifications(ws, n: int) -> list[dict]:
    """The next n notifications, past whatever else the socket may send between them (the unread badge after a
    resync saw the counter move, a progress event), as the page reads them."""
    found: list[dict] = []
    while len(found) < n:
        message = json.loads(ws.recv(timeout=60))
        if message.get("type") == "notification":
            found.append(message)
    return found


def test_embedded_profile_runs_a_generation_and_pushes_live_events(tmp_path, tiny_model_dir):
    """`make run`'s profile: SQLite, ORM broker on it, in-memory channel layer (the web process polls)."""
    from websockets.sync.client import connect

    plat = Platform(database_url="", redis_url="", workdir=tmp_path)
    plat.manage("migrate", "--noinput", "-v", "0")
    key = plat.manage("create_api_key", "embedded-user").strip().splitlines()[-1]
    plat.start()
    try:
        client = OpenAI(base_url=plat.base_url + "/v1", api_key=key, max_retries=0)
        warnings.simplefilter("ignore", DeprecationWarning)
        first = client.videos.create_and_poll(prompt="an embedded fox", poll_interval_ms=200)
        assert first.status == "completed", plat.logs()
        assert decode_mp4(client.videos.download_content(first.id).read()).shape == (17, 128, 128, 3)

        ws_url = plat.base_url.replace("http", "ws") + "/ws/events?last_seq=0"
        with connect(ws_url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            backlog = _notifications(ws, 2)
            assert [(m["seq"], m["event"]) for m in backlog] == [(1, "video.in_progress"), (2, "video.completed")]
            second = client.videos.create(prompt="a second fox")
            live = _notifications(ws, 2)
            assert [(m["seq"], m["event"], m["data"]["id"]) for m in live] == [
                (3, "video.in_progress", second.id),
                (4, "video.completed", second.id),
            ]
    finally:
        plat.stop()
        print(plat.logs())


def _scrape(base_url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(base_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_post(url: str, body: dict, key: str) -> int:
    request = Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {key}")
    try:
        with urlopen(request, timeout=10) as resp:
            return resp.status
    except HTTPError as exc:
        return exc.code


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_from_every_process_match_the_jobs_that_ran(platform):
    """Two web processes, the dispatcher, a cpu and a gpu cluster each count in their own file; one scrape sums
    them, and the database's state gauges sit beside them."""
    user, _ = ensure_user(username="metrics-user")
    client = OpenAI(base_url=platform.base_url + "/v1", api_key=api_key_create(user_id=user.pk), max_retries=0)
    platform.wait_for_runner()
    warnings.simplefilter("ignore", DeprecationWarning)
    done = [
        client.videos.create_and_poll(
            prompt=f"a red kite, take {i}", poll_interval_ms=100, extra_headers={"X-Request-ID": f"kite-{i}"}
        )
        for i in range(3)
    ]
    blocked = client.videos.create_and_poll(prompt="terrorist propaganda", poll_interval_ms=100)
    assert [v.status for v in done] == ["completed"] * 3 and blocked.status == "failed"
    refused = requests_post(platform.base_url + "/v1/videos", {"prompt": ""}, client.api_key)
    assert refused == 400

    samples = _scrape(platform.base_url)
    deadline = time.monotonic() + 15
    while _value(samples, "videogen_runners_needed", pool="default") != 0 and time.monotonic() < deadline:
        # The autoscaling signal reads the dispatcher's published summary, up to a publication behind the jobs.
        time.sleep(0.5)
        samples = _scrape(platform.base_url)
    jobs = list(Job.objects.filter(user=user))
    ok = [j for j in jobs if j.state == State.SUCCEEDED]
    assert _value(samples, "videogen_submissions_total", tier="free", outcome="accepted") == 4
    assert _value(samples, "videogen_submissions_total", tier="free", outcome="rejected") == 1
    moves = [("pending", "queued", 3), ("pending", "rejected", 1), ("queued", "dispatched", 3)]
    moves += [("dispatched", "running", 3), ("running", "reviewing", 3), ("reviewing", "succeeded", 3)]
    for frm, to, n in moves:
        assert _value(samples, "videogen_transitions_total", from_state=frm, to_state=to) == n, (frm, to)
    assert _value(samples, "videogen_wait_seconds_count", tier="free", model="wan-tiny") == 3
    assert _value(samples, "videogen_run_seconds_count", model="wan-tiny") == 3
    assert _value(samples, "videogen_moderation_decisions_total", stage="input_text", action="allow") == 3
    assert _value(samples, "videogen_moderation_decisions_total", stage="input_text", action="block") == 1
    assert _value(samples, "videogen_moderation_decisions_total", stage="output_frames", action="allow") == 3
    assert _value(samples, "videogen_credits_total", kind="reserve") == sum(j.credits for j in jobs)
    assert _value(samples, "videogen_credits_total", kind="charge") == sum(j.credits for j in ok)
    assert _value(samples, "videogen_credits_total", kind="release") == sum(j.credits for j in jobs if j not in ok)
    # State, from the database: one live runner with one free slot, nothing queued, nothing held.
    assert _value(samples, "videogen_runner_slots", pool="default") == 1
    assert _value(samples, "videogen_runner_slots_busy", pool="default") == 0
    assert _value(samples, "videogen_runners_needed", pool="default") == 0
    assert _value(samples, "videogen_credits_reserved") == 0
    # One request id follows each video through the web, cpu, dispatcher and gpu roles' transitions.
    for i, video in enumerate(done):
        ids = set(JobEvent.objects.filter(job__public_id=video.id).values_list("request_id", flat=True))
        assert ids == {f"kite-{i}"}, ids
    # Every role that serves no HTTP heartbeats: the liveness probe passes for each.
    for role in ("dispatcher", "cpu", "delivery", "gpu"):
        assert f"{role}: live" in platform.manage("check_liveness", role)
