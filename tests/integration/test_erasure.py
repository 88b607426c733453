"""A prompt is erased everywhere a copy of it lives: its owner's DELETE does it at once, PROMPT_RETENTION_SECONDS
after the job ended otherwise (a held or appealed job keeps it until decided). The job, its notifications (and the
emails rendered from them), its webhook bodies, and the text of its moderation records; ids, states, categories
and scores stay."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from jobs import services
from jobs.models import Job
from jobs.services.transitions import locked, transition
from moderation.models import ModerationDecision, Review
from notifications import emails, webhooks
from notifications.models import EmailDelivery, Notification, WebhookDelivery

pytestmark = pytest.mark.django_db

PROMPT = "a secret birthday surprise for Ada"


@pytest.fixture
def owner(user):
    user.email = "owner@example.com"
    user.save()
    webhooks.endpoint_create(
        user_id=user.pk, name="hook", url="https://receiver.example.com/hook", event_types=["video.failed"]
    )
    return user


def _failed_video(make_job, owner) -> Job:
    """A video whose prompt was moderated, then failed: a notification, a webhook body and an email carry it."""
    job = make_job("running", attempt=1, prompt=PROMPT, owner=owner)
    ModerationDecision.objects.create(
        job=job, stage="input_text", action="allow", scores={"hate": 0.01}, policy="v1", reasons=["rule (x): Ada"]
    )
    with transaction.atomic():
        transition(locked(job.pk), "failed", reason="test", actor="test", completed_at=timezone.now())
    assert PROMPT in WebhookDelivery.objects.get().body
    assert PROMPT in emails.message(EmailDelivery.objects.get()).body
    return job


def _copies(job: Job) -> list[str]:
    """Every place that could still hold the prompt."""
    texts = [Job.objects.get(pk=job.pk).prompt]
    texts += [json.dumps(n.payload) for n in Notification.objects.filter(job=job)]
    texts += [d.body for d in WebhookDelivery.objects.all()]
    texts += [emails.message(e).body + emails.message(e).subject for e in EmailDelivery.objects.all()]
    texts += [json.dumps(d.reasons) for d in ModerationDecision.objects.filter(job=job)]
    texts += [r.message + r.note for r in Review.objects.filter(job=job)]
    return texts


def test_delete_erases_the_prompt_from_every_copy(api, owner, make_job):
    job = _failed_video(make_job, owner)
    assert api.delete(f"/v1/videos/{job.public_id}").status_code == 200

    assert not [text for text in _copies(job) if "Ada" in text or "birthday" in text]
    listed = api.get("/v1/notifications").json()["data"]
    assert listed and all(n["data"].get("prompt", "") == "" for n in listed)
    body = json.loads(WebhookDelivery.objects.get().body)
    assert body["type"] == "video.failed" and body["data"]["id"] == job.public_id  # the rest is as it was
    decision = ModerationDecision.objects.get(job=job)
    assert (decision.action, decision.scores, decision.reasons) == ("allow", {"hate": 0.01}, ["rule (x)"])


def test_an_open_appeal_of_a_deleted_video_is_withdrawn(api, owner, make_job):
    job = make_job("rejected", prompt=PROMPT, error_code="moderation_blocked", completed_at=timezone.now())
    services.appeal_create(job_id=job.pk, message="it is about Ada's birthday")
    assert api.delete(f"/v1/videos/{job.public_id}").status_code == 200
    review = Review.objects.get(job=job)
    assert (review.status, review.message) == ("withdrawn", "")


def test_prompts_are_erased_after_their_retention(owner, make_job, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "PROMPT_RETENTION_SECONDS": 3600}
    old = _failed_video(make_job, owner)
    Job.objects.filter(pk=old.pk).update(completed_at=timezone.now() - timedelta(minutes=61))
    fresh = make_job("succeeded", prompt=PROMPT, completed_at=timezone.now() - timedelta(minutes=59))
    running = make_job("running", prompt=PROMPT, attempt=1)
    held = make_job("pending", prompt=PROMPT)
    Review.objects.create(job=held, kind="hold", stage="input_text")

    assert services.erase_expired_prompts() == 1
    assert not [text for text in _copies(old) if "Ada" in text]
    assert Job.objects.get(pk=old.pk).prompt_erased_at is not None
    for kept in (fresh, running, held):
        assert Job.objects.get(pk=kept.pk).prompt == PROMPT
    assert services.erase_expired_prompts() == 0  # done once


def test_an_appealed_video_keeps_its_prompt_until_the_appeal_is_decided(make_job, make_user, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "PROMPT_RETENTION_SECONDS": 60}
    ended = timezone.now() - timedelta(hours=2)
    job = make_job("rejected", prompt=PROMPT, error_code="moderation_blocked", completed_at=ended)
    review = services.appeal_create(job_id=job.pk, message="please look again")
    assert services.erase_expired_prompts() == 0
    assert Job.objects.get(pk=job.pk).prompt == PROMPT

    moderator = make_user("mo")
    services.appeal_decide(review_id=review.pk, moderator=moderator, approve=False)
    assert services.erase_expired_prompts() == 1
    assert Job.objects.get(pk=job.pk).prompt == ""
    assert Review.objects.get(pk=review.pk).status == "rejected"  # the verdict stays, its words go


def test_a_video_whose_prompt_was_erased_cannot_be_appealed(make_job, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "PROMPT_RETENTION_SECONDS": 60}
    job = make_job(
        "rejected", prompt=PROMPT, error_code="moderation_blocked", completed_at=timezone.now() - timedelta(hours=1)
    )
    assert services.erase_expired_prompts() == 1
    with pytest.raises(services.AppealRefused):
        services.appeal_create(job_id=job.pk)
