"""Submissions served on the event loop (jobs.api.hot): the same transaction as Django's path
(jobs.services.submission's steps, driven by videogen.aiodb), the same answers, and everything the hot path
does not take whole handed to Django untouched. Real Postgres and Redis (transactional: the hot path has its
own connections)."""

from __future__ import annotations

import json

import pytest

from jobs.api import ratelimit
from jobs.models import Account, CreditEntry, Job, JobEvent
from tests.support.hotpath import call, clear_of_window_edge, post, same_answer, scope_for
from videogen import aiodb

pytestmark = pytest.mark.django_db(transaction=True)

BODY = json.dumps({"prompt": "a lighthouse at dawn", "size": "128x128", "seconds": "4"}).encode()
# What differs between two submissions of the same request: the video's id and when it was made.
OWN = {"id", "created_at", "expires_at"}


def multipart(fields: dict[str, str], boundary: str = "vgboundary") -> tuple[bytes, str]:
    """A form as the openai SDK sends `videos.create` (multipart, even without a file)."""
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


def same_submission(hot_answer, django_answer) -> None:
    """Both answers alike but for what each video owns (its id, its time)."""
    strip = [
        (status, headers, {k: v for k, v in json.loads(body).items() if k not in OWN})
        for status, headers, body in (hot_answer, django_answer)
    ]
    same_answer(*[(s, h, json.dumps(b, sort_keys=True).encode()) for s, h, b in strip])


