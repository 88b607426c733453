"""`make chaos`'s webhook receivers: a healthy one behind every regular user's endpoint, and two that misbehave,
each behind the endpoints of a user of its own: one drips its answer a byte every half second (two endpoints), one
answers with NUL bytes. A few jobs of those two users run among the others (a 5 s attempt deadline here).

The checks: every delivery ended (the dripping receiver's dead after its retries, every other delivered, its
attempts' rows written whatever the answer held); no attempt outlived the attempt deadline, and no delivery had
two attempts on the wire at once; the dripping receiver's user never had more than its bound on the wire; and the
healthy receivers' deliveries were not delayed beyond one claim (a task lost to a fault is sent again after it)."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEADLINE = 5.0  # generous: a healthy loopback receiver on a loaded 2-core machine answers within it
MAX_IN_FLIGHT = 2
ENV = {
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "WEBHOOK_ATTEMPT_DEADLINE_SECONDS": str(DEADLINE),
    "WEBHOOK_RETRY_SCHEDULE": "0.5,0.5,0.5,0.5,0.5",
    "WEBHOOK_MAX_IN_FLIGHT_PER_USER": str(MAX_IN_FLIGHT),
    "DELIVERY_WORKERS": "4",
}
EVENTS = ["video.completed", "video.failed", "video.cancelled"]
ENDED = "every webhook delivery ended (a dripping receiver's dead, every other delivered)"
BOUNDED = "no webhook attempt outlived its deadline or overlapped another of its delivery"
PER_USER = "one user's attempts on the wire stayed within its bound"
NOT_DELAYED = "a slow receiver delayed no one else's delivery"
INVARIANTS = [ENDED, BOUNDED, PER_USER, NOT_DELAYED]
SLACK = 5.0  # a loaded machine's claim and finish around the deadline


class Receiver:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with contextlib.suppress(OSError):  # the sender hung up at its deadline
                    receiver.answer(self)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/{kind}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        if self.kind == "drip":  # the status line, a byte every half second, for 30 s at most
            until = time.monotonic() + 30
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                if time.monotonic() > until or self.stop.wait(0.5):
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            return
        body = b"\x00ok\x00\x01" if self.kind == "nul" else b"ok"
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


class SlowReceivers:
    def __init__(self, jobs_each: int = 3) -> None:
        self.jobs_each = jobs_each
        self.receivers = {kind: Receiver(kind) for kind in ("healthy", "drip", "nul")}
        self.kinds = {r.url: kind for kind, r in self.receivers.items()}
        self.keys: dict[str, str] = {}

    def setup(self, keys: dict[str, str]) -> dict[str, str]:
        """Endpoints: the healthy receiver for each of `keys`' users; two users of their own for the others.
        Their keys (read back with the others')."""
        from jobs.accounts import api_key_create, ensure_user
        from notifications import webhooks

        def endpoint(user_id: int, kind: str) -> None:
            url = self.receivers[kind].url
            webhooks.endpoint_create(user_id=user_id, name=kind, url=url, event_types=EVENTS)

        for username in keys:
            endpoint(ensure_user(username=username)[0].pk, "healthy")
        for kind, endpoints in (("drip", 2), ("nul", 1)):
            user, _ = ensure_user(username=f"chaos-{kind}")
            for _ in range(endpoints):
                endpoint(user.pk, kind)
            self.keys[user.username] = api_key_create(user_id=user.pk)
        return self.keys

    def submit(self, base_url: str) -> None:
        """A few jobs of the misbehaving receivers' users (their ends make the deliveries)."""
        import httpx

        with httpx.Client(timeout=30) as http:
            for key in self.keys.values():
                for _ in range(self.jobs_each):
                    for _try in range(3):
                        resp = http.post(
                            f"{base_url}/v1/videos",
                            json={"prompt": f"chaos hooks {uuid.uuid4().hex[:8]}"},
                            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex},
                        )
                        if resp.status_code < 500:
                            break

    def drain(self, bound: float = 240.0) -> None:
        """Until no delivery is pending (the last ones still retry after the jobs ended)."""
        from django.db import close_old_connections

        from notifications.models import WebhookDelivery

        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            close_old_connections()
            if not WebhookDelivery.objects.filter(status="pending").exists():
                return
            time.sleep(0.5)

    def found(self) -> dict[str, list[str]]:
        from notifications.models import WebhookAttempt, WebhookDelivery
        from notifications.webhooks import IN_FLIGHT_SECONDS

        v: dict[str, list[str]] = defaultdict(list)
        kind_of = {}
        for d in WebhookDelivery.objects.select_related("endpoint").filter(notification__isnull=False):
            kind = kind_of[d.pk] = self.kinds.get(d.endpoint.url, "?")
            want = "dead" if kind == "drip" else "delivered"
            if d.status != want:
                v[ENDED].append(f"{kind} {d.event_id} {d.status} after {d.attempts}")
            elif kind == "healthy":
                # Waiting for a worker is what a slow receiver could cause: the wait for the first attempt. Later
                # attempts follow a failure an injected fault caused (a terminated connection, a restart).
                first = d.attempt_log.order_by("started_at").first()
                waited = ((first.started_at if first else d.delivered_at) - d.created_at).total_seconds()
                if waited > IN_FLIGHT_SECONDS + 30:
                    v[NOT_DELAYED].append(f"{d.event_id} first attempt after {waited:.0f}s")
        by_delivery = defaultdict(list)
        drip_edges = []
        for a in WebhookAttempt.objects.order_by("started_at"):
            by_delivery[a.delivery_id].append(a)
            if a.finished_at and (a.finished_at - a.started_at).total_seconds() > DEADLINE + SLACK:
                v[BOUNDED].append(f"{kind_of.get(a.delivery_id)} attempt {a.pk} took {a.finished_at - a.started_at}")
            if kind_of.get(a.delivery_id) == "drip":
                end = a.finished_at or a.started_at  # unfinished: its answer's write was lost to a fault
                drip_edges += [(a.started_at, 1), (end, -1)]
        for attempts in by_delivery.values():
            for before, after in itertools.pairwise(attempts):
                if before.finished_at and after.started_at < before.finished_at:
                    v[BOUNDED].append(f"delivery {before.delivery_id}: attempts {before.number} and {after.number}")
        running, most = 0, 0
        for _, step in sorted(drip_edges):
            running += step
            most = max(most, running)
        if most > MAX_IN_FLIGHT:
            v[PER_USER].append(f"the dripping receiver's user had {most} on the wire")
        return v

    def close(self) -> None:
        for r in self.receivers.values():
            r.close()
