"""The admin for support staff and operators: tiers, credit grants and adjustments, the ledger, runner drain."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission

from jobs import services
from jobs.models import Account, CreditEntry, Runner
from jobs.services import dispatch

pytestmark = pytest.mark.django_db

ACCOUNTS = "/admin/jobs/account/"
LEDGER = "/admin/jobs/creditentry/"
RUNNERS = "/admin/jobs/runner/"


@pytest.fixture
def superuser(make_user):
    staff = make_user("root")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    return staff


@pytest.fixture
def make_staff(make_user):
    def make(name: str, *codenames: str):
        staff = make_user(name)
        staff.is_staff = True
        staff.save()
        staff.user_permissions.set(Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames))
        return staff

    return make


def balance(user) -> int:
    return Account.objects.get(user=user).credit_balance


def credits_url(user) -> str:
    return f"{ACCOUNTS}{user.account.pk}/credits/"


def test_superuser_grants_then_adjusts_credits_audited_with_their_name(client, superuser, user):
    client.force_login(superuser)
    change_page = client.get(f"{ACCOUNTS}{user.account.pk}/change/")
    assert change_page.status_code == 200 and credits_url(user).encode() in change_page.content
    assert client.get(credits_url(user)).status_code == 200

    done = client.post(credits_url(user), {"amount": "500", "note": "welcome credits"})
    assert done.status_code == 302 and done["Location"] == f"{ACCOUNTS}{user.account.pk}/change/"
    assert balance(user) == 500
    grant = CreditEntry.objects.get(user=user)
    assert (grant.kind, grant.amount, grant.balance_after) == ("grant", 500, 500)
    assert (grant.actor, grant.note) == ("staff:root", "welcome credits")

    client.post(credits_url(user), {"amount": "-120", "note": "refund reversed"})
    assert balance(user) == 380
    adjust = CreditEntry.objects.filter(user=user).latest("id")
    assert (adjust.kind, adjust.amount, adjust.balance_after, adjust.actor) == ("adjust", -120, 380, "staff:root")
    # The change page lists the recent ledger rows and links to the whole ledger of this user.
    page = client.get(f"{ACCOUNTS}{user.account.pk}/change/")
    assert b"refund reversed" in page.content and b"welcome credits" in page.content
    assert f"{LEDGER}?user__id__exact={user.pk}".encode() in page.content


def test_grant_action_on_selected_accounts_goes_through_an_intermediate_form(client, superuser, make_user):
    a, b, other = make_user("a"), make_user("b"), make_user("c")
    client.force_login(superuser)
    selected = [a.account.pk, b.account.pk]
    form = client.post(ACCOUNTS, {"action": "grant_credits", "_selected_action": selected, "index": "0"})
    assert form.status_code == 200 and b'name="amount"' in form.content and b'name="apply"' in form.content
    assert not CreditEntry.objects.exists()

    applied = {"action": "grant_credits", "_selected_action": selected, "apply": "yes"}
    assert client.post(ACCOUNTS, {**applied, "amount": "0", "note": "x"}).status_code == 200  # form error
    assert not CreditEntry.objects.exists()
    assert client.post(ACCOUNTS, {**applied, "amount": "75", "note": "beta testers"}).status_code == 302
    assert (balance(a), balance(b), balance(other)) == (75, 75, 0)
    assert set(CreditEntry.objects.values_list("actor", "kind")) == {("staff:root", "grant")}


@pytest.mark.parametrize(
    "amount, note",
    [
        ("", "n"),
        ("abc", "n"),
        ("1.5", "n"),
        ("0", "n"),
        (str(10**9 + 1), "n"),
        (str(-(10**9) - 1), "n"),
        ("9" * 5000, "n"),  # beyond Python's int-from-string limit
        ("10", ""),  # the note is required
        ("10", "   "),
        ("10", "x" * 501),
    ],
)
def test_bad_input_is_a_form_error_and_books_nothing(client, superuser, user, amount, note):
    client.force_login(superuser)
    page = client.post(credits_url(user), {"amount": amount, "note": note})
    assert page.status_code == 200 and b"errorlist" in page.content
    assert balance(user) == 0 and not CreditEntry.objects.exists()


def test_the_largest_allowed_amounts_are_booked(client, superuser, user):
    client.force_login(superuser)
    client.post(credits_url(user), {"amount": str(10**9), "note": "max"})
    client.post(credits_url(user), {"amount": str(-(10**9)), "note": "min"})
    assert balance(user) == 0 and CreditEntry.objects.count() == 2


def test_view_only_staff_see_accounts_and_runners_but_cannot_grant_edit_or_drain(client, make_staff, user):
    viewer = make_staff("viewer", "view_account", "view_creditentry", "view_runner")
    services.runner_heartbeat(name="r1", slots=1, model_names=["wan-tiny"], queue="gpu.a")
    client.force_login(viewer)

    listing = client.get(ACCOUNTS)
    assert listing.status_code == 200 and b"grant_credits" not in listing.content
    change_page = client.get(f"{ACCOUNTS}{user.account.pk}/change/")
    assert change_page.status_code == 200 and b"/credits/" not in change_page.content
    assert client.get(credits_url(user)).status_code == 403
    assert client.post(credits_url(user), {"amount": "5", "note": "sneaky"}).status_code == 403
    client.post(ACCOUNTS, {"action": "grant_credits", "_selected_action": [user.account.pk], "index": "0"})
    client.post(
        ACCOUNTS,
        {"action": "grant_credits", "_selected_action": [user.account.pk], "apply": "yes", "amount": "5", "note": "x"},
    )
    assert balance(user) == 0 and not CreditEntry.objects.exists()
    assert client.post(f"{ACCOUNTS}{user.account.pk}/change/", {"tier": "internal"}).status_code == 403
    assert Account.objects.get(user=user).tier == "free"

    runners = client.get(RUNNERS)
    assert runners.status_code == 200 and b"drain_runners" not in runners.content
    runner = Runner.objects.get(name="r1")
    client.post(RUNNERS, {"action": "drain_runners", "_selected_action": [runner.pk], "index": "0"})
    assert Runner.objects.get(name="r1").draining is False


def test_operator_drains_and_returns_a_runner_to_service(client, make_staff):
    operator = make_staff("operator", "view_runner", "change_runner")
    services.runner_heartbeat(name="r-a", slots=1, model_names=["wan-tiny"], queue="gpu.a")
    services.runner_heartbeat(name="r-b", slots=1, model_names=["wan-tiny"], queue="gpu.b")
    assert {s.queue for s in dispatch.free_slots_list()} == {"gpu.a", "gpu.b"}
    client.force_login(operator)
    runner = Runner.objects.get(name="r-a")
    listing = client.get(RUNNERS)
    assert b"drain_runners" in listing.content and b"undrain_runners" in listing.content

    client.post(RUNNERS, {"action": "drain_runners", "_selected_action": [runner.pk], "index": "0"})
    assert Runner.objects.get(name="r-a").draining is True
    assert [s.queue for s in dispatch.free_slots_list()] == ["gpu.b"]
    # The runner learns it at its next heartbeat, and its heartbeat does not undo the drain.
    assert services.runner_heartbeat(name="r-a", slots=1, model_names=["wan-tiny"], queue="gpu.a") is True

    client.post(RUNNERS, {"action": "undrain_runners", "_selected_action": [runner.pk], "index": "0"})
    assert Runner.objects.get(name="r-a").draining is False
    assert {s.queue for s in dispatch.free_slots_list()} == {"gpu.a", "gpu.b"}


def test_runner_change_form_stays_read_only(client, superuser):
    services.runner_heartbeat(name="r1", slots=1, model_names=["wan-tiny"], queue="gpu.a")
    runner = Runner.objects.get(name="r1")
    client.force_login(superuser)
    page = client.get(f"{RUNNERS}{runner.pk}/change/")
    assert page.status_code == 200 and b"gpu.a" in page.content and b'name="_save"' not in page.content
    assert client.post(f"{RUNNERS}{runner.pk}/change/", {"slots": "8", "draining": "on"}).status_code == 403
    assert client.get(f"{RUNNERS}add/").status_code == 403
    runner.refresh_from_db()
    assert (runner.slots, runner.draining) == (1, False)


def test_tier_change_through_the_account_form_leaves_the_balance_alone(client, superuser, user):
    services.credits.grant(user_id=user.pk, amount=40, actor="t", note="")
    client.force_login(superuser)
    form_page = client.get(f"{ACCOUNTS}{user.account.pk}/change/")
    assert b'name="tier"' in form_page.content and b'name="credit_balance"' not in form_page.content
    saved = client.post(f"{ACCOUNTS}{user.account.pk}/change/", {"tier": "paid", "credit_balance": "999999"})
    assert saved.status_code == 302
    account = Account.objects.get(user=user)
    assert (account.tier, account.credit_balance) == ("paid", 40)
    assert client.get(f"{ACCOUNTS}add/").status_code == 403


def test_ledger_is_read_only_filterable_and_searchable(client, superuser, user, make_user, make_job):
    bob = make_user("bob")
    job = make_job("queued")
    services.credits.grant(user_id=user.pk, amount=10, actor="staff:root", note="gift")
    services.credits.grant(user_id=bob.pk, amount=-3, actor="staff:root", note="fix", kind="adjust")
    CreditEntry.objects.create(user=user, job=job, kind="reserve", amount=-4, balance_after=6, actor="system")
    entry = CreditEntry.objects.get(kind="grant")
    client.force_login(superuser)

    listing = client.get(LEDGER)
    assert listing.status_code == 200 and job.public_id.encode() in listing.content
    assert b"gift" in listing.content and b"fix" in listing.content and b"delete_selected" not in listing.content
    by_kind = client.get(f"{LEDGER}?kind__exact=adjust")
    assert b"fix" in by_kind.content and b"gift" not in by_kind.content
    by_user = client.get(f"{LEDGER}?q=bob")
    assert b"fix" in by_user.content and b"gift" not in by_user.content
    by_job = client.get(f"{LEDGER}?q={job.public_id}")
    assert job.public_id.encode() in by_job.content and b"gift" not in by_job.content
    for_alice = client.get(f"{LEDGER}?user__id__exact={user.pk}")
    assert b"gift" in for_alice.content and b"fix" not in for_alice.content

    detail = client.get(f"{LEDGER}{entry.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert client.get(f"{LEDGER}add/").status_code == 403
    assert client.post(f"{LEDGER}{entry.pk}/change/", {"amount": "1000"}).status_code == 403
    assert client.post(f"{LEDGER}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(LEDGER, {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"})
    entry.refresh_from_db()
    assert entry.amount == 10 and CreditEntry.objects.count() == 3


def test_account_list_shows_balance_and_only_todays_usage(client, superuser, make_user):
    from jobs.services.credits import today

    fresh, stale = make_user("fresh"), make_user("stale")
    Account.objects.filter(user=fresh).update(credit_balance=321, usage_day=today(), day_jobs=4, day_allowance_used=77)
    Account.objects.filter(user=stale).update(usage_day=today() - timedelta(days=1), day_jobs=9, day_allowance_used=55)
    client.force_login(superuser)
    page = client.get(ACCOUNTS).content.decode()
    assert "321" in page and ">4<" in page and ">77<" in page
    assert ">9<" not in page and ">55<" not in page  # yesterday's counters are not today's usage


# --- defect 6: what staff may do to jobs and keys ------------------------------------------------------------

JOBS = "/admin/jobs/job/"
KEYS = "/admin/jobs/apikey/"


def test_view_only_staff_cannot_cancel_jobs(client, make_staff, make_job):
    """Defect 6: the cancel action asked only for view_job."""
    job = make_job("queued")
    client.force_login(make_staff("viewer", "view_job"))
    page = client.get(JOBS)
    assert page.status_code == 200 and b"cancel_jobs" not in page.content  # not offered
    client.post(JOBS, {"action": "cancel_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.state == "queued"


def test_staff_who_may_change_jobs_cancel_them_through_the_services(client, make_staff, make_job):
    job = make_job("queued")
    staff = make_staff("operator", "view_job", "change_job")
    client.force_login(staff)
    assert b"cancel_jobs" in client.get(JOBS).content
    client.post(JOBS, {"action": "cancel_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.state == "cancelled"
    assert job.events.filter(to_state="cancelled", actor=f"staff:{staff.pk}").exists()


def test_a_key_cannot_be_handed_to_another_user(client, superuser, user, make_user):
    from jobs.accounts import api_key_create
    from jobs.models import ApiKey

    api_key_create(user_id=user.pk)
    key = ApiKey.objects.get(user=user)
    other = make_user("mallory")
    client.force_login(superuser)
    client.post(f"{KEYS}{key.pk}/change/", {"user": other.pk, "name": "renamed"})
    key.refresh_from_db()
    assert key.user_id == user.pk and key.name == "renamed"


def test_keys_added_in_the_admin_are_real_keys_shown_once(client, superuser, user):
    """Defect 6: the add form stored an empty hash, and the second add was a 500."""
    from rest_framework.test import APIClient

    from jobs.models import ApiKey

    client.force_login(superuser)
    shown = []
    for name in ("first", "second"):
        resp = client.post(f"{KEYS}add/", {"user": user.pk, "name": name})
        assert resp.status_code == 200  # the key on the answer's own page, not in a message
        assert not [m for m in resp.context["messages"] if "vg-" in str(m)]
        shown.append(resp.context["raw_key"])
        assert shown[-1].encode() in resp.content
    keys = ApiKey.objects.filter(user=user)
    assert keys.count() == 2 and len({k.key_hash for k in keys}) == 2 and all(k.key_hash for k in keys)
    api = APIClient()
    for raw in shown:
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert api.get("/v1/models").status_code == 200
    assert not any(raw.encode() in client.get(f"{KEYS}{k.pk}/change/").content for k in keys for raw in shown)
