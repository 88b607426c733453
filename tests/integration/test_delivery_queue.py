"""Webhook deliveries, webhook tests and emails are queued for the delivery role, never for the cpu cluster beside
moderation. On django-q2's ORM broker a queued task is a `django_q_ormq` row whose `key` is the queue of the
cluster that takes it: `settings.DELIVERY_QUEUE` for the delivery role (`Q_CLUSTER_NAME=delivery manage.py
qcluster`), `Q_CLUSTER["name"]` for the cpu cluster. Each path that sends is driven for real: a job's end (the
outbox written in its transition), the dispatcher's retry sweep, and `POST /v1/webhook_endpoints/{id}/test`."""

from __future__ import annotations

import configparser
import datetime as dt

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from harness.platform import ROOT
from jobs.services.transitions import locked, transition
from notifications import emails, webhooks
from notifications.models import EmailDelivery, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

CPU_QUEUE: str = settings.Q_CLUSTER["name"]
DELIVERY_TASKS = {webhooks.SEND_TASK, webhooks.TEST_TASK, emails.SEND_TASK}


def _queued() -> list[tuple[str, str]]:
    """(queue, task) of every message the broker holds, in order."""
    return [(row.key, SignedPackage.loads(row.payload)["func"]) for row in OrmQ.objects.order_by("id")]


def _assert_only_on_delivery_queue(expected: list[str]) -> None:
    queued = [(queue, func) for queue, func in _queued() if func in DELIVERY_TASKS]
    assert sorted(queued) == sorted((settings.DELIVERY_QUEUE, func) for func in expected), queued
    # What each cluster's own broker would take: the delivery role gets them all, the cpu cluster none.
    assert get_broker(settings.DELIVERY_QUEUE).queue_size() == len(expected)
    assert not [func for queue, func in _queued() if queue == CPU_QUEUE and func in DELIVERY_TASKS]


@pytest.fixture
def endpoint(user, settings) -> WebhookEndpoint:
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": ["127.0.0.1/32"], "TEST_WAIT_SECONDS": 0.05}
    user.email = "owner@example.com"
    user.save()
    return webhooks.endpoint_create(
        user_id=user.pk, name="mine", url="http://127.0.0.1:9/hook", event_types=["video.completed"]
    )


def test_the_delivery_queue_is_its_own_and_the_delivery_role_consumes_it():
    assert settings.DELIVERY_QUEUE and settings.DELIVERY_QUEUE != CPU_QUEUE
    assert settings.DELIVERY_QUEUE in settings.Q_CLUSTER["ALT_CLUSTERS"]
    conf = configparser.RawConfigParser()
    conf.read(ROOT / "supervisord.conf")
    assert conf.get("program:delivery", "environment") == f'Q_CLUSTER_NAME="{settings.DELIVERY_QUEUE}"'
    # the cpu role consumes the cpu queue: no cluster name of its own
    assert "Q_CLUSTER_NAME" not in conf.get("program:cpu", "environment", fallback="")


def test_a_jobs_end_queues_its_webhook_and_email_for_the_delivery_role_only(endpoint, make_job):
    job = make_job("reviewing", attempt=1, prompt="a red kite over hills")
    with transaction.atomic():
        transition(locked(job.pk), "succeeded", reason="test", actor="test", completed_at=timezone.now())
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1 and EmailDelivery.objects.count() == 1
    _assert_only_on_delivery_queue([webhooks.SEND_TASK, emails.SEND_TASK])


def test_the_retry_sweep_queues_for_the_delivery_role_only(endpoint, make_job):
    job = make_job("reviewing", attempt=1)
    with transaction.atomic():
        transition(locked(job.pk), "succeeded", reason="test", actor="test", completed_at=timezone.now())
    OrmQ.objects.all().delete()  # the first tasks were lost: the sweep sends them again
    due = timezone.now() - dt.timedelta(seconds=1)
    WebhookDelivery.objects.update(next_attempt_at=due)
    EmailDelivery.objects.update(next_attempt_at=due)
    assert webhooks.enqueue_due() == 1 and emails.enqueue_due() == 1
    _assert_only_on_delivery_queue([webhooks.SEND_TASK, emails.SEND_TASK])


def test_a_webhook_test_is_queued_for_the_delivery_role_only(endpoint, api):
    resp = api.post(
        f"/v1/webhook_endpoints/{endpoint.public_id}/test", {"event_type": "video.completed"}, format="json"
    )
    assert resp.status_code == 504, resp.content  # no delivery worker runs here: it waits its bound, then answers
    _assert_only_on_delivery_queue([webhooks.TEST_TASK])
