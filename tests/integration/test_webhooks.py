"""Webhooks: managed with the official SDK's `client.webhooks`, delivered signed per Standard Webhooks to a real
loopback receiver and verified with the SDK's own `unwrap`; retried once per failure under one webhook-id;
refused (never connected) when the receiver's host resolves to a private address; rotation signs with both
secrets during the grace period."""

from __future__ import annotations

import datetime as dt
import json
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import openai
import pytest
from django.db import transaction
from django.utils import timezone
from django_q.models import OrmQ

from jobs.accounts import api_key_create
from jobs.services.transitions import locked, transition
from notifications import webhooks
from notifications.models import Notification, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.support.cpu_tasks import run_queued

pytestmark = pytest.mark.django_db


class Receiver:
    """A loopback HTTP receiver answering each POST with the next scripted status (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"receiver says no " * 500)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks?src=videogen"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": ["127.0.0.1/32"], "RETRY_SCHEDULE": [1.0] * 8}
    made: list[Receiver] = []

    def make(statuses=None) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def sdk(user, wsgi_app):
    app, _ = wsgi_app
    warnings.simplefilter("ignore", DeprecationWarning)
    http = httpx2.Client(transport=httpx2.WSGITransport(app=app))
    return openai.OpenAI(
        api_key=api_key_create(user_id=user.pk), base_url="http://localhost/v1", max_retries=0, http_client=http
    )


def _run_tasks() -> list[str]:
    return run_queued("notifications.tasks.deliver_webhook")


def _due_now() -> None:
    WebhookDelivery.objects.filter(status="pending").update(next_attempt_at=timezone.now() - dt.timedelta(seconds=1))


def test_the_sdk_manages_endpoints(sdk, receiver, delivery_role):
    rx = receiver()
    created = sdk.webhooks.create(event_types=["video.completed", "video.failed"], name="mine", url=rx.url)
    assert created.id.startswith("we_") and created.signing_secret.startswith("whsec_")
    assert created.signing_secret_hint.endswith(created.signing_secret[-4:])
    got = sdk.webhooks.retrieve(created.id)
    assert (got.name, got.url, sorted(got.event_types)) == ("mine", rx.url, ["video.completed", "video.failed"])
    assert "signing_secret" not in got.model_dump(exclude_none=True)  # shown only on create and rotation
    updated = sdk.webhooks.update(created.id, event_types=["video.completed"], name="renamed")
    assert (updated.name, updated.event_types) == ("renamed", ["video.completed"])
    second = sdk.webhooks.create(event_types=["video.cancelled"], name="other", url=rx.url)
    page = sdk.webhooks.list(limit=1)
    assert [e.id for e in page.data] == [second.id] and page.has_more
    assert [e.id for e in sdk.webhooks.list(limit=10)] == [second.id, created.id]  # auto-pagination too
    rotated = sdk.webhooks.rotate_secret(created.id)
    assert rotated.signing_secret != created.signing_secret
    types = sdk.webhooks.event_types.list()
    assert "video.completed" in types.data and "video.progress" not in types.data
    tested = sdk.webhooks.test(created.id, event_type="video.completed")
    assert (tested.status_code, tested.success, tested.webhook_endpoint_id) == (200, True, created.id)
    headers, body = rx.requests[-1]
    assert sdk.webhooks.unwrap(body, headers, secret=rotated.signing_secret).type == "video.completed"
    deleted = sdk.webhooks.delete(second.id)
    assert deleted.deleted and deleted.object == "webhook_endpoint.deleted"
    with pytest.raises(openai.NotFoundError):
        sdk.webhooks.retrieve(second.id)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://user:pw@example.com/"}, "url"),
        ({"event_types": ["video.exploded"]}, "event_types"),
        ({"event_types": []}, "event_types"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_bad_endpoints_are_refused_with_their_param(api, fields, param):
    body = {"name": "n", "url": "https://example.com/hook", "event_types": ["video.completed"], **fields}
    resp = api.post("/v1/webhook_endpoints", body, format="json")
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param
    assert not WebhookEndpoint.objects.exists()


def test_a_finished_video_is_delivered_signed_and_the_sdk_verifies_it(sdk, user, receiver, make_job):
    rx = receiver()
    endpoint = sdk.webhooks.create(event_types=["video.completed"], name="n", url=rx.url)
    job = make_job("reviewing", attempt=1)
    with transaction.atomic():  # output moderation passed (its own tests): the transition it makes
        transition(locked(job.pk), "succeeded", reason="review passed", actor="moderation", completed_at=timezone.now())
    assert WebhookDelivery.objects.count() == 1  # the outbox row came with the notification
    assert _run_tasks() == ["delivered"]
    headers, body = rx.requests[0]
    event = sdk.webhooks.unwrap(body, headers, secret=endpoint.signing_secret)
    assert (event.type, event.data.id) == ("video.completed", job.public_id)
    assert json.loads(body)["data"]["status"] == "completed"  # a terminal event carries the video object
    assert headers["webhook-id"] == event.id
    assert headers["host"] == rx.url.split("/")[2]  # the name asked for, though the connection went to its address
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk.webhooks.unwrap(body, headers, secret="whsec_" + "A" * 32)
    assert _run_tasks() == []  # nothing more to send
    log = sdk.get(f"/webhook_endpoints/{endpoint.id}/deliveries", cast_to=object)
    assert log["data"][0]["status"] == "delivered" and log["data"][0]["attempts"][0]["status_code"] == 200


def test_an_endpoint_failing_five_times_gets_one_logical_delivery_in_six_attempts(user, receiver, settings):
    rx = receiver([500, 502, 503, 404, 500])
    endpoint = webhooks.endpoint_create(user_id=user.pk, name="n", url=rx.url, event_types=["video.failed"])
    note = _notify(user, "video.failed")
    outcomes = _run_tasks()
    for _ in range(5):
        _due_now()
        assert webhooks.enqueue_due() == 1
        outcomes += _run_tasks()
    assert outcomes == ["retrying"] * 5 + ["delivered"]
    ids = {headers["webhook-id"] for headers, _ in rx.requests}
    assert len(rx.requests) == 6 and len(ids) == 1
    delivery = WebhookDelivery.objects.get(notification=note)
    assert (delivery.status, delivery.attempts) == ("delivered", 6)
    log = list(WebhookAttempt.objects.filter(delivery=delivery).values_list("number", "status_code"))
    assert log == [(1, 500), (2, 502), (3, 503), (4, 404), (5, 500), (6, 200)]
    assert len(WebhookAttempt.objects.get(delivery=delivery, number=1).response_excerpt) == 2048  # bounded
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None  # the success reset it


@pytest.mark.django_db(transaction=True)  # the owner's delete commits from another connection
def test_an_endpoint_deleted_while_its_delivery_is_on_the_wire_ends_it_quietly(user, settings):
    """The owner deletes the endpoint while the receiver is still answering: the attempt's answer has nowhere to go."""
    holding = threading.Event()
    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            holding.set()
            release.wait(10)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": ["127.0.0.1/32"]}
        url = f"http://127.0.0.1:{server.server_port}/"
        endpoint = webhooks.endpoint_create(user_id=user.pk, name="n", url=url, event_types=["video.failed"])
        _notify(user, "video.failed")
        (delivery,) = WebhookDelivery.objects.all()
        deleter = threading.Thread(
            target=lambda: (holding.wait(10), WebhookEndpoint.objects.filter(pk=endpoint.pk).delete(), release.set())
        )
        deleter.start()
        assert webhooks.deliver(delivery_id=delivery.pk, attempts=0) == "gone"
        deleter.join()
        assert not WebhookAttempt.objects.exists()
    finally:
        server.shutdown()
        server.server_close()


