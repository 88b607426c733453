"""One user's webhook receivers cannot hurt anyone else: an attempt ends at its wall-clock deadline however slowly a
receiver drips its answer; at most WEBHOOK_MAX_IN_FLIGHT_PER_USER of a user's attempts are on the wire (the rest
wait, none is lost); `/test` is sent by the delivery role, bounded per user and in time; what a receiver answers
is stored as clean text (a NUL byte included) and an attempt's failure outcome is written when it is claimed;
owners see generic reasons, staff the detail; IPv6 forms carrying a private IPv4 address are refused; the retry
schedule lasts at least 24 hours. Every receiver is a real HTTP server on loopback."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import OrmQ

from harness.platform import ROOT
from jobs.accounts import api_key_create
from notifications import outbound, webhooks
from notifications.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.support.cpu_tasks import run_queued

pytestmark = pytest.mark.django_db


class Server:
    """A loopback receiver: `answer(handler)` writes the whole response itself. Counts the requests it is
    answering at once."""

    def __init__(self, answer) -> None:
        self.active = 0
        self.most = 0
        self.count = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with server.lock:
                    server.active += 1
                    server.count += 1
                    server.most = max(server.most, server.active)
                try:
                    answer(self, server)
                except OSError:
                    pass  # the sender hung up (its deadline)
                finally:
                    with server.lock:
                        server.active -= 1
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def drip(where: str, every: float = 1.0, lasting: float = 30.0):
    """A receiver that drips its answer one byte every `every` seconds, for `lasting` seconds at most: the status
    line itself ("headers") or, after complete headers, the body ("body")."""

    def answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
        out = handler.wfile
        if where == "body":
            out.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            out.flush()
        script = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" if where == "headers" else b"x" * 100000
        until = time.monotonic() + lasting
        for byte in script:
            if time.monotonic() > until or server.release.is_set():
                return
            out.write(bytes([byte]))
            out.flush()
            server.release.wait(every)

    return answer


def plain(status: int, body: bytes = b"ok"):
    def answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def holding(handler: BaseHTTPRequestHandler, server: Server) -> None:
    """Answers 200 once the test releases it (15 s at most)."""
    server.release.wait(15)
    plain(200)(handler, server)


@pytest.fixture
def servers(settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": ["127.0.0.1/32"], "RETRY_SCHEDULE": [1.0, 1.0]}
    made: list[Server] = []

    def make(answer) -> Server:
        made.append(Server(answer))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _notify(user, event: str = "video.failed"):
    from notifications.services import notification_create

    with transaction.atomic():
        return notification_create(user_id=user.pk, job_id=None, event=event, payload={"id": "video_x"})


def _endpoint(user, url: str) -> WebhookEndpoint:
    return webhooks.endpoint_create(user_id=user.pk, name="n", url=url, event_types=["video.failed"])


# --- the deadline ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_dripping_receiver_is_cut_at_the_attempt_deadline(user, servers, settings, where):
    """A byte every second keeps every read alive: only a deadline on the whole attempt ends it."""
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ATTEMPT_DEADLINE_SECONDS": 2.0}
    rx = servers(drip(where))
    _endpoint(user, rx.url)
    _notify(user)
    started = time.monotonic()
    assert run_queued(webhooks.SEND_TASK) == ["retrying"]
    took = time.monotonic() - started
    assert took < 15, f"the attempt took {took:.1f}s against a 2 s deadline (the receiver drips for 30 s)"
    attempt = WebhookAttempt.objects.get()
    assert attempt.finished_at is not None and attempt.status_code is None
    assert attempt.error == outbound.NO_ANSWER and "deadline" in attempt.detail


def test_the_deadline_is_shorter_than_the_claim_and_settings_refuse_otherwise(user, servers, settings):
    """The sweep re-sends a delivery whose claim ran out: an attempt still on the wire then would be sent twice."""
    assert settings.WEBHOOKS["ATTEMPT_DEADLINE_SECONDS"] < webhooks.IN_FLIGHT_SECONDS
    rx = servers(plain(200))
    _endpoint(user, rx.url)
    _notify(user)
    (delivery,) = WebhookDelivery.objects.all()
    before = timezone.now()
    claimed = webhooks._claim(delivery_id=delivery.pk, attempts=0)  # the worker's claim, then it stops
    assert not isinstance(claimed, str)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at >= before + dt.timedelta(seconds=webhooks.IN_FLIGHT_SECONDS)
    assert webhooks.enqueue_due() == 0  # not due while the attempt may be on the wire
    env = {**os.environ, "WEBHOOK_ATTEMPT_DEADLINE_SECONDS": "60", "DJANGO_SETTINGS_MODULE": "videogen.settings"}
    proc = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode != 0 and "WEBHOOK_ATTEMPT_DEADLINE_SECONDS" in proc.stderr


# --- the per-user bound -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the attempts run in threads of their own, with their own connections
def test_one_user_has_at_most_the_bound_on_the_wire_the_rest_waits_and_others_pass(make_user, servers, settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "MAX_IN_FLIGHT_PER_USER": 2, "ATTEMPT_DEADLINE_SECONDS": 20.0}
    slow, fast = servers(holding), servers(plain(200))
    busy, other = make_user("many-endpoints"), make_user("someone-else")
    for _ in range(3):
        _endpoint(busy, slow.url)
    _endpoint(other, fast.url)
    _notify(busy)
    _notify(other)
    mine = list(WebhookDelivery.objects.filter(endpoint__user=busy).values_list("pk", flat=True))
    outcomes: dict[int, str] = {}

    def attempt(pk: int) -> None:
        try:
            outcomes[pk] = webhooks.deliver(delivery_id=pk, attempts=0)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(pk,)) for pk in mine]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while (len(outcomes) < 1 or slow.active < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(outcomes.values()) == ["deferred"], outcomes  # two on the wire, the third waits its turn
    assert slow.active == 2
    (deferred,) = outcomes
    waiting = WebhookDelivery.objects.get(pk=deferred)
    assert waiting.status == "pending" and waiting.attempts == 0 and waiting.next_attempt_at > timezone.now()
    assert not WebhookAttempt.objects.filter(delivery_id=deferred).exists()
    # Another user's delivery goes through meanwhile.
    theirs = WebhookDelivery.objects.get(endpoint__user=other)
    assert webhooks.deliver(delivery_id=theirs.pk, attempts=0) == "delivered"
    slow.release.set()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values()) == ["deferred", "delivered", "delivered"]
    # The deferred one is not lost: the sweep sends it when its turn comes.
    OrmQ.objects.all().delete()  # the outbox's messages: this test ran their attempts itself
    WebhookDelivery.objects.filter(pk=deferred).update(next_attempt_at=timezone.now())
    assert webhooks.enqueue_due() == 1
    assert run_queued(webhooks.SEND_TASK) == ["delivered"]
    assert slow.most == 2 and slow.count == 3


def test_attempts_whose_answer_was_never_written_free_their_place_after_the_deadline(user, servers, settings):
    """A worker that loses its database connection mid-attempt leaves the attempt unfinished. Past the deadline and
    the answer's write it is off the wire: it must not hold its owner's place for the whole claim (the owner's
    every other delivery was deferred for a minute after two such losses)."""
    settings.WEBHOOKS = {**settings.WEBHOOKS, "MAX_IN_FLIGHT_PER_USER": 2, "ATTEMPT_DEADLINE_SECONDS": 5.0}
    rx = servers(plain(200))
    for _ in range(3):
        _endpoint(user, rx.url)
    _notify(user)
    lost, lost_too, fresh = WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True)
    for pk in (lost, lost_too):
        assert not isinstance(webhooks._claim(delivery_id=pk, attempts=0), str)  # claimed, then the write is lost
    assert webhooks.in_flight(user.pk) == 2
    assert webhooks.deliver(delivery_id=fresh, attempts=0) == "deferred"  # they may still be on the wire
    past = timezone.now() - dt.timedelta(seconds=5.0 + webhooks.WRITE_SLACK_SECONDS + 1)
    assert past > timezone.now() - dt.timedelta(seconds=webhooks.IN_FLIGHT_SECONDS)  # still within the claim
    WebhookAttempt.objects.update(started_at=past)
    assert webhooks.in_flight(user.pk) == 0
    assert not webhooks.on_the_wire(WebhookAttempt.objects.first())
    assert webhooks.deliver(delivery_id=fresh, attempts=0) == "delivered"
    assert rx.count == 1


@pytest.mark.django_db(transaction=True)  # the attempt runs in a thread with a connection the receiver can end
def test_an_answer_whose_write_lost_its_connection_is_written_on_a_new_one(user, servers):
    """The worker's connection ends while its attempt is on the wire (a restart, a failover): the answer is still
    written, so a delivered event is not sent again at the next retry and the place is freed at once."""
    worker: dict[str, object] = {}

    def answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
        with connection.cursor() as cursor:  # the receiver's thread: a connection of its own
            cursor.execute("SELECT pg_terminate_backend(%s)", [worker["pid"]])
        connection.close()
        plain(200)(handler, server)

    rx = servers(answer)
    _endpoint(user, rx.url)
    _notify(user)
    (delivery,) = WebhookDelivery.objects.all()

    def run() -> None:
        try:
            connection.ensure_connection()
            worker["pid"] = connection.connection.info.backend_pid
            worker["outcome"] = webhooks.deliver(delivery_id=delivery.pk, attempts=0)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert worker.get("outcome") == "delivered"
    attempt = WebhookAttempt.objects.get()
    assert attempt.finished_at is not None and attempt.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and rx.count == 1


# --- clean text, and the outcome written at the claim ------------------------------------------------------


def test_a_nul_byte_in_the_answer_is_stored_clean_and_the_delivery_moves_on(user, servers):
    """Postgres refuses NUL in text: the attempt's row used to fail after `attempts` was committed."""
    answers = iter([plain(500, b"bad\x00news\x01\x7f"), plain(200, b"\x00ok\x00")])
    rx = servers(lambda handler, server: next(answers)(handler, server))
    _endpoint(user, rx.url)
    _notify(user)
    assert run_queued(webhooks.SEND_TASK) == ["retrying"]
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    assert webhooks.enqueue_due() == 1
    assert run_queued(webhooks.SEND_TASK) == ["delivered"]
    log = list(WebhookAttempt.objects.values_list("number", "status_code", "response_excerpt"))
    assert log == [(1, 500, "badnews"), (2, 200, "ok")]


