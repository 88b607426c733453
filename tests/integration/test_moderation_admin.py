"""The moderators' queue in the admin: what a moderator sees, decides and may not touch."""

from __future__ import annotations

import base64
import io
import re
import tracemalloc

import numpy as np
import pytest
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from PIL import Image

from jobs import services
from jobs.models import Job, State
from moderation.admin import PREVIEW_PX
from moderation.apps import MODERATORS
from moderation.models import ModerationDecision, Review
from notifications.models import Notification
from videogen.video_io import encode_mp4

pytestmark = pytest.mark.django_db


@pytest.fixture
def moderator(make_user):
    mod = make_user("maria")
    mod.is_staff = True
    mod.save()
    mod.groups.add(Group.objects.get(name=MODERATORS))
    return mod


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _held_video(make_job, settings) -> Job:
    settings.MODERATION_CLASSIFIERS = ["text"]  # the image classifiers "missing": the output stage must hold
    frames = np.random.default_rng(1).integers(0, 255, (6, 64, 64, 3), dtype=np.uint8)
    key = default_storage.save("videos/held.mp4", ContentFile(encode_mp4(frames, fps=4)))
    job = make_job("reviewing", video_key=key, thumbnail_key=key, attempt=1, prompt="a lantern festival")
    assert services.job_review_output(job_id=job.pk) == State.REVIEWING
    return job


def test_a_moderator_sees_the_moderation_app_and_nothing_else(moderator):
    browser = _browser(moderator)
    index = browser.get("/admin/")
    assert index.status_code == 200
    assert [app["app_label"] for app in index.context["app_list"]] == ["moderation"]
    for forbidden in ("/admin/jobs/job/", "/admin/jobs/account/", "/admin/auth/user/", "/admin/auth/group/"):
        assert browser.get(forbidden).status_code == 403, forbidden
    assert browser.get("/admin/moderation/review/").status_code == 200
    assert browser.get("/admin/moderation/moderationdecision/").status_code == 200


def test_staff_outside_the_group_cannot_open_the_queue(make_user, make_job, settings):
    clerk = make_user("clerk")
    clerk.is_staff = True
    clerk.save()
    job = _held_video(make_job, settings)
    browser = _browser(clerk)
    assert browser.get("/admin/moderation/review/").status_code == 403
    review = Review.objects.get(job=job)
    assert browser.post(f"/admin/moderation/review/{review.pk}/change/", {"verdict": "approve"}).status_code == 403
    assert Job.objects.get(pk=job.pk).state == State.REVIEWING


def test_a_held_video_is_shown_with_its_frames_scores_prompt_and_history(moderator, make_job, settings):
    make_job("succeeded", prompt="an earlier calm lake")
    job = _held_video(make_job, settings)
    browser = _browser(moderator)
    listing = browser.get("/admin/moderation/review/").content.decode()
    assert job.public_id in listing
    review = Review.objects.get(job=job)
    page = browser.get(f"/admin/moderation/review/{review.pk}/change/").content.decode()
    assert "a lantern festival" in page and "an earlier calm lake" in page
    assert len(re.findall(r'<img src="data:image/jpeg;base64,', page)) == 6  # every sampled frame, inline
    assert "classifier unavailable: image" in page  # why it was held
    assert 'name="verdict" value="approve"' in page


def test_the_review_page_decodes_only_the_sampled_frames_at_preview_size(moderator, make_job, settings):
    settings.MODERATION_CLASSIFIERS = ["text"]  # held: the image classifiers "missing"
    settings.MODERATION_OUTPUT_FRAMES = 3
    clip = np.stack([np.full((540, 960, 3), 4 * i, dtype=np.uint8) for i in range(40)])  # all decoded: 62 MB
    key = default_storage.save("videos/long.mp4", ContentFile(encode_mp4(clip, fps=8)))
    job = make_job("reviewing", video_key=key, thumbnail_key=key, attempt=1)
    assert services.job_review_output(job_id=job.pk) == State.REVIEWING
    browser = _browser(moderator)
    url = f"/admin/moderation/review/{Review.objects.get(job=job).pk}/change/"
    browser.get(url)  # a first render (templates, the session) before measuring
    tracemalloc.start()
    try:
        page = browser.get(url).content.decode()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    shown = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(shown) == 3 and all("of 40" in label for label in re.findall(r"frame \d+ of \d+", page))
    for uri in shown:
        assert max(Image.open(io.BytesIO(base64.b64decode(uri))).size) <= PREVIEW_PX
    assert peak < 20 * 2**20, peak
    # Over the caps: not decoded at all, and the item can still be decided.
    settings.MODERATION_CLIP_MAX_FRAMES = 39
    page = browser.get(url).content.decode()
    assert "could not be shown" in page and "40 frames: over 39" in page
    assert 'name="verdict" value="approve"' in page


