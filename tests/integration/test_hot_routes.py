"""The status read served on the event loop (jobs.api.hot) answers exactly as Django does, and hands Django
everything it does not serve. Real Postgres and Redis: the hot path has its own connections, so these tests
commit (transactional)."""

from __future__ import annotations

import asyncio

import pytest
from django.db import connection
from django.utils import timezone

from jobs import selectors, services
from jobs.accounts import api_key_create, hash_key
from jobs.api import auth
from jobs.models import Account, ApiKey
from tests.support.hotpath import (
    TERMINATE_ASYNC,
    _call,
    answer_while_refusing_connections,
    call,
    same_answer,
    scope_for,
    sql,
    submit,
)
from videogen import aiodb

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_read_answers_as_django_does_and_never_reaches_it(hot, paid):
    user, key = paid
    path = f"/v1/videos/{submit(user)}"
    bearer = {"Authorization": f"Bearer {key}"}
    (served,) = call(hot, scope_for(path, bearer))
    (direct,) = call(hot.fallback, scope_for(path, bearer))
    assert hot.fallback.calls == 1  # only the direct call
    assert served[0] == 200 and b'"status":"queued"' in served[2]
    assert served[1]["x-ratelimit-limit-requests"] == "3000" and "etag" in served[1]
    same_answer(served, direct)


def test_304_404_and_401_answer_as_django_does(hot, paid):
    user, key = paid
    path = f"/v1/videos/{submit(user)}"
    bearer = {"Authorization": f"Bearer {key}"}
    ((_, headers, _),) = call(hot, scope_for(path, bearer))
    cases = [
        scope_for(path, {**bearer, "If-None-Match": headers["etag"]}),  # 304
        scope_for(path, {**bearer, "If-None-Match": f'"other", W/{headers["etag"]}'}),  # weak match: 304
        scope_for(path, {**bearer, "If-None-Match": '"other"'}),  # 200
        scope_for("/v1/videos/video_" + "0" * 24, bearer),  # 404
        scope_for(path, {"Authorization": "Bearer vg-not-a-key"}),  # 401
    ]
    served = call(hot, *cases)
    direct = call(hot.fallback, *cases)
    assert [s[0] for s in served] == [304, 304, 200, 404, 401]
    assert hot.fallback.calls == len(cases)  # only the direct calls
    for mine, theirs in zip(served, direct, strict=True):
        same_answer(mine, theirs)


def test_someone_elses_video_is_not_found(hot, paid, make_user):
    _, key = paid
    other = make_user("hot-other", tier="paid")
    ((status, _, body),) = call(hot, scope_for(f"/v1/videos/{submit(other)}", {"Authorization": f"Bearer {key}"}))
    assert status == 404 and b'"code":"not_found"' in body


def test_a_queued_video_carries_its_position_from_the_published_summary(hot, paid, make_job):
    user, key = paid
    services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"], queue="gpu.a")
    job = make_job("queued", owner=user, cost=10.0)
    services.publish_queue_summary()
    scope = scope_for(f"/v1/videos/{job.public_id}", {"Authorization": f"Bearer {key}"})
    (served,) = call(hot, scope)
    selectors.forget_summaries()
    (direct,) = call(hot.fallback, scope)
    same_answer(served, direct)
    assert b'"queue_position":1' in served[2] and b'"estimated_start_at":null' not in served[2]


def test_the_rate_limit_refuses_as_django_does(hot, paid, settings):
    user, key = paid
    settings.VIDEOGEN_TIERS = {**settings.VIDEOGEN_TIERS, "paid": {**settings.VIDEOGEN_TIERS["paid"]}}
    settings.VIDEOGEN_TIERS["paid"]["RATE_PER_MINUTE"] = 2
    path = f"/v1/videos/{submit(user)}"
    scope = scope_for(path, {"Authorization": f"Bearer {key}"})
    served = call(hot, scope, scope, scope)
    assert [s[0] for s in served] == [200, 200, 429]
    (direct,) = call(hot.fallback, scope)
    same_answer(served[2], direct)
    assert "retry-after" in served[2][1] and b"rate_limit_exceeded" in served[2][2]


def test_a_read_is_one_indexed_query_once_the_key_is_known(hot, paid):
    user, key = paid
    public_id = submit(user)
    sent = aiodb.sent.copy()
    call(hot, *[scope_for(f"/v1/videos/{public_id}", {"Authorization": f"Bearer {key}"})] * 5)
    assert aiodb.sent["messages"] - sent["messages"] == 6  # the key once, then one read per request
    assert aiodb.sent["statements"] - sent["statements"] == 6
    (sql, params), _ = selectors.video_get_statement(user_id=user.pk, public_id=public_id)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "Index Scan" in plan and "Seq Scan" not in plan, plan


