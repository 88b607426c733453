"""Least privilege in the admin: an endpoint's URL passes the API's checks there too, staff never mint keys for
users with more rights than theirs, a new key is shown once on its page (never in a message cookie), and the
Support group holds exactly what support needs."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from jobs.accounts import hash_key
from jobs.models import ApiKey, State
from moderation.apps import SUPPORT, SUPPORT_PERMISSIONS
from notifications import webhooks
from notifications.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def _staff(make_user, name: str, *codenames: str, superuser: bool = False):
    user = make_user(name)
    user.is_staff = True
    user.is_superuser = superuser
    user.save()
    for codename in codenames:
        app, _, code = codename.partition(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=code))
    return user


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- webhook endpoints: the API's URL checks in the admin -----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:secret@example.com/hook",
        "http:///no-host",
        "http://example.com:99999/hook",
    ],
)
def test_the_admin_refuses_an_endpoint_url_the_api_refuses(make_user, user, url):
    endpoint = webhooks.endpoint_create(
        user_id=user.pk, name="mine", url="https://example.com/hook", event_types=["video.completed"]
    )
    staff = _staff(make_user, "editor", "notifications.view_webhookendpoint", "notifications.change_webhookendpoint")
    form = {"name": "mine", "url": url, "event_types": '["video.completed"]', "disabled_at_0": "", "disabled_at_1": ""}
    answer = _browser(staff).post(f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/", form)
    assert answer.status_code == 200 and b"cannot receive webhooks" in answer.content
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).url == "https://example.com/hook"

    form["url"] = "https://hooks.example.org/new"  # a URL the API takes is saved
    answer = _browser(staff).post(f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/", form)
    assert answer.status_code == 302
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).url == "https://hooks.example.org/new"


# --- API keys: never for more rights than the minter's, shown once on a page ------------------------------------


def test_staff_mint_keys_only_for_users_without_staff_rights_and_see_it_once_on_the_page(make_user, user):
    minter = _staff(make_user, "helpdesk", "jobs.add_apikey", "jobs.view_apikey", "jobs.change_apikey")
    boss = _staff(make_user, "boss", superuser=True)
    colleague = _staff(make_user, "colleague", "jobs.change_job")
    browser = _browser(minter)

    page = browser.get("/admin/jobs/apikey/add/").content.decode()
    assert f'value="{user.pk}"' in page
    assert f'value="{boss.pk}"' not in page and f'value="{colleague.pk}"' not in page
    for target in (boss, colleague, minter):
        refused = browser.post("/admin/jobs/apikey/add/", {"user": target.pk, "name": "mine now"})
        assert refused.status_code == 200 and b"Select a valid choice" in refused.content
        assert not ApiKey.objects.filter(user=target).exists()

    issued = browser.post("/admin/jobs/apikey/add/", {"user": user.pk, "name": "support-made"})
    assert issued.status_code == 200 and "no-store" in issued["Cache-Control"]
    key = ApiKey.objects.get(user=user, name="support-made")
    raw = issued.context["raw_key"]
    assert raw.encode() in issued.content and hash_key(raw) == key.key_hash
    assert raw not in str(issued.cookies) and raw not in str(browser.cookies)  # no message carries it
    assert raw not in browser.get("/admin/jobs/apikey/").content.decode()  # shown once

    boss_key = ApiKey.objects.create(user=boss, name="boss", prefix="vg-boss", key_hash="x" * 64)
    assert browser.get(f"/admin/jobs/apikey/{boss_key.pk}/change/").status_code == 302  # not within reach
    assert "boss" not in [k.name for k in browser.get("/admin/jobs/apikey/").context["cl"].result_list]


def test_a_superuser_mints_a_key_for_anyone(make_user):
    boss = _staff(make_user, "root", superuser=True)
    other = _staff(make_user, "ops", superuser=True)
    issued = _browser(boss).post("/admin/jobs/apikey/add/", {"user": other.pk, "name": "ops"})
    assert issued.status_code == 200 and hash_key(issued.context["raw_key"]) == ApiKey.objects.get(user=other).key_hash


# --- the Support group --------------------------------------------------------------------------------------


def test_the_support_group_holds_exactly_its_permissions():
    group = Group.objects.get(name=SUPPORT)
    held = {(p.content_type.app_label, p.codename) for p in group.permissions.select_related("content_type")}
    assert held == set(SUPPORT_PERMISSIONS)


def test_support_cancels_jobs_replays_deliveries_and_views_but_edits_nothing_else(make_user, user, make_job):
    agent = make_user("sam")
    agent.is_staff = True
    agent.save()
    agent.groups.add(Group.objects.get(name=SUPPORT))
    browser = _browser(agent)
    job = make_job("queued")
    endpoint = webhooks.endpoint_create(
        user_id=user.pk, name="mine", url="https://example.com/hook", event_types=["video.cancelled"]
    )

    for page in ("/admin/jobs/job/", f"/admin/jobs/job/{job.pk}/change/", "/admin/auth/user/", "/admin/jobs/apikey/"):
        assert browser.get(page).status_code == 200, page
    answer = browser.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [job.pk]})
    assert answer.status_code == 302
    job.refresh_from_db()
    assert job.state == State.CANCELLED

    delivery = WebhookDelivery.objects.get(endpoint=endpoint)  # the cancel's delivery
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.DEAD)
    answer = browser.post(
        "/admin/notifications/webhookdelivery/", {"action": "replay", "_selected_action": [delivery.pk]}
    )
    assert answer.status_code == 302
    assert WebhookDelivery.objects.get(pk=delivery.pk).status == WebhookDelivery.Status.PENDING
    change = browser.get(f"/admin/notifications/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert 'name="body"' not in change and 'name="status"' not in change  # every field read-only

    assert browser.get(f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/").status_code == 200
    edit = {"name": "x", "url": "https://elsewhere.example/", "event_types": '["video.cancelled"]'}
    assert browser.post(f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/", edit).status_code == 403
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).url == "https://example.com/hook"
    for refused in ("/admin/jobs/apikey/add/", "/admin/moderation/review/", "/admin/jobs/runner/"):
        assert browser.get(refused).status_code == 403, refused
    assert browser.post(f"/admin/auth/user/{user.pk}/change/", {"username": "renamed"}).status_code == 403


def test_the_admin_names_every_model_in_plain_english(admin_client):
    """Django's default plural adds an "s": "Credit entrys", "Webhook deliverys", "Recent blockss"."""
    from django.apps import apps

    odd = [
        m._meta.verbose_name_plural
        for m in apps.get_models()
        if m._meta.app_label in ("jobs", "moderation", "notifications")
        and re.search(r"(?<![aeiou])ys$|ss$|^sched |^api ", str(m._meta.verbose_name_plural))
    ]
    assert odd == []
    index = admin_client.get("/admin/").content.decode()
    assert "Operations dashboard" in index and "Credit entries" in index and "Webhook deliveries" in index
