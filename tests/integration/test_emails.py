"""Email: one per (job, terminal event), even with duplicate tasks and retried sends; the user's preferences
decide; nothing for a user without an address."""

from __future__ import annotations

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone
from django_q.models import OrmQ

from jobs.services.transitions import locked, transition
from notifications import emails
from notifications.models import EmailDelivery
from tests.support.cpu_tasks import run_queued
from videogen import metrics

pytestmark = pytest.mark.django_db


def _run_tasks() -> list[str]:
    return run_queued("notifications.tasks.send_email")


def _end(job, state: str, **fields) -> None:
    with transaction.atomic():
        transition(locked(job.pk), state, reason="test", actor="test", completed_at=timezone.now(), **fields)


@pytest.fixture
def owner(user):
    user.email = "owner@example.com"
    user.save()
    return user


def test_a_completed_video_is_emailed_once_with_a_link(owner, make_job, settings):
    settings.EMAILS = {**settings.EMAILS, "PUBLIC_BASE_URL": "https://videos.example.com"}
    job = make_job("reviewing", attempt=1, prompt="a red kite over hills")
    _end(job, "succeeded")
    row = OrmQ.objects.get()
    OrmQ.objects.create(key=row.key, payload=row.payload, lock=row.lock)  # a duplicate task
    assert sorted(_run_tasks()) == ["sent", "skipped"]
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["owner@example.com"] and sent.subject.startswith("Your video is ready: a red kite")
    assert f"https://videos.example.com/#{job.public_id}" in sent.body
    assert EmailDelivery.objects.get().status == "sent"


def test_a_failed_send_is_retried_by_the_sweep_and_sent_once(owner, make_job, monkeypatch):
    job = make_job("running", attempt=1)
    _end(job, "failed", error_code="generation_error", error_message="It broke.")
    calls = []
    real_send = emails.EmailMessage.send

    def flaky(message, *args, **kwargs):  # the SMTP server is down for the first attempt
        calls.append(1)
        if len(calls) == 1:
            raise OSError("connection refused")
        return real_send(message, *args, **kwargs)

    monkeypatch.setattr(emails.EmailMessage, "send", flaky)
    counted = {o: metrics.EMAIL_DELIVERIES.labels(o)._value.get() for o in ("retrying", "sent")}
    lags = metrics.EMAIL_LAG._sum.get()
    assert _run_tasks() == ["retrying"]
    EmailDelivery.objects.update(next_attempt_at=timezone.now())
    assert emails.enqueue_due() == 1
    assert _run_tasks() == ["sent"]
    # /metrics: one retry and one send counted, and the send's lag observed.
    assert {o: metrics.EMAIL_DELIVERIES.labels(o)._value.get() - counted[o] for o in counted} == {
        "retrying": 1,
        "sent": 1,
    }
    assert metrics.EMAIL_LAG._sum.get() > lags
    assert len(mail.outbox) == 1 and "It broke." in mail.outbox[0].body
    assert EmailDelivery.objects.get().attempts == 2


def test_preferences_decide_and_queued_events_are_never_emailed(owner, make_job, api):
    assert api.get("/v1/notification_preferences").json()["email"]["video.cancelled"] is False  # default off
    resp = api.post("/v1/notification_preferences", {"email": {"video.completed": False}}, format="json")
    assert resp.status_code == 200 and resp.json()["email"]["video.completed"] is False
    _end(make_job("reviewing", attempt=1), "succeeded")
    job = make_job("dispatched")
    with transaction.atomic():
        transition(locked(job.pk), "running", reason="claimed", actor="runner:r", attempt=1)
    assert not EmailDelivery.objects.exists()
    for bad in ({"email": {"video.queued": True}}, {"email": {"video.completed": "yes"}}, {"sms": {}}):
        assert api.post("/v1/notification_preferences", bad, format="json").status_code == 400


def test_no_address_no_email(user, make_job):
    _end(make_job("reviewing", attempt=1), "succeeded")
    assert not EmailDelivery.objects.exists() and mail.outbox == []


def test_a_prompt_with_line_breaks_makes_a_one_line_subject_and_is_sent_at_once(owner, make_job):
    """A header may hold no line break: Django refused the message (BadHeaderError), retried until failed."""
    job = make_job("reviewing", attempt=1, prompt="a fox\r\nBcc: everyone@example.com\nin\tthe\x0bsnow\u2028at dusk")
    _end(job, "succeeded")
    assert _run_tasks() == ["sent"]
    subject = mail.outbox[0].subject
    assert subject == "Your video is ready: a fox Bcc: everyone@example.com in the snow at dusk"
    assert mail.outbox[0].message()["Bcc"] is None and "\n" not in mail.outbox[0].message()["Subject"]
    assert EmailDelivery.objects.get().attempts == 1