def written(job: Job) -> dict:
    """What a submission leaves in the database besides the job row."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    tasks = [SignedPackage.loads(m.payload) for m in OrmQ.objects.all()]
    return {
        "events": list(JobEvent.objects.filter(job=job).values_list("from_state", "to_state", "reason")),
        "reserved": list(CreditEntry.objects.filter(job=job).values_list("kind", "amount", "allowance_amount")),
        "tasks": [(t["func"], t["args"]) for t in tasks if t["args"] == (job.pk,)],
    }


def test_a_json_create_is_served_here_as_django_serves_it(hot, paid):
    user, key = paid
    bearer = {"Authorization": f"Bearer {key}"}
    sent = aiodb.sent.copy()
    (served,) = call(hot, post("/v1/videos", bearer, BODY))
    assert hot.fallback.calls == 0
    # The key's lookup, then the transaction in two round trips.
    assert aiodb.sent["messages"] - sent["messages"] == 3
    (direct,) = call(hot.fallback, post("/v1/videos", bearer, BODY))
    assert served[0] == 201 and served[1]["x-ratelimit-limit-requests"] == "3000"
    same_submission(served, direct)
    mine, theirs = (Job.objects.get(public_id=json.loads(a[2])["id"]) for a in (served, direct))
    assert (mine.state, mine.tier, mine.credits, mine.request_hash) == (
        theirs.state,
        theirs.tier,
        theirs.credits,
        theirs.request_hash,
    )
    assert written(mine) == {
        "events": [("", "pending", "submitted")],
        "reserved": [("reserve", 0, -mine.credits)],
        "tasks": [("jobs.tasks.moderate_input", (mine.pk,))],
    }
    assert written(theirs)["tasks"] == [("jobs.tasks.moderate_input", (theirs.pk,))]
    assert Account.objects.get(user=user).day_jobs == 2


def test_the_sdks_multipart_create_is_served_here(hot, paid):
    _, key = paid
    body, content_type = multipart({"prompt": "a lighthouse at dawn", "size": "128x128", "seconds": "4"})
    bearer = {"Authorization": f"Bearer {key}", "x-stainless-retry-count": "0"}
    (served,) = call(hot, post("/v1/videos", bearer, body, content_type))
    (direct,) = call(hot.fallback, post("/v1/videos", bearer, body, content_type))
    assert hot.fallback.calls == 1 and served[0] == 201
    same_submission(served, direct)


def test_an_sdk_retry_answers_with_the_video_its_first_try_made(hot, paid):
    _, key = paid
    bearer = {"Authorization": f"Bearer {key}"}
    retry = {**bearer, "x-stainless-retry-count": "1"}
    first, again, other = call(
        hot,
        post("/v1/videos", bearer, BODY),
        post("/v1/videos", retry, BODY),
        post("/v1/videos", retry, BODY.replace(b"lighthouse", b"harbour")),
    )
    assert hot.fallback.calls == 0
    assert (first[0], again[0], other[0]) == (201, 200, 201)
    assert json.loads(again[2])["id"] == json.loads(first[2])["id"] and again[1]["idempotent-replayed"] == "true"
    assert json.loads(other[2])["id"] != json.loads(first[2])["id"]
    assert Job.objects.count() == 2


@pytest.mark.parametrize(
    ("cap", "status", "code"),
    [("MAX_INFLIGHT", 429, "concurrency_limit"), ("DAILY_CREDITS", 402, "insufficient_credits")],
)
def test_a_refusal_answers_as_django_does_and_writes_nothing(hot, paid, settings, cap, status, code):
    user, key = paid
    tiers = {name: dict(limits) for name, limits in settings.VIDEOGEN_TIERS.items()}
    tiers["paid"][cap] = 1 if cap == "MAX_INFLIGHT" else 0
    settings.VIDEOGEN_TIERS = tiers
    bearer = {"Authorization": f"Bearer {key}"}
    answers = call(hot, *[post("/v1/videos", bearer, BODY)] * 3)
    (direct,) = call(hot.fallback, post("/v1/videos", bearer, BODY))
    expected = [201, status, status] if cap == "MAX_INFLIGHT" else [status] * 3
    assert [a[0] for a in answers] == expected and direct[0] == status
    assert json.loads(answers[-1][2])["error"]["code"] == code
    same_answer(answers[-1], direct)
    made = 1 if cap == "MAX_INFLIGHT" else 0
    assert Job.objects.count() == made and CreditEntry.objects.count() == made
    assert Account.objects.get(user=user).day_jobs == made  # the refused ones rolled back


def test_an_account_made_outside_the_api_is_created_in_the_transaction(hot, make_user):
    from jobs.accounts import api_key_create

    user = make_user("no-account")
    Account.objects.filter(user=user).delete()  # as createsuperuser leaves a user
    key = api_key_create(user_id=user.pk)
    (served,) = call(hot, post("/v1/videos", {"Authorization": f"Bearer {key}"}, BODY))
    assert served[0] == 201 and Account.objects.get(user=user).day_jobs == 1


@pytest.mark.parametrize(
    ("headers", "body", "content_type"),
    [
        ({}, b'{"size": "128x128"}', "application/json"),  # invalid: Django's 400 and its accounting
        ({}, b'{"prompt": "x", "bogus": 1}', "application/json"),
        ({}, b"{not json", "application/json"),
        ({}, b"[1, 2]", "application/json"),
        ({}, b'{"prompt": "x"}', "application/json; charset=latin-1"),
        ({}, b'{"prompt": "x"}', "text/plain"),
        ({}, b"prompt=x", "application/x-www-form-urlencoded"),
        ({}, b'{"prompt": "x", "start_deadline_seconds": 60}', "application/json"),
        ({}, b'{"prompt": "x", "input_reference": {"image_url": "data:image/png;base64,AAAA"}}', "application/json"),
        ({}, b'{"prompt": "x", "input\\u005freference": {"image_url": "data:,"}}', "application/json"),  # escaped
        ({}, json.dumps({"prompt": "x" * 4000, "size": "128x128", "pad": " " * 70_000}).encode(), "application/json"),
        ({"Authorization": "Basic abc"}, BODY, "application/json"),
    ],
)
def test_what_the_hot_path_does_not_take_whole_goes_to_django_with_its_body(hot, paid, headers, body, content_type):
    _, key = paid
    request = post("/v1/videos", {"Authorization": f"Bearer {key}", **headers}, body, content_type)
    (served,) = call(hot, request)
    (direct,) = call(hot.fallback, request)
    assert hot.fallback.calls == 2  # Django answered both, and got the whole body the first time too
    if served[0] in (200, 201):
        same_submission(served, direct)
    else:
        same_answer(served, direct)


def test_a_create_with_an_idempotency_key_goes_to_django(hot, paid):
    """The key's lookup and its race (a unique index, then the winner's answer) are Django's path's."""
    _, key = paid
    request = post("/v1/videos", {"Authorization": f"Bearer {key}", "Idempotency-Key": "k1"}, BODY)
    first, again = call(hot, request, request)
    assert hot.fallback.calls == 2
    assert (first[0], again[0], again[1]["idempotent-replayed"]) == (201, 200, "true")
    assert json.loads(first[2])["id"] == json.loads(again[2])["id"]


def test_a_file_upload_goes_to_django(hot, paid):
    _, key = paid
    boundary = "vgb"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="input_reference"; filename="r.png"\r\n'
        f"Content-Type: image/png\r\n\r\nnot a png\r\n--{boundary}--\r\n"
    ).encode()
    (served,) = call(
        hot, post("/v1/videos", {"Authorization": f"Bearer {key}"}, body, f"multipart/form-data; boundary={boundary}")
    )
    assert hot.fallback.calls == 1 and served[0] == 400 and b"input_reference" in served[2]


def test_an_unknown_key_is_refused_here_as_django_refuses_it(hot):
    request = post("/v1/videos", {"Authorization": "Bearer vg-not-a-key"}, BODY)
    (served,) = call(hot, request)
    (direct,) = call(hot.fallback, request)
    assert served[0] == 401 and hot.fallback.calls == 1
    same_answer(served, direct)


def test_the_submit_rate_limit_refuses_as_django_does(hot, paid, settings):
    _, key = paid
    tiers = {name: dict(limits) for name, limits in settings.VIDEOGEN_TIERS.items()}
    tiers["paid"]["SUBMIT_RATE_PER_MINUTE"] = 1
    settings.VIDEOGEN_TIERS = tiers
    clear_of_window_edge()
    request = post("/v1/videos", {"Authorization": f"Bearer {key}"}, BODY)
    served = call(hot, request, request)
    (direct,) = call(hot.fallback, request)
    assert [a[0] for a in served] == [201, 429] and direct[0] == 429
    same_answer(served[1], direct)
    assert Job.objects.count() == 1


def test_a_large_valid_body_is_djangos_to_read(hot, paid):
    """Over HOT_BODY_MAX the event loop does not read a body at all (an image would be parsed there)."""
    from jobs.api.hot import HOT_BODY_MAX

    _, key = paid
    body = json.dumps({"prompt": "a lighthouse", "size": "128x128"}).encode().replace(b"}", b" " * HOT_BODY_MAX + b"}")
    ((status, _, _),) = call(hot, post("/v1/videos", {"Authorization": f"Bearer {key}"}, body))
    assert status == 201 and hot.fallback.calls == 1


@pytest.mark.parametrize("route", ["create", "read"])
def test_an_unexpected_error_is_a_500_in_the_envelope_as_on_djangos_path(hot, paid, monkeypatch, route):
    from jobs.api import hot as hot_module

    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    _, key = paid
    bearer = {"Authorization": f"Bearer {key}"}
    if route == "create":
        monkeypatch.setattr(hot_module.services, "new_job", boom)
        request = post("/v1/videos", bearer, BODY)
    else:
        (created,) = call(hot, post("/v1/videos", bearer, BODY))
        monkeypatch.setattr(hot_module, "video_object", boom)
        request = scope_for(f"/v1/videos/{json.loads(created[2])['id']}", bearer)
    ((status, headers, body),) = call(hot, request)
    assert status == 500 and headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


def test_a_database_that_refuses_connections_is_a_503_to_retry_and_nothing_is_written(hot, paid, settings):
    from tests.support.hotpath import answer_while_refusing_connections

    _, key = paid
    settings.WEB_ASYNC_DB_TIMEOUT = 1.0
    request = post("/v1/videos", {"Authorization": f"Bearer {key}"}, BODY)
    first, (status, headers, body) = answer_while_refusing_connections(hot, request)
    assert first == 201
    assert status == 503 and headers["retry-after"] == "1" and b'"code":"unavailable"' in body
    assert Job.objects.count() == 1 and hot.fallback.calls == 0


def test_with_redis_down_a_submission_is_taken_and_the_limiter_fails_open(hot, paid, settings, caplog):
    from harness.platform import free_port

    _, key = paid
    # Nothing listens there (loopback): the limiter's round trip fails, the submission goes on.
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    try:
        (served,) = call(hot, post("/v1/videos", {"Authorization": f"Bearer {key}"}, BODY))
    finally:
        ratelimit._cache_down_until.clear()  # the limiter stays off a few seconds: not for the next tests
    assert served[0] == 201 and "x-ratelimit-limit-requests" not in served[1]
    assert "rate limiting disabled" in caplog.text and Job.objects.count() == 1
