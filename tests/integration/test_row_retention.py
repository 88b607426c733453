"""Rows that grow with every job are deleted after their retention, in bounded batches: audit events, the
notification log with its webhook deliveries, attempts and emails, test deliveries and django-q2's task results.
Jobs, credit entries and moderation decisions stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from django_q.models import Task

from jobs import services
from jobs.models import CreditEntry, JobEvent
from jobs.services.transitions import locked, transition
from moderation.models import ModerationDecision
from notifications import webhooks
from notifications.models import EmailDelivery, Notification, WebhookAttempt, WebhookDelivery

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


@pytest.fixture
def retention(settings):
    settings.VIDEOGEN = {
        **settings.VIDEOGEN,
        "EVENT_RETENTION_SECONDS": 10 * 86400,
        "NOTIFICATION_RETENTION_SECONDS": 5 * 86400,
        "TASK_RESULT_RETENTION_SECONDS": 86400,
    }


def _finished_job(make_job, user, *, days_ago: float):
    """A job that failed `days_ago` days ago, with everything it leaves: events, notifications, a webhook delivery
    with an attempt, an email, a moderation decision, a credit entry."""
    job = make_job("running", attempt=1, owner=user, credits=3)
    ModerationDecision.objects.create(job=job, stage="input_text", action="allow", policy="v1")
    with transaction.atomic():
        transition(locked(job.pk), "failed", reason="test", actor="test", completed_at=timezone.now())
    then = timezone.now() - days_ago * DAY
    JobEvent.objects.filter(job=job).update(created_at=then)
    Notification.objects.filter(job=job).update(created_at=then)
    for delivery in WebhookDelivery.objects.filter(notification__job=job):
        WebhookAttempt.objects.create(delivery=delivery, number=1, status_code=500)
    return job


@pytest.fixture
def owner(user):
    user.email = "owner@example.com"
    user.save()
    webhooks.endpoint_create(
        user_id=user.pk, name="hook", url="https://receiver.example.com/hook", event_types=["video.failed"]
    )
    return user


def test_each_kind_of_row_goes_after_its_retention(retention, owner, make_job):
    ancient = _finished_job(make_job, owner, days_ago=11)  # past both retentions
    middle = _finished_job(make_job, owner, days_ago=7)  # notifications past theirs, events not
    fresh = _finished_job(make_job, owner, days_ago=1)
    assert EmailDelivery.objects.count() == 3 and WebhookAttempt.objects.count() == 3
    ledger, ancient_events = CreditEntry.objects.count(), JobEvent.objects.filter(job=ancient).count()

    done = services.purge_expired_rows()

    assert done["events"] == ancient_events
    assert not JobEvent.objects.filter(job=ancient).exists()
    assert JobEvent.objects.filter(job=middle).exists() and JobEvent.objects.filter(job=fresh).exists()
    assert list(Notification.objects.values_list("job_id", flat=True)) == [fresh.pk]
    assert [d.notification.job_id for d in WebhookDelivery.objects.all()] == [fresh.pk]
    assert [e.notification.job_id for e in EmailDelivery.objects.all()] == [fresh.pk]
    assert WebhookAttempt.objects.count() == 1
    # What the user's list, the ledger and appeals read stays.
    assert CreditEntry.objects.count() == ledger
    assert ModerationDecision.objects.count() == 3
    assert services.purge_expired_rows() == {"events": 0, "notifications": 0, "test_deliveries": 0, "task_results": 0}


def test_test_deliveries_and_task_results_go_too(retention, owner):
    endpoint = owner.webhook_endpoints.get()
    old = WebhookDelivery.objects.create(endpoint=endpoint, event_type="video.completed", body="{}", status="dead")
    new = WebhookDelivery.objects.create(endpoint=endpoint, event_type="video.completed", body="{}", status="dead")
    WebhookDelivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - 6 * DAY)
    now = timezone.now()
    for name, stopped in (("old", now - 2 * DAY), ("new", now)):
        Task.objects.create(
            id=name, name=name, func="math.floor", started=stopped, stopped=stopped, success=False, attempt_count=1
        )

    done = services.purge_expired_rows()

    assert (done["test_deliveries"], done["task_results"]) == (1, 1)
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [new.pk]
    assert list(Task.objects.values_list("id", flat=True)) == ["new"]


def test_a_sweep_is_bounded_and_takes_the_oldest_first(retention, user, make_job):
    jobs = [_finished_job(make_job, user, days_ago=20) for _ in range(3)]
    per_job = JobEvent.objects.filter(job=jobs[0]).count()
    assert services.purge_expired_rows(batch=per_job)["events"] == per_job
    assert not JobEvent.objects.filter(job=jobs[0]).exists()
    assert JobEvent.objects.filter(job=jobs[2]).count() == per_job


def test_the_dispatcher_sweeps_rows_too(retention, owner, make_job):
    _finished_job(make_job, owner, days_ago=11)
    call_command("dispatch", "--once")
    assert not JobEvent.objects.exists() and not Notification.objects.exists()
