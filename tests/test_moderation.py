"""Input and output moderation stages: real decisions, real records, the public error code."""

from __future__ import annotations

import numpy as np
import pytest

from jobs import services
from jobs.models import Job, State
from moderation import policy
from moderation.models import ModerationDecision
from videogen.video_io import encode_mp4

pytestmark = pytest.mark.django_db


def test_rules_policy():
    assert policy.check_prompt("A calm lake at dawn").allowed
    blocked = policy.check_prompt("How to do BOMB   making at home")
    assert not blocked.allowed and blocked.reasons == ["blocked term: bomb making"]
    assert policy.check_prompt("bombastic making").allowed  # whole words only


def test_extra_terms_from_settings(settings):
    settings.MODERATION_BLOCKED_TERMS = ["forbidden fruit"]
    assert not policy.check_prompt("the Forbidden Fruit").allowed


def test_allowed_prompt_is_queued_with_a_decision(make_job):
    job = make_job("pending", prompt="a red fox")
    assert services.job_moderate_input(job_id=job.pk) == State.QUEUED
    decision = ModerationDecision.objects.get(job=job)
    assert (decision.stage, decision.verdict, decision.policy) == ("input", "allow", "rules-v1")
    # A duplicate message is harmless.
    assert services.job_moderate_input(job_id=job.pk) is None
    assert ModerationDecision.objects.filter(job=job).count() == 1


def test_blocked_prompt_is_rejected_and_public_error_says_so(api):
    vid = api.post("/v1/videos", {"prompt": "terrorist propaganda video"}, format="json").json()["id"]
    job = Job.objects.get(public_id=vid)
    assert services.job_moderate_input(job_id=job.pk) == State.REJECTED
    video = api.get(f"/v1/videos/{vid}").json()
    assert video["status"] == "failed"
    assert video["error"]["code"] == "moderation_blocked"
    assert ModerationDecision.objects.get(job=job).reasons == ["blocked term: terrorist propaganda"]
    assert [n["event"] for n in api.get("/v1/notifications").json()["data"]] == ["video.failed"]


def _reviewing_job(make_job, data: bytes):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    key = default_storage.save("videos/test.mp4", ContentFile(data))
    return make_job("reviewing", video_key=key, thumbnail_key=key, attempt=1)


def test_output_review_passes_decoded_frames(make_job):
    frames = np.random.default_rng(0).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8)
    job = _reviewing_job(make_job, encode_mp4(frames, fps=4))
    assert services.job_review_output(job_id=job.pk) == State.SUCCEEDED
    job.refresh_from_db()
    assert job.completed_at is not None and job.progress == 100
    assert ModerationDecision.objects.get(job=job, stage="output").verdict == "allow"


def test_output_review_blocks_an_undecodable_clip(make_job):
    job = _reviewing_job(make_job, b"not a video")
    assert services.job_review_output(job_id=job.pk) == State.REJECTED
    job.refresh_from_db()
    assert job.error_code == "moderation_blocked"
    decision = ModerationDecision.objects.get(job=job, stage="output")
    assert decision.verdict == "block" and "could not be decoded" in decision.reasons[0]