def test_a_duplicate_task_sends_nothing_more(user, receiver):
    rx = receiver()
    webhooks.endpoint_create(user_id=user.pk, name="n", url=rx.url, event_types=["video.failed"])
    _notify(user, "video.failed")
    row = OrmQ.objects.get()
    OrmQ.objects.create(key=row.key, payload=row.payload, lock=row.lock)  # the broker delivered it twice
    assert sorted(_run_tasks()) == ["delivered", "skipped"]
    assert len(rx.requests) == 1


def test_the_last_failure_is_dead_and_can_be_replayed(api, user, receiver, settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "RETRY_SCHEDULE": [1.0]}
    rx = receiver([500, 500])
    endpoint = webhooks.endpoint_create(user_id=user.pk, name="n", url=rx.url, event_types=["video.failed"])
    _notify(user, "video.failed")
    _run_tasks()
    _due_now()
    webhooks.enqueue_due()
    assert _run_tasks() == ["dead"]
    delivery = WebhookDelivery.objects.get()
    resp = api.post(f"/v1/webhook_endpoints/{endpoint.public_id}/deliveries/{delivery.event_id}/replay")
    assert resp.status_code == 200 and resp.json()["status"] == "pending"
    assert _run_tasks() == ["delivered"]
    assert {h["webhook-id"] for h, _ in rx.requests} == {delivery.event_id}  # the same message, a third time


