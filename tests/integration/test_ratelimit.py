"""Per-user, per-tier rate limits (jobs.api.ratelimit) against real Redis, on tiny views mounted by this module."""

from __future__ import annotations

import copy
import logging
import threading
import uuid

import httpx2
import openai
import pytest
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory

from jobs.accounts import api_key_create
from jobs.api import ratelimit
from jobs.api.errors import ApiError
from jobs.api.ratelimit import WINDOW_SECONDS, RateLimitedAPIView, TierRateThrottle

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.integration.test_ratelimit")]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = FakeClock()
# 15 s into a window: the window resets in 45 s.
WINDOW_START = WINDOW_SECONDS * 29_000_000.0
T0 = WINDOW_START + 15


class ClockedThrottle(TierRateThrottle):
    def __init__(self) -> None:
        super().__init__(clock=CLOCK)


class ThingView(RateLimitedAPIView):
    throttle_classes = [ClockedThrottle]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})

    def post(self, request: Request) -> Response:
        return Response({"ok": True}, status=201)


class SubmitView(ThingView):
    submit_methods = frozenset({"POST"})


class ModelsView(ThingView):
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": []})


class WallClockView(RateLimitedAPIView):  # the production default: TierRateThrottle on time.time
    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [
    path("v1/things", ThingView.as_view()),
    path("v1/videos", SubmitView.as_view()),
    path("v1/models", ModelsView.as_view()),
    path("v1/wall", WallClockView.as_view()),
]


@pytest.fixture(autouse=True)
def _fresh_limiter(settings) -> None:
    # A fresh key namespace per test instead of cache.clear(): FLUSHDB would also wipe whatever other test runs
    # keep in the shared Redis db 0.
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-rl-{uuid.uuid4().hex}"}}
    ratelimit._cache_down_until.clear()
    CLOCK.now = T0


@pytest.fixture
def limits(settings):
    """Set tier fields, e.g. limits(free=dict(RATE_PER_MINUTE=2))."""

    def set_(**tiers: dict[str, float]) -> None:
        merged = copy.deepcopy(settings.VIDEOGEN_TIERS)
        for tier, fields in tiers.items():
            merged[tier].update(fields)
        settings.VIDEOGEN_TIERS = merged

    return set_


