"""Abuse: a user whose prompts the input stage blocks repeatedly within a window is slowed down (429
moderation_cooldown with Retry-After on every create, until the cooldown ends) and flagged to the moderators with
their history; a moderator suspends the account (its API key stops at once) or lifts the suspension, from the
review page or the flag's; other staff cannot. Blocks come from the real input stage (the rules layer blocks
"csam"), submissions through the real API."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from PIL import Image

from jobs import services
from jobs.accounts import api_key_create
from jobs.models import Job, State
from jobs.services import admission
from moderation.apps import MODERATORS, SUPPORT
from moderation.models import AbuseFlag, AccountAction, RecentBlocks, Review
from tests.support.hotpath import call, post, same_answer

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _rules_decide(settings):
    # The rules layer settles these prompts whatever the text model says: the model need not be trained here.
    settings.MODERATION_CLASSIFIERS = []
    settings.MODERATION_ABUSE_BLOCKS = 3
    settings.MODERATION_ABUSE_WINDOW_SECONDS = 3600
    settings.MODERATION_ABUSE_COOLDOWN_SECONDS = 900


def _blocked(api, n: int = 1, prompt: str = "csam") -> list[Job]:
    """n prompts submitted through the API, then blocked by the real input stage."""
    jobs = []
    for i in range(n):
        made = api.post("/v1/videos", {"prompt": f"{prompt} take {i}"}, format="json")
        assert made.status_code == 201, made.json()
        jobs.append(Job.objects.get(public_id=made.json()["id"]))
    for job in jobs:
        assert services.job_moderate_input(job_id=job.pk) == State.REJECTED
    return jobs


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (128, 128), (40, 90, 160)).save(out, format="PNG")
    return out.getvalue()


def _creates(api) -> dict:
    """Every way the API takes a new video: JSON, the SDK's multipart form, an upload with a reference image."""
    return {
        "json": api.post("/v1/videos", {"prompt": "a calm lake"}, format="json"),
        "form": api.post("/v1/videos", {"prompt": "a calm lake", "seconds": "4"}, format="multipart"),
        "upload": api.post(
            "/v1/videos", {"prompt": "animate this", "input_reference": io.BytesIO(_png())}, format="multipart"
        ),
    }


def _cooling(resp) -> None:
    assert resp.status_code == 429, resp.content
    error = resp.json()["error"]
    assert (error["code"], error["type"]) == ("moderation_cooldown", "rate_limit_error")
    assert "prompts were blocked by the content policy" in error["message"]
    assert 0 < int(resp["Retry-After"]) <= 900 and int(resp["retry-after-ms"]) == 1000 * int(resp["Retry-After"])


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def moderator(make_user):
    mod = make_user("maria")
    mod.is_staff = True
    mod.save()
    mod.groups.add(Group.objects.get(name=MODERATORS))
    return mod


# --- the decisions ----------------------------------------------------------------------------------------------


def test_blocks_within_the_window_trigger_and_older_ones_fall_out():
    kept, triggered = admission.count_block([], at=1000.0, blocks=3, window=60)
    assert (kept, triggered) == ([1000.0], False)
    kept, triggered = admission.count_block([950.0, 990.0], at=1000.0, blocks=3, window=60)
    assert (kept, triggered) == ([950.0, 990.0, 1000.0], True)
    # One outside the window no longer counts.
    kept, triggered = admission.count_block([930.0, 990.0], at=1000.0, blocks=3, window=60)
    assert (kept, triggered) == ([990.0, 1000.0], False)
    # Only the newest `blocks` are kept (the row stays small), in order; a time a little ahead still counts.
    kept, triggered = admission.count_block([999.0, 950.0, 1002.0, 960.0], at=1000.0, blocks=3, window=60)
    assert (kept, triggered) == ([999.0, 1000.0, 1002.0], True)
    assert admission.count_block([], at=5.0, blocks=1, window=60) == ([5.0], True)