def test_a_410_disables_the_endpoint_and_tells_its_owner(user, receiver):
    from django.core import mail

    user.email = "owner@example.com"
    user.save()
    rx = receiver([410])
    endpoint = webhooks.endpoint_create(user_id=user.pk, name="n", url=rx.url, event_types=["video.failed"])
    _notify(user, "video.failed")
    assert _run_tasks() == ["dead"]
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is not None and "410" in endpoint.disabled_reason
    told = Notification.objects.get(user=user, event="webhook_endpoint.disabled")
    assert told.payload["id"] == endpoint.public_id
    assert run_queued("notifications.tasks.send_email") == ["sent"]  # by email too
    assert (
        mail.outbox[0].subject.startswith("A webhook endpoint of yours was disabled") and "410" in mail.outbox[0].body
    )
    _notify(user, "video.failed")  # a disabled endpoint gets nothing new
    assert WebhookDelivery.objects.count() == 1


def test_an_endpoint_failing_longer_than_the_limit_is_disabled_and_a_success_resets_the_clock(user, receiver, settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "DISABLE_AFTER_SECONDS": 3600}
    rx = receiver([500])
    endpoint = webhooks.endpoint_create(user_id=user.pk, name="n", url=rx.url, event_types=["video.failed"])
    _notify(user, "video.failed")
    assert _run_tasks() == ["retrying"]  # failing, but not for long: still enabled
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is None and endpoint.failing_since is not None
    _due_now()
    assert webhooks.enqueue_due() == 1
    assert _run_tasks() == ["delivered"]  # the second answer is a 200: the clock starts again
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None

    rx.statuses = [500, 500]
    _notify(user, "video.failed")
    assert _run_tasks() == ["retrying"]
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - dt.timedelta(seconds=3601))
    _due_now()
    assert webhooks.enqueue_due() == 1
    assert _run_tasks() == ["dead"]  # failing for over an hour now: disabled, its delivery dead
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is not None and "failed for over 1 hours" in endpoint.disabled_reason
    assert Notification.objects.filter(user=user, event="webhook_endpoint.disabled").count() == 1


def test_a_receiver_on_a_private_address_is_refused_and_never_connected(user, settings):
    rx = Receiver()
    try:
        settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": []}
        url = rx.url.replace("127.0.0.1", "localhost")  # a name that resolves to loopback
        webhooks.endpoint_create(user_id=user.pk, name="n", url=url, event_types=["video.failed"])
        _notify(user, "video.failed")
        assert _run_tasks() == ["retrying"]
        attempt = WebhookAttempt.objects.get()
        assert attempt.status_code is None and attempt.error.startswith("refused: the URL's host cannot")
        assert "127.0.0.1" in attempt.detail  # for staff; the owner's reason names no address
        assert rx.requests == []
    finally:
        rx.close()


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fc00::1", "0.0.0.0", "::ffff:10.0.0.1"]
)
def test_private_and_special_addresses_are_not_allowed(address, settings):
    from notifications import outbound

    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": []}
    assert not outbound.address_allowed(address)
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": ["10.0.0.0/8"]}
    assert outbound.address_allowed("10.1.2.3") and not outbound.address_allowed("192.168.1.1")


def test_during_a_rotation_both_secrets_verify_and_after_it_only_the_new(user, receiver, settings):
    from standardwebhooks import Webhook, WebhookVerificationError

    rx = receiver()
    endpoint = webhooks.endpoint_create(user_id=user.pk, name="n", url=rx.url, event_types=["video.failed"])
    old = endpoint.secret
    webhooks.endpoint_rotate_secret(endpoint=endpoint)
    _notify(user, "video.failed")
    _run_tasks()
    headers, body = rx.requests[-1]
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (old, endpoint.secret):
        Webhook(secret).verify(body, headers)
    endpoint.previous_secret_expires_at = timezone.now() - dt.timedelta(seconds=1)  # the grace period is over
    endpoint.save()
    _notify(user, "video.failed")
    _run_tasks()
    headers, body = rx.requests[-1]
    Webhook(endpoint.secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, headers)


def _notify(user, event: str) -> Notification:
    from notifications.services import notification_create

    with transaction.atomic():
        return notification_create(
            user_id=user.pk, job_id=None, event=event, payload={"id": "video_x", "object": "video"}
        )