def test_a_worker_that_stops_mid_attempt_still_moves_the_delivery_to_dead(user, servers, settings):
    """The claim writes the attempt's row and the failure's outcome (the next try, the endpoint failing) in one
    transaction: nothing more need ever be written for the retries and the dead letter to happen."""
    settings.WEBHOOKS = {**settings.WEBHOOKS, "RETRY_SCHEDULE": [1.0]}
    rx = servers(plain(200))
    endpoint = _endpoint(user, rx.url)
    _notify(user)
    (delivery,) = WebhookDelivery.objects.all()
    for number in (1, 2):
        assert not isinstance(webhooks._claim(delivery_id=delivery.pk, attempts=number - 1), str)
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("pending", number)
        assert WebhookAttempt.objects.get(number=number).error == webhooks.UNFINISHED
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())  # its claim ran out
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None
    assert webhooks.deliver(delivery_id=delivery.pk, attempts=2) == "dead"
    assert rx.count == 0


# --- what owners and staff see -------------------------------------------------------------------------------


def test_owners_see_a_generic_reason_and_staff_the_detail(user, api, client, make_user, servers, settings):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: a connect error, which would tell a prober the port is closed
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": []}
    refused = _endpoint(user, "http://localhost:9/")  # a name for a loopback address
    _notify(user)
    assert run_queued(webhooks.SEND_TASK) == ["retrying"]
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": ["127.0.0.1/32"]}
    unreachable = webhooks.endpoint_create(
        user_id=user.pk, name="n", url=f"http://127.0.0.1:{port}/", event_types=["video.cancelled"]
    )
    _notify(user, "video.cancelled")
    assert run_queued(webhooks.SEND_TASK) == ["retrying"]
    shown = []
    for endpoint in (refused, unreachable):
        body = api.get(f"/v1/webhook_endpoints/{endpoint.public_id}/deliveries").json()
        shown.append(body["data"][0]["attempts"][0]["error"])
    assert shown == [f"refused: {outbound.ADDRESS_NOT_ALLOWED}", outbound.NO_ANSWER]
    for text in shown:
        assert "127.0.0.1" not in text and "::1" not in text and str(port) not in text and "Connect" not in text

    staff = make_user("support")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    details = {}
    for endpoint in (refused, unreachable):
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        page = client.get(f"/admin/notifications/webhookdelivery/{delivery.pk}/change/")
        assert page.status_code == 200
        details[endpoint.pk] = page.content.decode()
    assert "127.0.0.1" in details[refused.pk] and "ConnectError" in details[unreachable.pk]


