"""The generated OpenAPI description is served and true: a property-based run (schemathesis, bounded examples)
against every operation finds no 5xx, no undocumented status, and no response that breaks its schema."""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.handlers.wsgi import WSGIHandler
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jobs.accounts import api_key_create, ensure_user
from jobs.api.schema import EXAMPLE_VIDEO_ID
from jobs.models import Job

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def bearer(db) -> dict[str, str]:
    """An internal-tier user (no caps: the run reaches past the limits), with videos in several states for the
    generated ids and cursors to find."""
    user, _ = ensure_user(username="schema-user", tier="internal")
    done = Job.objects.create(
        user=user,
        state="succeeded",
        model="wan-tiny",
        prompt="a lake",
        seconds=4,
        width=128,
        height=128,
        seed=1,
        completed_at=timezone.now() - timedelta(seconds=5),
        attempt=1,
        public_id=EXAMPLE_VIDEO_ID,  # the id the schema's examples use
    )
    Job.objects.filter(pk=done.pk).update(
        video_key=default_storage.save(f"videos/{done.public_id}/attempt-1.mp4", ContentFile(b"\0" * 1000)),
        thumbnail_key=default_storage.save(f"videos/{done.public_id}/attempt-1.webp", ContentFile(b"RIFF")),
    )
    for n, state in enumerate(("queued", "failed", "cancelled"), start=2):
        Job.objects.create(
            user=user,
            state=state,
            model="wan-tiny",
            prompt="a lake",
            seconds=4,
            width=128,
            height=128,
            seed=n,
            public_id=f"video_{n:024d}",
            completed_at=None if state == "queued" else timezone.now(),
        )
    return {"Authorization": f"Bearer {api_key_create(user_id=user.pk)}"}


# Loaded through the app itself, as a client would (schemathesis' lazy fixture loader does not work with
# pytest 9). The wsgi_app fixture keeps the test's transaction open across these in-process requests.
schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", WSGIHandler())


# The test operation calls the endpoint's URL at once: generated URLs must never reach the network (it has its
# own tests, against a loopback receiver: tests/integration/test_webhooks.py).
@schema.exclude(operation_id="testWebhookEndpoint").parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_keeps_to_its_schema(case, bearer, wsgi_app):
    case.call_and_validate(headers=bearer, checks=CHECKS)


def test_the_schema_is_built_once_per_process_and_may_be_kept(client, monkeypatch):
    from drf_spectacular.generators import SchemaGenerator

    builds = []
    real = SchemaGenerator.get_schema
    monkeypatch.setattr(SchemaGenerator, "get_schema", lambda *a, **kw: builds.append(1) or real(*a, **kw))
    answers = [client.get("/v1/openapi.json") for _ in range(3)]
    assert len(builds) <= 1  # an open route that rebuilt it per request (70-100 ms) was a cheap way to load the web
    assert [a.status_code for a in answers] == [200] * 3
    assert answers[0].content == answers[2].content and answers[0]["Content-Type"] == answers[2]["Content-Type"]
    assert answers[0]["Cache-Control"] == "public, max-age=3600"


def test_the_schema_and_its_docs_page_are_served_without_a_key(client):
    resp = client.get("/v1/openapi.json")
    assert resp.status_code == 200
    spec = resp.json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/v1/videos",
        "/v1/videos/{video_id}",
        "/v1/videos/{video_id}/cancel",
        "/v1/videos/{video_id}/content",
        "/v1/videos/{video_id}/appeal",
        "/v1/models",
        "/v1/notifications",
        "/v1/credits",
        "/v1/webhook_endpoints",
        "/v1/webhook_endpoints/{endpoint_id}",
        "/v1/webhook_endpoints/{endpoint_id}/rotate_secret",
        "/v1/webhook_endpoints/{endpoint_id}/test",
        "/v1/webhook_endpoints/{endpoint_id}/deliveries",
        "/v1/webhook_endpoints/{endpoint_id}/deliveries/{event_id}/replay",
        "/v1/webhook_event_types",
        "/v1/notification_preferences",
        "/v1/notifications/read",
    }
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer vg-…`",
    }
    docs = client.get("/v1/docs")
    assert docs.status_code == 200 and b"redoc" in docs.content.lower()
    assert b"cdn" not in docs.content.lower()  # Redoc is served from here (drf-spectacular-sidecar)
