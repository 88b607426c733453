"""Taking a job in: caps, credits (reserve, settle once, release), capacity admission, deadlines, rate limits.

Every refusal is a 4xx/503 in the API's envelope with Retry-After, and creates nothing.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django_q.models import OrmQ

from jobs import selectors, services
from jobs.models import Account, CreditEntry, Job, QueueSummary, State
from jobs.services import credits

pytestmark = pytest.mark.django_db


def _tiers(settings, tier: str, **fields):
    settings.VIDEOGEN_TIERS = {**settings.VIDEOGEN_TIERS, tier: {**settings.VIDEOGEN_TIERS[tier], **fields}}


def _submit(api, prompt="a fox", **extra):
    return api.post("/v1/videos", {"prompt": prompt, **extra}, format="json")


def _error(resp) -> dict:
    return resp.json()["error"]


def _nothing_created(user, before: int) -> None:
    assert Job.objects.filter(user=user).count() == before


def test_queue_limit(api, user, settings):
    _tiers(settings, "free", MAX_QUEUED=2)
    assert _submit(api).status_code == 201
    assert _submit(api).status_code == 201
    resp = _submit(api)
    assert resp.status_code == 429
    assert _error(resp)["code"] == "queue_limit" and _error(resp)["type"] == "rate_limit_error"
    assert int(resp["Retry-After"]) > 0
    _nothing_created(user, 2)
    # One leaves the queue (cancelled): there is room again.
    services.job_cancel(job_id=Job.objects.filter(user=user).first().pk, actor="test")
    assert _submit(api).status_code == 201


def test_concurrency_limit_counts_running_jobs_too(api, user, settings, make_job):
    _tiers(settings, "free", MAX_INFLIGHT=3, MAX_QUEUED=10)
    make_job("running", attempt=1)
    make_job("reviewing", attempt=1)
    make_job("succeeded")  # finished jobs do not count
    assert _submit(api).status_code == 201
    resp = _submit(api)
    assert resp.status_code == 429 and _error(resp)["code"] == "concurrency_limit"
    assert "3 at a time" in _error(resp)["message"]


def test_daily_limit_resets_with_the_utc_day(api, user, settings):
    _tiers(settings, "free", DAILY_JOBS=2, MAX_QUEUED=0, MAX_INFLIGHT=0)
    assert _submit(api).status_code == 201
    assert _submit(api).status_code == 201
    resp = _submit(api)
    assert resp.status_code == 429 and _error(resp)["code"] == "daily_limit"
    assert 0 < int(resp["Retry-After"]) <= 86400  # until 00:00 UTC
    # A new day (the account's usage day is yesterday's): allowed again.
    Account.objects.filter(user=user).update(usage_day=credits.today().replace(year=2000))
    assert _submit(api).status_code == 201


def test_caps_are_per_tier(client_for, make_user, settings):
    _tiers(settings, "free", MAX_QUEUED=1)
    _tiers(settings, "paid", MAX_QUEUED=3)
    free, paid = client_for(make_user("f", tier="free")), client_for(make_user("p", tier="paid"))
    assert [_submit(free).status_code for _ in range(2)] == [201, 429]
    assert [_submit(paid).status_code for _ in range(4)] == [201, 201, 201, 429]


def test_idempotent_replay_is_not_refused_by_a_cap(api, settings):
    _tiers(settings, "free", MAX_QUEUED=1)
    first = api.post("/v1/videos", {"prompt": "a fox"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post("/v1/videos", {"prompt": "a fox"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 201 and again.status_code == 200 and again.json()["id"] == first.json()["id"]


# --- credits ------------------------------------------------------------------------------------------


def test_insufficient_credits_is_402_and_creates_nothing(api, user, settings):
    _tiers(settings, "free", DAILY_CREDITS=10)
    resp = _submit(api, size="256x256", seconds="4")
    assert resp.status_code == 402 and _error(resp)["code"] == "insufficient_credits"
    assert "27 credits" in _error(resp)["message"] and "10 available" in _error(resp)["message"]
    _nothing_created(user, 0)
    assert not CreditEntry.objects.filter(user=user).exists()
    credits.grant(user_id=user.pk, amount=100, actor="staff:bob", note="welcome")
    assert _submit(api, size="256x256", seconds="4").status_code == 201
    body = api.get("/v1/credits").json()
    assert (body["balance"], body["allowance_remaining"], body["available"]) == (83, 0, 83)
    kinds = [e["kind"] for e in body["data"]]
    assert kinds == ["reserve", "grant"]
    assert body["data"][1]["actor"] == "staff:bob" and body["data"][0]["amount"] == -17


def test_success_charges_once_and_failure_releases(api, user, settings):
    _tiers(settings, "free", DAILY_CREDITS=100)
    ok = Job.objects.get(public_id=_submit(api).json()["id"])  # 128x128, 4 s: 7 credits
    bad = Job.objects.get(public_id=_submit(api).json()["id"])
    assert api.get("/v1/credits").json()["allowance_remaining"] == 100 - 2 * 7
    for job, end in ((ok, State.SUCCEEDED), (bad, State.FAILED)):
        with transaction.atomic():
            for to in (State.QUEUED, State.DISPATCHED, State.RUNNING, State.REVIEWING, end):
                services.transition(services.locked(job.pk), to, reason="t", actor="t")
    assert list(CreditEntry.objects.filter(job=ok).values_list("kind", flat=True).order_by("id")) == [
        "reserve",
        "charge",
    ]
    assert list(CreditEntry.objects.filter(job=bad).values_list("kind", flat=True).order_by("id")) == [
        "reserve",
        "release",
    ]
    assert api.get("/v1/credits").json()["allowance_remaining"] == 100 - 7  # the failed job's 7 came back
    # The database refuses a second settlement, whatever path tried it.
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEntry.objects.create(user=user, job=ok, kind="release", amount=0, balance_after=0, actor="x")


@pytest.mark.parametrize("end", ["cancel", "reject", "deadline"])
def test_cancel_rejection_and_deadline_release_credits(api, user, settings, end):
    credits.grant(user_id=user.pk, amount=50, actor="staff:bob")
    _tiers(settings, "free", DAILY_CREDITS=0)  # everything from the balance
    prompt = "terrorist propaganda" if end == "reject" else "a calm lake"
    job = Job.objects.get(public_id=_submit(api, prompt=prompt).json()["id"])
    assert Account.objects.get(user=user).credit_balance == 50 - 7
    if end == "cancel":
        api.post(f"/v1/videos/{job.public_id}/cancel")
    elif end == "reject":
        services.job_moderate_input(job_id=job.pk)
    else:
        Job.objects.filter(pk=job.pk).update(start_deadline_at=services.db_now_plus(-1))
        assert services.expire_deadlines() == 1
    assert Account.objects.get(user=user).credit_balance == 50
    assert CreditEntry.objects.filter(job=job, kind="release").count() == 1


def test_a_retried_and_reaped_job_is_charged_once(make_job, user, settings):
    """Attempts come and go (reaper, retries); the settlement happens once, at the one terminal transition."""
    settings.VIDEOGEN = {**settings.VIDEOGEN, "MAX_ATTEMPTS": 3, "RETRY_BACKOFF_SECONDS": 0}
    credits.grant(user_id=user.pk, amount=20, actor="staff:bob")
    job = make_job("pending", credits=5)
    with transaction.atomic():
        account = Account.objects.select_for_update().get(user=user)
        credits.reserve(account=account, job=job, daily_allowance=0).save()
        account.save()
    services.job_moderate_input(job_id=job.pk)
    services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"])
    for _ in range(2):  # two attempts lose their lease
        assert services.dispatch_once() == 1
        claimed = services.job_claim(job_id=job.pk, runner="gpu")
        Job.objects.filter(pk=job.pk).update(lease_expires_at=services.db_now_plus(-1))
        assert services.reap_expired() == 1
        Job.objects.filter(pk=job.pk).update(not_before=None)
        services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"])  # alive: it reports again
    assert services.dispatch_once() == 1
    claimed = services.job_claim(job_id=job.pk, runner="gpu")
    assert services.job_complete(job_id=job.pk, attempt=claimed.attempt, video_key="v", thumbnail_key="t")
    assert services.job_complete(job_id=job.pk, attempt=claimed.attempt - 1, video_key="v", thumbnail_key="t") is False
    from jobs.services.stages import apply_decisions
    from moderation.policy import Action, Decision

    allowed = Decision(action=Action.ALLOW, stage="output_frames", policy="test")
    apply_decisions(job_id=job.pk, at=State.REVIEWING, decisions=[allowed])
    assert Job.objects.get(pk=job.pk).attempt == 3
    kinds = list(CreditEntry.objects.filter(job=job).values_list("kind", flat=True))
    assert sorted(kinds) == ["charge", "reserve"]
    assert Account.objects.get(user=user).credit_balance == 15


def test_internal_tier_is_not_metered(client_for, make_user, settings):
    boss = make_user("boss", tier="internal")
    api = client_for(boss)
    video = _submit(api, size="832x480", seconds="12").json()
    assert video["credits"] == 0
    assert not CreditEntry.objects.filter(user=boss).exists()
    body = api.get("/v1/credits").json()
    assert body["metered"] is False and body["available"] is None


# --- capacity admission -------------------------------------------------------------------------------


def _publish(queued_free_work: float, queued_paid_work: float, capacity: int) -> None:
    def tier(work):
        return {"count": 10, "work": work, "checkpoints": [[0.0, 1, 0, 0.0], [9.0, 10, 9, work * 0.9]]}

    QueueSummary.objects.update_or_create(
        model="wan-tiny",
        defaults={
            "published_at": "2026-01-01T00:00:00Z",
            "data": {
                "at": 0,
                "capacity": capacity,
                "running_work": 0,
                "first_free_in": 0,
                "tiers": {"free": tier(queued_free_work), "paid": tier(queued_paid_work)},
            },
        },
    )
    selectors.forget_summaries()


def test_capacity_exceeded_sheds_the_lower_tier_first(client_for, make_user, settings):
    _tiers(settings, "free", WAIT_BOUND_SECONDS=600)
    _tiers(settings, "paid", WAIT_BOUND_SECONDS=900)
    free, paid = client_for(make_user("f")), client_for(make_user("p", tier="paid"))
    _publish(queued_free_work=1000, queued_paid_work=1000, capacity=4)
    # 4 slots: paid's 1000 s drain at 3/4 of the fleet (333 s), free's within 500 s: both within bounds.
    assert _submit(free).status_code == 201 and _submit(paid).status_code == 201
    _publish(queued_free_work=1000, queued_paid_work=1000, capacity=2)  # half the fleet: 1000 s and 666 s
    resp = _submit(free)
    assert resp.status_code == 503 and _error(resp)["code"] == "capacity_exceeded"
    assert 5 <= int(resp["Retry-After"]) <= 300
    assert _submit(paid).status_code == 201  # the higher tier is still accepted
    assert OrmQ.objects.count() == 3  # the refused one queued no task


def test_no_published_capacity_admits(api):
    QueueSummary.objects.all().delete()
    selectors.forget_summaries()
    assert _submit(api).status_code == 201


# --- deadlines ----------------------------------------------------------------------------------------


def test_start_deadline_validation_and_expiry(api):
    for bad, code in (("soon", "invalid_type"), (0, "invalid_value"), (10**9, "invalid_value"), (1.5, "invalid_type")):
        resp = _submit(api, start_deadline_seconds=bad)
        assert resp.status_code == 400 and _error(resp)["param"] == "start_deadline_seconds", bad
        assert _error(resp)["code"] == code
    video = _submit(api, start_deadline_seconds=60).json()
    assert video["start_deadline_at"] - video["created_at"] in range(59, 62)
    job = Job.objects.get(public_id=video["id"])
    services.job_moderate_input(job_id=job.pk)
    assert services.expire_deadlines() == 0
    Job.objects.filter(pk=job.pk).update(start_deadline_at=services.db_now_plus(-1))
    services.runner_heartbeat(name="gpu", slots=1, model_names=["wan-tiny"])
    assert services.dispatch_once() == 0  # never handed out once past its deadline
    assert services.expire_deadlines() == 1
    body = api.get(f"/v1/videos/{job.public_id}").json()
    assert body["status"] == "cancelled" and body["error"]["code"] == "deadline_exceeded"
    assert Job.objects.get(pk=job.pk).attempt == 0  # it never ran


# --- rate limits on the real API ----------------------------------------------------------------------


def test_rate_limit_headers_and_429_on_the_videos_api(api, settings):
    _tiers(settings, "free", SUBMIT_RATE_PER_MINUTE=2, RATE_PER_MINUTE=1000)
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "rl-videos-test"}
    }
    first = _submit(api)
    assert first.status_code == 201 and first["x-ratelimit-limit-requests"] == "1000"
    assert _submit(api).status_code == 201
    resp = _submit(api)
    assert resp.status_code == 429 and _error(resp)["code"] == "rate_limit_exceeded"
    assert int(resp["Retry-After"]) >= 1
    assert api.get("/v1/videos").status_code == 200  # reads have their own, larger bucket