def test_approving_publishes_the_video_notifies_the_user_and_records_the_moderator(moderator, make_job, settings):
    job = _held_video(make_job, settings)
    assert [n.event for n in Notification.objects.filter(job=job)] == ["video.held_for_review"]
    review = Review.objects.get(job=job)
    done = _browser(moderator).post(
        f"/admin/moderation/review/{review.pk}/change/", {"verdict": "approve", "note": "lanterns, fine"}
    )
    assert done.status_code == 302
    job.refresh_from_db()
    assert job.state == State.SUCCEEDED
    assert [n.event for n in Notification.objects.filter(job=job)] == ["video.held_for_review", "video.completed"]
    human = ModerationDecision.objects.get(job=job, stage="moderator")
    assert (human.moderator, human.action, human.reasons) == (moderator, "allow", ["maria: lanterns, fine"])
    assert job.events.last().actor == "moderator:maria"
    # Decided once: a second verdict is refused with a message, and changes nothing.
    again = _browser(moderator).post(
        f"/admin/moderation/review/{review.pk}/change/", {"verdict": "reject"}, follow=True
    )
    assert "Not decided" in again.content.decode()
    assert Job.objects.get(pk=job.pk).state == State.SUCCEEDED


def test_rejecting_an_appeal_in_the_admin_notifies_the_user(moderator, api):
    vid = api.post("/v1/videos", {"prompt": "a prisoner being beheaded"}, format="json").json()["id"]
    job = Job.objects.get(public_id=vid)
    services.job_moderate_input(job_id=job.pk)
    api.post(f"/v1/videos/{vid}/appeal", {"message": "it is art"}, format="json")
    review = Review.objects.get(job=job, kind="appeal")
    browser = _browser(moderator)
    page = browser.get(f"/admin/moderation/review/{review.pk}/change/").content.decode()
    assert "it is art" in page and "graphic_violence" in page  # the appeal beside the decision appealed
    browser.post(f"/admin/moderation/review/{review.pk}/change/", {"verdict": "reject", "note": "no"})
    assert api.get(f"/v1/videos/{vid}/appeal").json()["status"] == "rejected"
    events = [n["event"] for n in api.get("/v1/notifications").json()["data"]]
    assert events == ["video.failed", "video.appeal_decided"]


def test_a_verdict_needs_a_choice(moderator, make_job, settings):
    job = _held_video(make_job, settings)
    review = Review.objects.get(job=job)
    page = _browser(moderator).post(f"/admin/moderation/review/{review.pk}/change/", {"verdict": "maybe"}, follow=True)
    assert "Choose Approve or Reject" in page.content.decode()
    assert Review.objects.get(pk=review.pk).status == "open"


def _held_prompt(make_job, settings, **fields) -> Job:
    settings.MODERATION_CLASSIFIERS = []  # the text classifier "missing": the input stage must hold
    job = make_job("pending", prompt="a lantern festival", **fields)
    assert services.job_moderate_input(job_id=job.pk) == State.PENDING
    assert Review.objects.get(job=job).status == "open"
    return job


def test_a_held_video_the_user_cancels_leaves_the_queue(moderator, make_job, settings):
    # Hold, cancel, repeat must not fill the moderators' queue with items nobody can close.
    job = _held_video(make_job, settings)
    services.job_cancel(job_id=job.pk, actor="user")
    review = Review.objects.get(job=job)
    assert review.status == "withdrawn" and review.decided_at is not None
    assert "cancelled" in review.note
    listing = _browser(moderator).get("/admin/moderation/review/?status=open")
    assert (
        listing.status_code == 200 and f"/admin/moderation/review/{review.pk}/change/" not in listing.content.decode()
    )
    with pytest.raises(services.ReviewError):
        services.review_decide(review_id=review.pk, moderator=moderator, approve=True)


def test_a_held_prompt_past_its_start_deadline_leaves_the_queue(make_job, settings):
    from django.utils import timezone

    job = _held_prompt(make_job, settings, start_deadline_at=timezone.now() - timezone.timedelta(seconds=1))
    assert services.expire_deadlines() == 1
    assert Job.objects.get(pk=job.pk).state == State.CANCELLED
    assert Review.objects.get(job=job).status == "withdrawn"


def test_a_verdict_still_closes_its_review_as_decided(moderator, make_job, settings):
    job = _held_prompt(make_job, settings)
    review = services.review_decide(review_id=Review.objects.get(job=job).pk, moderator=moderator, approve=True)
    assert Review.objects.get(pk=review.pk).status == "approved"
    assert Job.objects.get(pk=job.pk).state == State.QUEUED