def test_a_revoked_key_stops_on_the_hot_path_at_the_next_request(hot, paid, settings):
    user, key = paid
    settings.API_KEY_CACHE_SECONDS = 600.0
    path = f"/v1/videos/{submit(user)}"
    scope = scope_for(path, {"Authorization": f"Bearer {key}"})
    assert call(hot, scope)[0][0] == 200
    entry = auth._known[hash_key(key)]
    ApiKey.objects.filter(user=user).update(revoked_at=timezone.now())
    stored = ApiKey.objects.get(user=user)
    stored.save()  # the signal leaves the marker (on commit) and this process forgets the key
    auth._known[hash_key(key)] = entry  # as another process would still remember it
    ((status, _, body),) = call(hot, scope)
    assert status == 401 and b"invalid_api_key" in body


@pytest.mark.parametrize(
    ("headers", "method", "query"),
    [
        ({}, "GET", b""),  # no key: Django's 401
        ({"Authorization": "Basic abc"}, "GET", b""),  # not a bearer key
        ({"Authorization": "Bearer"}, "GET", b""),  # malformed
        ({"Authorization": "Bearer k", "Host": "evil.example"}, "GET", b""),  # a host Django refuses
        ({"Authorization": "Bearer k"}, "HEAD", b""),
        ({"Authorization": "Bearer k"}, "DELETE", b""),
        ({"Authorization": "Bearer k"}, "GET", b"x=1"),
    ],
)
def test_everything_else_goes_to_django(hot, headers, method, query):
    call(hot, scope_for("/v1/videos/video_" + "0" * 24, headers, method=method, query=query))
    assert hot.fallback.calls == 1


def test_other_routes_go_to_django(hot, paid):
    _, key = paid
    call(hot, scope_for("/v1/videos", {"Authorization": f"Bearer {key}"}))
    call(hot, scope_for("/healthz", {}))
    assert hot.fallback.calls == 2


def test_the_pool_replaces_connections_the_server_closed(hot, paid):
    """What a Postgres restart does to the pool's connections: the next reads are served, none fails."""
    user, key = paid
    scope = scope_for(f"/v1/videos/{submit(user)}", {"Authorization": f"Bearer {key}"})

    async def go():
        try:
            first = [(await _call(hot, scope))[0] for _ in range(3)]
            killed = await asyncio.to_thread(sql, TERMINATE_ASYNC)
            await asyncio.sleep(0.3)  # let the server close the sockets
            after = [(await _call(hot, scope))[0] for _ in range(10)]
            return first, killed, after
        finally:
            await aiodb.close_all()

    first, killed, after = asyncio.run(go())
    assert first == [200] * 3 and killed >= 1 and after == [200] * 10


def test_a_database_that_refuses_connections_is_a_503_to_retry(hot, paid, settings):
    user, key = paid
    settings.WEB_ASYNC_DB_TIMEOUT = 1.0
    scope = scope_for(f"/v1/videos/{submit(user)}", {"Authorization": f"Bearer {key}"})
    first, (status, headers, body) = answer_while_refusing_connections(hot, scope)
    assert first == 200
    assert status == 503 and headers["retry-after"] == "1" and b'"code":"unavailable"' in body


def test_a_user_without_an_account_reads_as_on_djangos_path(hot, make_user):
    """A user made outside ensure_user (createsuperuser) has no Account row: the free tier's limits, and no
    query from the event loop to find that out (it raised SynchronousOnlyOperation)."""
    user = make_user("no-account-reader")
    Account.objects.filter(user=user).delete()
    key = api_key_create(user_id=user.pk)
    scope = scope_for("/v1/videos/video_" + "0" * 24, {"Authorization": f"Bearer {key}"})
    (served,) = call(hot, scope)
    (direct,) = call(hot.fallback, scope)
    assert served[0] == 404 and served[1]["x-ratelimit-limit-requests"] == "600"  # free
    same_answer(served, direct)


def test_a_summary_that_expires_between_check_and_use_is_not_a_500(hot, paid, make_job, monkeypatch):
    # The per-process summary cache expiring right after it was read made the estimate read it again through
    # Django's connection on the event loop (SynchronousOnlyOperation: a 500).
    user, key = paid
    services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"], queue="gpu.a")
    job = make_job("queued", owner=user, cost=10.0)
    services.publish_queue_summary()
    monkeypatch.setattr(selectors, "SUMMARY_CACHE_SECONDS", -1.0)  # every cached summary has expired when used
    ((status, _, body),) = call(hot, scope_for(f"/v1/videos/{job.public_id}", {"Authorization": f"Bearer {key}"}))
    assert status == 200 and b'"queue_position":1' in body
