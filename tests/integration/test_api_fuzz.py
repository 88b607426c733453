"""Never a 500: arbitrary JSON bodies and query strings get a 2xx or a 4xx in the error envelope."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.models import Job

pytestmark = pytest.mark.django_db

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["prompt", "model", "seconds", "size", "input_reference", "extra"])
BODIES = st.dictionaries(FIELDS, JSON | st.sampled_from(["4", "8", "128x128", "wan-tiny", "a fox"]), max_size=5)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(resp) -> None:
    assert resp.status_code < 500, resp.content
    if resp.status_code >= 400:
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


@FUZZ
@given(body=BODIES | JSON)
def test_create_with_arbitrary_json(api, body):
    before = Job.objects.count()
    resp = api.generic("POST", "/v1/videos", json.dumps(body), content_type="application/json")
    _check(resp)
    assert Job.objects.count() == before + (1 if resp.status_code == 201 else 0)


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["after", "limit", "order", "x"]), st.text(max_size=30), max_size=3))
def test_list_with_arbitrary_query(api, params):
    _check(api.get("/v1/videos", params))


@FUZZ
@given(video_id=st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and "?" not in s and "#" not in s))
def test_paths_with_arbitrary_ids(api, video_id):
    for method, suffix in (("get", ""), ("delete", ""), ("post", "/cancel"), ("get", "/content")):
        _check(getattr(api, method)(f"/v1/videos/{video_id}{suffix}"))