# --- addresses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of the cloud metadata address
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (stored inverted)
        "::10.0.0.1",  # IPv4-compatible
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "::ffff:169.254.169.254",
    ],
)
def test_ipv6_forms_of_a_private_ipv4_address_are_refused(address, settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": []}
    assert not outbound.address_allowed(address)


def test_a_6to4_address_of_a_public_ipv4_address_is_allowed(settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": []}
    assert outbound.address_allowed("2002:808:808::1")  # 8.8.8.8
    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOWED_NETWORKS": ["10.0.0.0/8"]}
    assert outbound.address_allowed("2002:a00:1::1")  # the operator allows 10.0.0.0/8


# --- the retry schedule -----------------------------------------------------------------------------------


def test_the_default_retries_last_at_least_24_hours_whatever_the_jitter(settings):
    schedule = settings.WEBHOOKS["RETRY_SCHEDULE"]
    least, most = webhooks.retry_span(schedule)
    assert least >= 24 * 3600, f"the default schedule may end after {least / 3600:.1f} h"
    assert most <= 30 * 3600
    for attempts in range(1, len(schedule) + 1):
        for _ in range(200):
            delay = webhooks._retry_delay(attempts)
            assert schedule[attempts - 1] <= delay <= schedule[attempts - 1] * webhooks.JITTER[1]
    assert webhooks._retry_delay(len(schedule) + 1) is None


# --- /test, through the delivery role --------------------------------------------------------------------------


@pytest.fixture
def sdk_for(wsgi_app):
    import httpx2
    import openai

    app, _ = wsgi_app
    warnings.simplefilter("ignore", DeprecationWarning)

    def make(user):
        http = httpx2.Client(transport=httpx2.WSGITransport(app=app))
        key = api_key_create(user_id=user.pk)
        return openai.OpenAI(api_key=key, base_url="http://localhost/v1", max_retries=0, http_client=http)

    return make


@pytest.mark.django_db(transaction=True)
def test_the_test_call_is_sent_by_the_delivery_role_bounded_per_user_and_in_time(
    make_user, servers, settings, sdk_for, delivery_role
):
    """The delivery role's deadline is 3 s (the delivery_role fixture)."""
    import openai

    nul, dripping = servers(plain(200, b"\x00\x00")), servers(drip("headers"))
    owner = make_user("tester")
    sdk = sdk_for(owner)
    to_nul = sdk.webhooks.create(event_types=["video.completed"], name="nul", url=nul.url)
    to_drip = sdk.webhooks.create(event_types=["video.completed"], name="drip", url=dripping.url)
    tested = sdk.webhooks.test(to_nul.id, event_type="video.completed")  # a NUL answer: never a 500
    assert (tested.status_code, tested.success) == (200, True)

    started = time.monotonic()
    tested = sdk.webhooks.test(to_drip.id, event_type="video.completed")  # cut at the role's 3 s deadline
    assert (tested.status_code, tested.success) == (0, False) and time.monotonic() - started < 12
    delivery = WebhookDelivery.objects.get(event_id=tested.model_extra["delivery_id"])
    assert delivery.attempt_log.get().error == outbound.NO_ANSWER

    # The answer not in time: a 504 in the API's format, and the test is still running for its owner.
    settings.WEBHOOKS = {**settings.WEBHOOKS, "TEST_WAIT_SECONDS": 0.5}
    with pytest.raises(openai.APIStatusError) as waited:
        sdk.webhooks.test(to_drip.id, event_type="video.completed")
    assert waited.value.status_code == 504 and waited.value.body["code"] == "webhook_test_timeout"
    with pytest.raises(openai.RateLimitError) as bounded:
        sdk.webhooks.test(to_nul.id, event_type="video.completed")
    assert bounded.value.body["code"] == "webhook_test_in_progress"
    other = sdk_for(make_user("another-tester"))  # another user is not bounded by it
    mine = other.webhooks.create(event_types=["video.completed"], name="nul", url=nul.url)
    settings.WEBHOOKS = {**settings.WEBHOOKS, "TEST_WAIT_SECONDS": 15.0}
    assert other.webhooks.test(mine.id, event_type="video.completed").success


# --- the real roles -------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_dripping_receiver_holds_neither_the_web_role_nor_another_users_deliveries(platform_factory):
    """web, dispatcher, cpu and delivery roles as deployed: one user's dripping receiver behind three endpoints,
    its deliveries and several concurrent `/test` calls, while another user reads and gets their own webhook."""
    import httpx

    from jobs.accounts import ensure_user
    from jobs.models import RoleHeartbeat

    dripping, fast = Server(drip("headers", every=1.0, lasting=60)), Server(plain(200))
    try:
        plat = platform_factory(
            gpu=False,
            WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32",
            WEBHOOK_ATTEMPT_DEADLINE_SECONDS="3",
            WEBHOOK_TEST_WAIT_SECONDS="8",
            WEBHOOK_RETRY_SCHEDULE="1,1",
        )
        deadline = time.monotonic() + 90
        while not RoleHeartbeat.objects.filter(role="delivery").exists():
            plat.check_alive()
            assert time.monotonic() < deadline, plat.logs()
            time.sleep(0.2)
        slow_user, _ = ensure_user(username="slow-receiver")
        other, _ = ensure_user(username="other-user")
        slow_key, other_key = api_key_create(user_id=slow_user.pk), api_key_create(user_id=other.pk)
        slow_endpoints = [_endpoint(slow_user, dripping.url) for _ in range(3)]
        _endpoint(other, fast.url)

        tests: list[tuple[int, float, dict]] = []

        def test_call(endpoint: WebhookEndpoint) -> None:
            started = time.monotonic()
            resp = httpx.post(
                f"{plat.base_url}/v1/webhook_endpoints/{endpoint.public_id}/test",
                json={"event_type": "video.failed"},
                headers={"Authorization": f"Bearer {slow_key}"},
                timeout=60,
            )
            tests.append((resp.status_code, time.monotonic() - started, resp.json()))

        callers = [threading.Thread(target=test_call, args=(slow_endpoints[i % 3],)) for i in range(4)]
        for t in callers:
            t.start()
        for _ in range(3):
            _notify(slow_user)  # nine deliveries to the dripping receiver
        connection.close()

        # Meanwhile the other user reads, and gets their own webhook.
        reads: list[tuple[int, float]] = []
        until = time.monotonic() + 12
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {other_key}"}) as http:
            while time.monotonic() < until:
                for path in ("/v1/models", "/healthz"):
                    started = time.monotonic()
                    reads.append((http.get(plat.base_url + path).status_code, time.monotonic() - started))
                time.sleep(0.2)
        note = _notify(other)
        theirs = WebhookDelivery.objects.get(notification=note)
        while WebhookDelivery.objects.get(pk=theirs.pk).status != "delivered":
            assert time.monotonic() - until < 30, plat.logs()
            time.sleep(0.2)
        connection.close()
        for t in callers:
            t.join(60)

        assert {status for status, _ in reads} == {200}
        assert max(took for _, took in reads) < 5, sorted(took for _, took in reads)[-5:]
        assert len(tests) == 4 and all(status in (200, 429, 503, 504) for status, _, _ in tests), tests
        assert all(took < 8 + 10 for _, took, _ in tests), tests
        assert all(not body["success"] for status, _, body in tests if status == 200)
        # One test of this user at a time (429), one waiting test per web process (503): the rest were refused.
        assert any(status in (429, 503) for status, _, _ in tests), tests
        finished = WebhookAttempt.objects.filter(delivery__endpoint__user=slow_user, finished_at__isnull=False)
        assert finished.count() >= 3
        assert all((a.finished_at - a.started_at).total_seconds() < 3 + 5 for a in finished)
        # On the wire at once (from claim to finish): WEBHOOK_MAX_IN_FLIGHT_PER_USER deliveries, and its one test.
        edges = sorted([(a.started_at, 1) for a in finished] + [(a.finished_at, -1) for a in finished])
        running = [0]
        for _, step in edges:
            running.append(running[-1] + step)
        assert max(running) <= 2 + 1, max(running)
    finally:
        dripping.close()
        fast.close()