@pytest.mark.e2e
def test_real_roles_deliver_a_completion_through_five_failures_under_one_webhook_id(platform_factory):
    """web, dispatcher (the retry sweep), cpu cluster (the deliveries) and a gpu runner, as deployed."""
    rx = Receiver([500, 503, 502, 500, 504])
    try:
        plat = platform_factory(
            WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32", WEBHOOK_RETRY_SCHEDULE="0.3,0.3,0.3,0.3,0.3,0.3"
        )
        from jobs.accounts import ensure_user

        user, _ = ensure_user(username="hook-user")
        warnings.simplefilter("ignore", DeprecationWarning)
        client = openai.OpenAI(base_url=plat.base_url + "/v1", api_key=api_key_create(user_id=user.pk), max_retries=0)
        endpoint = client.webhooks.create(event_types=["video.completed"], name="e2e", url=rx.url)
        plat.wait_for_runner()
        video = client.videos.create_and_poll(prompt="a hooked fox", poll_interval_ms=200)
        assert video.status == "completed", plat.logs()
        deadline = timezone.now() + dt.timedelta(seconds=60)
        while len(rx.requests) < 6 and timezone.now() < deadline:
            threading.Event().wait(0.2)
        assert len(rx.requests) == 6, plat.logs()
        assert len({h["webhook-id"] for h, _ in rx.requests}) == 1
        event = client.webhooks.unwrap(rx.requests[-1][1], rx.requests[-1][0], secret=endpoint.signing_secret)
        assert (event.type, event.data.id) == ("video.completed", video.id)
        log = client.get(f"/webhook_endpoints/{endpoint.id}/deliveries", cast_to=object)["data"]
        assert [a["status_code"] for a in log[0]["attempts"]] == [500, 503, 502, 500, 504, 200]
        assert log[0]["status"] == "delivered"
    finally:
        rx.close()


def test_staff_see_deliveries_and_their_attempts_replay_them_and_never_see_a_secret(client, make_user, receiver):
    from django.contrib.auth.models import Permission

    owner = make_user("hook-owner")
    rx = receiver([500])
    endpoint = webhooks.endpoint_create(user_id=owner.pk, name="n", url=rx.url, event_types=["video.failed"])
    _notify(owner, "video.failed")
    assert _run_tasks() == ["retrying"]
    delivery = WebhookDelivery.objects.get()

    viewer = make_user("hook-viewer")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_webhookdelivery", "view_webhookendpoint"])
    )
    client.force_login(viewer)
    page = client.get(f"/admin/notifications/webhookdelivery/{delivery.pk}/change/")
    assert page.status_code == 200 and b"500" in page.content and delivery.event_id.encode() in page.content
    ep_page = client.get(f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/")
    assert ep_page.status_code == 200 and endpoint.secret.encode() not in ep_page.content
    # Viewing is not replaying.
    resp = client.post("/admin/notifications/webhookdelivery/", {"action": "replay", "_selected_action": [delivery.pk]})
    assert not OrmQ.objects.exists() and resp.status_code in (200, 302)

    viewer.user_permissions.add(Permission.objects.get(codename="change_webhookdelivery"))
    client.force_login(viewer)
    client.post("/admin/notifications/webhookdelivery/", {"action": "replay", "_selected_action": [delivery.pk]})
    assert _run_tasks() == ["delivered"]
    assert len(rx.requests) == 2


@pytest.mark.e2e
def test_the_settings_page_manages_endpoints_shows_deliveries_replays_and_keeps_email_choices(platform_factory):
    import shutil

    from playwright.sync_api import expect, sync_playwright

    from jobs.accounts import ensure_user
    from tests.e2e.test_e2e import CHROMIUM, CHROMIUM_ARGS

    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    rx = Receiver([500])
    try:
        plat = platform_factory(gpu=False, WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32")
        ensure_user(username="settings-user", password="pw-settings")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(plat.base_url + "/settings")
            page.fill("input[name=username]", "settings-user")
            page.fill("input[name=password]", "pw-settings")
            page.click("button[type=submit]")
            expect(page.locator("#prefs input[name='video.completed']")).to_be_checked(timeout=15_000)
            page.uncheck("#prefs input[name='video.completed']")
            expect(page.locator("#prefs-saved")).to_be_visible()

            page.fill("#new-endpoint input[name=name]", "my receiver")
            page.fill("#new-endpoint input[name=url]", rx.url)
            page.click("#new-endpoint button[type=submit]")
            expect(page.locator("#secret")).to_contain_text("whsec_")
            endpoint = page.locator("li.endpoint").first
            endpoint.get_by_text("Send test").click()  # the receiver answers 500 first
            expect(endpoint.locator(".result")).to_contain_text("failed (500)")
            expect(endpoint.locator(".delivery .status")).to_have_text("dead")
            endpoint.get_by_text("Replay").click()  # the same event again; a cpu worker sends it
            expect(endpoint.locator(".delivery .status")).to_have_text("pending")
            deadline = timezone.now() + dt.timedelta(seconds=30)
            while len(rx.requests) < 2 and timezone.now() < deadline:
                threading.Event().wait(0.2)
            endpoint.get_by_text("Deliveries").click()
            expect(endpoint.locator(".delivery .status")).to_have_text("delivered", timeout=10_000)
            assert len({h["webhook-id"] for h, _ in rx.requests}) == 1 and len(rx.requests) == 2

            page.reload()
            expect(page.locator("#prefs input[name='video.failed']")).to_be_checked(timeout=15_000)
            expect(page.locator("#prefs input[name='video.completed']")).not_to_be_checked()
            expect(page.locator("li.endpoint")).to_have_count(1)
            browser.close()
    finally:
        rx.close()