def test_a_cooldown_refuses_until_it_ends():
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert admission.check_cooldown(until=None, now=now) is None
    assert admission.check_cooldown(until=now, now=now) is None
    assert admission.check_cooldown(until=now - dt.timedelta(seconds=1), now=now) is None
    refusal = admission.check_cooldown(until=now + dt.timedelta(seconds=90.2), now=now)
    assert (refusal.status, refusal.code, refusal.retry_after) == (429, "moderation_cooldown", 91)
    assert "blocked by the content policy" in refusal.message and "2026-01-02 03:05:35 UTC" in refusal.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODERATION_ABUSE_BLOCKS", "0"),
        ("MODERATION_ABUSE_WINDOW_SECONDS", "an hour"),
        ("MODERATION_ABUSE_BLOCKS", "101"),
    ],
)
def test_nonsense_abuse_settings_are_refused_at_startup(name, value):
    env = {**os.environ, name: value, "DJANGO_SETTINGS_MODULE": "videogen.settings"}
    proc = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode != 0 and "ImproperlyConfigured" in proc.stderr and name in proc.stderr


# --- slowed down --------------------------------------------------------------------------------------------------


def test_repeated_blocks_slow_the_user_down_on_every_create_and_nothing_accepted_is_lost(
    api, user, client_for, make_user
):
    accepted = api.post("/v1/videos", {"prompt": "a red fox in the snow"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert accepted.status_code == 201
    _blocked(api, 2)
    assert api.post("/v1/videos", {"prompt": "a calm lake"}, format="json").status_code == 201  # 2 of 3: allowed
    _blocked(api, 1)
    before = Job.objects.filter(user=user).count()
    for how, resp in _creates(api).items():
        assert resp.status_code == 429, how
        _cooling(resp)
    assert Job.objects.filter(user=user).count() == before  # a refusal creates nothing
    # What was accepted before is kept: its retry answers with it, and it goes on through moderation.
    again = api.post("/v1/videos", {"prompt": "a red fox in the snow"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert again.status_code == 200 and again.json()["id"] == accepted.json()["id"]
    fox = Job.objects.get(public_id=accepted.json()["id"])
    assert fox.state == State.PENDING
    # Its stage runs as for anyone (with no text model here, a prompt no rule blocks is held for a person).
    assert services.job_moderate_input(job_id=fox.pk) == State.PENDING
    assert Review.objects.get(job=fox).status == "open"
    # Another user is not affected.
    other = client_for(make_user("bob"))
    assert all(resp.status_code == 201 for resp in _creates(other).values())


def test_the_cooldown_ends(api, settings):
    settings.MODERATION_ABUSE_COOLDOWN_SECONDS = 1
    _blocked(api, 3)
    _cooling(api.post("/v1/videos", {"prompt": "a calm lake"}, format="json"))
    time.sleep(1.1)
    assert api.post("/v1/videos", {"prompt": "a calm lake"}, format="json").status_code == 201


def test_blocks_outside_the_window_do_not_add_up(api, settings):
    settings.MODERATION_ABUSE_WINDOW_SECONDS = 2
    _blocked(api, 2)
    time.sleep(2.1)
    _blocked(api, 1)  # 3 blocks, never 3 within the window
    assert api.post("/v1/videos", {"prompt": "a calm lake"}, format="json").status_code == 201
    assert not AbuseFlag.objects.exists()
    _blocked(api, 2)  # now 3 within it
    _cooling(api.post("/v1/videos", {"prompt": "a calm lake"}, format="json"))
    assert AbuseFlag.objects.get().blocks == 3


@pytest.mark.django_db(transaction=True)  # the event loop's path has its own connections
def test_the_event_loops_create_refuses_as_django_does(hot, paid):
    user, key = paid
    for i in range(3):
        job, _ = services.job_submit(
            user_id=user.pk,
            request=services.SubmitRequest(
                prompt=f"csam {i}",
                model="wan-tiny",
                seconds=4,
                width=128,
                height=128,
                reference_png=None,
                request_hash="",
            ),
            idempotency_key=None,
        )
        assert services.job_moderate_input(job_id=job.pk) == State.REJECTED
    body = json.dumps({"prompt": "a lighthouse at dawn", "size": "128x128", "seconds": "4"}).encode()
    bearer = {"Authorization": f"Bearer {key}"}
    (served,) = call(hot, post("/v1/videos", bearer, body))
    (direct,) = call(hot.fallback, post("/v1/videos", bearer, body))
    assert hot.fallback.calls == 1  # the first was answered on the event loop
    assert served[0] == 429 and json.loads(served[2])["error"]["code"] == "moderation_cooldown"
    assert int(served[1]["retry-after"]) > 0
    same_answer(served, direct)
    assert Job.objects.filter(user=user).count() == 3


# --- flagged --------------------------------------------------------------------------------------------------


def test_a_user_is_flagged_once_with_their_history_and_a_moderator_resolves_it(api, user, moderator, settings):
    settings.MODERATION_ABUSE_BLOCKS = 2
    jobs = _blocked(api, 3)  # the threshold is reached twice: one flag, updated
    flag = AbuseFlag.objects.get()
    assert (flag.user, flag.status, flag.triggers, flag.blocks) == (user, "open", 2, 2)
    browser = _browser(moderator)
    listing = browser.get("/admin/moderation/abuseflag/").content.decode()
    assert f"/admin/moderation/abuseflag/{flag.pk}/change/" in listing
    page = browser.get(f"/admin/moderation/abuseflag/{flag.pk}/change/").content.decode()
    for job in jobs:  # every blocked prompt, with a link to its decision
        assert job.public_id in page and job.prompt in page
        decision = job.moderation_decisions.get()
        assert f"/admin/moderation/moderationdecision/{decision.pk}/change/" in page
    assert "paused until" in page and 'value="resolve"' in page and 'value="suspend"' in page
    first = jobs[0].moderation_decisions.get()
    assert browser.get(f"/admin/moderation/moderationdecision/{first.pk}/change/").status_code == 200

    done = browser.post(f"/admin/moderation/abuseflag/{flag.pk}/change/", {"flag": "resolve", "note": "warned"})
    assert done.status_code == 302
    flag.refresh_from_db()
    assert (flag.status, flag.resolved_by, flag.note) == ("resolved", moderator, "warned") and flag.resolved_at
    # Resolved: the cooldown ends and the count starts again.
    assert api.post("/v1/videos", {"prompt": "a calm lake"}, format="json").status_code == 201
    assert RecentBlocks.objects.get(user=user).times == []
    _blocked(api, 2)
    assert AbuseFlag.objects.filter(user=user).count() == 2
    assert AbuseFlag.objects.get(user=user, status="open").triggers == 1


# --- suspended ---------------------------------------------------------------------------------------------------


def _held_review(make_job, user) -> Review:
    job = make_job("pending", prompt="a lantern festival", owner=user)
    assert services.job_moderate_input(job_id=job.pk) == State.PENDING  # no classifier: held for a person
    return Review.objects.get(job=job)


def test_a_moderator_suspends_from_the_review_page_and_the_key_stops_at_once(
    api, user, moderator, make_job, django_capture_on_commit_callbacks
):
    assert api.get("/v1/videos").status_code == 200  # the key's answer is remembered by this process
    review = _held_review(make_job, user)
    url = f"/admin/moderation/review/{review.pk}/change/"
    browser = _browser(moderator)
    page = browser.get(url).content.decode()
    assert 'value="suspend"' in page and 'name="verdict"' in page
    with django_capture_on_commit_callbacks(execute=True):
        done = browser.post(url, {"account": "suspend", "reason": "repeated csam requests"})
    assert done.status_code == 302
    user.refresh_from_db()
    assert not user.is_active
    action = AccountAction.objects.get()
    assert (action.kind, action.user, action.moderator, action.reason, action.review) == (
        "suspend",
        user,
        moderator,
        "repeated csam requests",
        review,
    )
    refused = api.get("/v1/videos")
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_api_key")
    assert "suspended" in browser.get(url).content.decode()
    # Lifted: the same key works again.
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(url, {"account": "reinstate", "reason": "appeal by email accepted"})
    user.refresh_from_db()
    assert user.is_active and api.get("/v1/videos").status_code == 200
    assert list(AccountAction.objects.values_list("kind", flat=True)) == ["reinstate", "suspend"]


def test_a_moderator_suspends_from_the_flag_page_with_a_reason(api, user, moderator):
    _blocked(api, 3)
    flag = AbuseFlag.objects.get()
    url = f"/admin/moderation/abuseflag/{flag.pk}/change/"
    browser = _browser(moderator)
    empty = browser.post(url, {"account": "suspend", "reason": "  "}, follow=True)
    assert "give a reason" in empty.content.decode()
    user.refresh_from_db()
    assert user.is_active
    browser.post(url, {"account": "suspend", "reason": "csam, again and again"})
    user.refresh_from_db()
    assert not user.is_active
    assert AccountAction.objects.get().flag == flag
    assert "csam, again and again" in browser.get(url).content.decode()


def test_staff_without_the_moderation_permission_cannot_suspend(api, user, make_user, make_job, moderator):
    _blocked(api, 3)
    flag = AbuseFlag.objects.get()
    review = _held_review(make_job, user)
    agent = make_user("sam")
    agent.is_staff = True
    agent.save()
    agent.groups.add(Group.objects.get(name=SUPPORT))
    clerk = make_user("clerk")
    clerk.is_staff = True
    clerk.save()
    urls = (f"/admin/moderation/review/{review.pk}/change/", f"/admin/moderation/abuseflag/{flag.pk}/change/")
    for staff in (agent, clerk):
        browser = _browser(staff)
        for url in urls:
            assert browser.post(url, {"account": "suspend", "reason": "x"}).status_code == 403, (staff, url)
        assert browser.get("/admin/moderation/abuseflag/").status_code == 403
    # Staff who may decide reviews and resolve flags, but lack the right to suspend: they see no form, and a
    # forged post is refused.
    reviewer = make_user("reviewer")
    reviewer.is_staff = True
    reviewer.save()
    for codename in ("view_review", "change_review", "view_abuseflag", "change_abuseflag"):
        reviewer.user_permissions.add(Permission.objects.get(content_type__app_label="moderation", codename=codename))
    browser = _browser(reviewer)
    for url in urls:
        page = browser.get(url)
        assert page.status_code == 200 and 'value="suspend"' not in page.content.decode()
        assert browser.post(url, {"account": "suspend", "reason": "x"}).status_code == 403, url
    user.refresh_from_db()
    assert user.is_active and not AccountAction.objects.exists()
    # A moderator may not lock out other staff (a superuser's call), nor themselves.
    for target in (agent, moderator):
        with pytest.raises(services.AccountActionError):
            services.account_suspend(user_id=target.pk, moderator=moderator, reason="no")
    agent.refresh_from_db()
    assert agent.is_active


def test_a_superuser_may_suspend_staff(make_user):
    boss = make_user("boss")
    boss.is_staff = boss.is_superuser = True
    boss.save()
    staff = make_user("staffer")
    staff.is_staff = True
    staff.save()
    key = api_key_create(user_id=staff.pk)
    services.account_suspend(user_id=staff.pk, moderator=boss, reason="compromised")
    staff.refresh_from_db()
    assert not staff.is_active
    assert Client().get("/v1/videos", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401
    assert AccountAction.objects.get().kind == "suspend"