def error_of(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def statuses(client: APIClient, n: int, url: str = "/v1/things", method: str = "get") -> list[int]:
    return [getattr(client, method)(url).status_code for _ in range(n)]


def test_free_tier_gets_fewer_requests_than_paid(make_user, client_for, limits):
    limits(free=dict(RATE_PER_MINUTE=2), paid=dict(RATE_PER_MINUTE=4))
    assert statuses(client_for(make_user("f", tier="free")), 4) == [200, 200, 429, 429]
    assert statuses(client_for(make_user("p", tier="paid")), 6) == [200] * 4 + [429] * 2


def test_each_user_has_their_own_bucket(make_user, client_for, limits):
    limits(free=dict(RATE_PER_MINUTE=2))
    alice, bob = client_for(make_user("alice")), client_for(make_user("bob"))
    assert statuses(alice, 3) == [200, 200, 429]
    assert statuses(bob, 2) == [200, 200]
    # Two keys of one user share the user's bucket.
    assert statuses(client_for(make_user("alice")), 1) == [429]


def test_throttled_response_is_the_envelope_with_retry_headers(make_user, client_for, limits):
    limits(free=dict(RATE_PER_MINUTE=1))
    api = client_for(make_user())
    CLOCK.now = WINDOW_START + 47.6  # 12.4 s left in the window
    assert api.get("/v1/things").status_code == 200
    resp = api.get("/v1/things")
    assert resp.status_code == 429 and resp["Content-Type"] == "application/json"
    err = error_of(resp)
    assert (err["type"], err["code"], err["param"]) == ("rate_limit_error", "rate_limit_exceeded", None)
    assert err["message"] == "Rate limit reached for requests: 1 per minute on the free tier. Try again in 13 s."
    assert resp["Retry-After"] == "13" and resp["retry-after-ms"] == "12400"
    assert resp["x-ratelimit-limit-requests"] == "1"
    assert resp["x-ratelimit-remaining-requests"] == "0"
    assert resp["x-ratelimit-reset-requests"] == "13s"


def test_rate_limit_headers_on_successful_responses(make_user, client_for, limits):
    limits(paid=dict(RATE_PER_MINUTE=3))
    api = client_for(make_user(tier="paid"))
    seen = []
    for _ in range(3):
        resp = api.get("/v1/things")
        assert resp.status_code == 200 and "Retry-After" not in resp
        seen.append(tuple(resp[f"x-ratelimit-{h}-requests"] for h in ("limit", "remaining", "reset")))
        CLOCK.now += 1.5
    assert seen == [("3", "2", "45s"), ("3", "1", "44s"), ("3", "0", "42s")]


def test_headers_on_view_errors(make_user, client_for, limits):
    # An error the view raises (here a 405) still counted, and says so.
    limits(free=dict(RATE_PER_MINUTE=5))
    resp = client_for(make_user()).put("/v1/things")
    assert resp.status_code == 405 and resp["x-ratelimit-remaining-requests"] == "4"


def test_submit_bucket_is_separate_from_the_general_bucket(make_user, client_for, limits):
    limits(free=dict(RATE_PER_MINUTE=5, SUBMIT_RATE_PER_MINUTE=2))
    api = client_for(make_user())
    first = api.post("/v1/videos")
    assert first.status_code == 201
    assert (first["x-ratelimit-remaining-requests"], first["x-ratelimit-remaining-submits"]) == ("4", "1")
    assert first["x-ratelimit-limit-submits"] == "2" and first["x-ratelimit-reset-submits"] == "45s"
    assert api.post("/v1/videos").status_code == 201
    resp = api.post("/v1/videos")
    assert resp.status_code == 429
    err = error_of(resp)
    assert err["code"] == "rate_limit_exceeded"
    assert err["message"].startswith("Rate limit reached for video submissions: 2 per minute on the free tier.")
    assert resp["x-ratelimit-remaining-submits"] == "0" and resp["x-ratelimit-remaining-requests"] == "2"
    # Other requests, and GET on the submit view, only use the general bucket (which has 2 left).
    listing = api.get("/v1/videos")
    assert listing.status_code == 200 and "x-ratelimit-limit-submits" not in listing
    assert api.post("/v1/things").status_code == 201
    # Now the general bucket is spent: it answers first, without touching the submit bucket.
    resp = api.post("/v1/videos")
    assert resp.status_code == 429 and error_of(resp)["message"].startswith("Rate limit reached for requests: 5")
    assert "x-ratelimit-limit-submits" not in resp


def test_window_reset(make_user, client_for, limits):
    limits(free=dict(RATE_PER_MINUTE=2))
    api = client_for(make_user())
    assert statuses(api, 3) == [200, 200, 429]
    CLOCK.now = WINDOW_START + WINDOW_SECONDS - 0.001  # still the same window
    assert statuses(api, 1) == [429]
    CLOCK.now = WINDOW_START + WINDOW_SECONDS  # the next window starts from zero
    resp = api.get("/v1/things")
    assert resp.status_code == 200 and resp["x-ratelimit-remaining-requests"] == "1"
    assert resp["x-ratelimit-reset-requests"] == "60s"


def test_zero_means_unlimited(make_user, client_for, limits):
    limits(internal=dict(RATE_PER_MINUTE=0, SUBMIT_RATE_PER_MINUTE=0), free=dict(RATE_PER_MINUTE=3))
    api = client_for(make_user(tier="internal"))
    for _ in range(10):
        resp = api.post("/v1/videos")
        assert resp.status_code == 201
        assert not [name for name in resp.headers if name.lower().startswith("x-ratelimit")]
    # Only the submit bucket unlimited: the general one still applies, the submit headers are left out.
    limits(free=dict(SUBMIT_RATE_PER_MINUTE=0))
    free = client_for(make_user())
    resp = free.post("/v1/videos")
    assert resp["x-ratelimit-remaining-requests"] == "2" and "x-ratelimit-limit-submits" not in resp


def test_user_without_account_gets_the_free_limits(make_user, client_for, limits):
    limits(free=dict(RATE_PER_MINUTE=1), paid=dict(RATE_PER_MINUTE=50))
    user = make_user(tier="paid")
    user.account.delete()
    api = client_for(user)
    assert statuses(api, 2) == [200, 429]


def test_unauthenticated_requests_are_not_counted(make_user, client_for, limits):
    limits(free=dict(RATE_PER_MINUTE=1))
    resp = APIClient().get("/v1/things")
    assert resp.status_code == 401 and "x-ratelimit-limit-requests" not in resp
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer sk-nope")
    assert bad.get("/v1/things").status_code == 401


def test_cache_down_fails_open(make_user, client_for, limits, settings, caplog):
    limits(free=dict(RATE_PER_MINUTE=1))
    # Nothing listens on port 1 of the loopback: connections are refused at once.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    api = client_for(make_user())
    with caplog.at_level(logging.WARNING, logger="jobs.api.ratelimit"):
        for _ in range(3):
            resp = api.get("/v1/wall")
            assert resp.status_code == 200
            assert "x-ratelimit-limit-requests" not in resp
    warnings = [r for r in caplog.records if r.name == "jobs.api.ratelimit"]
    # One warning, then the limiter stays out of the way for CACHE_RETRY_SECONDS.
    assert len(warnings) == 1 and "cache 'default' unavailable" in warnings[0].getMessage()


def test_counter_is_atomic_under_concurrency(make_user, limits):
    # Many threads, each with its own Redis connection (Django caches are per thread): exactly `limit` pass.
    limits(paid=dict(RATE_PER_MINUTE=37))
    user = make_user(tier="paid")
    user.account  # noqa: B018 - load it now: the threads must not query the test transaction's DB
    view = SubmitView()
    allowed: list[bool] = []

    def hammer() -> None:
        for _ in range(5):
            request = Request(APIRequestFactory().get("/v1/things"))
            request.user, request.auth = user, None  # as authentication leaves them (throttles run after it)
            try:
                allowed.append(ClockedThrottle().allow_request(request, view))
            except ApiError as exc:
                assert exc.status_code == 429
                allowed.append(False)

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 80 and allowed.count(True) == 37


def test_openai_sdk_backs_off_for_retry_after(make_user, limits, wsgi_app, monkeypatch):
    limits(paid=dict(RATE_PER_MINUTE=1))
    app, hits = wsgi_app
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the SDK's back-off: record it and let the server's time pass instead
        slept.append(seconds)
        CLOCK.now += seconds

    monkeypatch.setattr(openai._base_client.time, "sleep", sleep)
    key = api_key_create(user_id=make_user(tier="paid").pk)
    http = httpx2.Client(transport=httpx2.WSGITransport(app=app))
    client = openai.OpenAI(api_key=key, base_url="http://localhost/v1", max_retries=2, http_client=http)

    assert client.models.list().data == []  # the window's only request
    assert client.models.list().data == []  # 429, waits out the window (45 s), then succeeds
    assert hits == ["/v1/models"] * 3
    assert slept == [45.0]

    # Without retries the SDK surfaces the envelope as a RateLimitError.
    with pytest.raises(openai.RateLimitError) as info:
        client.with_options(max_retries=0).models.list()
    assert (info.value.type, info.value.code) == ("rate_limit_error", "rate_limit_exceeded")
    assert info.value.response.headers["retry-after"] == str(WINDOW_SECONDS)
    assert len(hits) == 4


def test_each_counter_expires_after_its_window_and_keeps_its_first_expiry(settings):
    """The script's EXPIRE NX: a new counter gets the window's TTL, a later count keeps it, and a counter that
    lost its TTL gets one back (no counter ever outlives its window for good)."""
    client, prefix = ratelimit.redis_client()
    script = client.register_script(ratelimit.COUNT_SCRIPT)
    key = f"rl:requests:0:{uuid.uuid4().hex}"
    full = f"{prefix}:{key}"
    assert script(**ratelimit.count_call(prefix, [key], None)) == [1]
    client.expire(full, 5)  # as if created 56 s ago
    assert script(**ratelimit.count_call(prefix, [key], None)) == [2]
    assert 0 < client.ttl(full) <= 5
    client.persist(full)
    assert script(**ratelimit.count_call(prefix, [key], None)) == [3]
    assert WINDOW_SECONDS < client.ttl(full) <= WINDOW_SECONDS + 1
    marker = f"credentials:changed:{uuid.uuid4().hex}"
    replies = script(**ratelimit.count_call(prefix, [key], marker))
    assert ratelimit.count_replies(replies, [key], marker) == ([4], None)  # no marker: GET's nil
    client.set(f"{prefix}:{marker}", b"123.5")
    replies = script(**ratelimit.count_call(prefix, [key, key + "s"], marker))
    assert ratelimit.count_replies(replies, [key, key + "s"], marker) == ([5, 1], b"123.5")
