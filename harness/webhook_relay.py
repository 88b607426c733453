"""A lossy webhook relay on loopback for fault tests: it answers every delivery 200 (so the sender never retries)
and forwards it to the real receiver, except that it drops some and sends others twice, by a fixed pattern.
Every delivery is logged with the time it arrived and what was done with it."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

FORWARDED_HEADERS = ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature")


@dataclass
class Delivery:
    at: float  # time.time() it arrived
    n: int
    event_id: str
    type: str
    video_id: str
    action: str  # "forwarded", "dropped", "duplicated"
    answers: tuple[int, ...] = ()


class LossyRelay:
    def __init__(self, *, drop_every: int = 2, duplicate_every: int = 3) -> None:
        self.target = ""  # the receiver's URL, set before the first delivery
        self.drop_every, self.duplicate_every = drop_every, duplicate_every
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LossyRelay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                try:
                    event = json.loads(body)
                except ValueError:
                    event = {}
                with relay.lock:
                    n = len(relay.deliveries) + 1
                    if n % relay.drop_every == 0:
                        action = "dropped"
                    elif n % relay.duplicate_every == 0:
                        action = "duplicated"
                    else:
                        action = "forwarded"
                    delivery = Delivery(
                        time.time(), n, self.headers.get("webhook-id", ""), str(event.get("type", "")),
                        str((event.get("data") or {}).get("id", "")), action,
                    )  # fmt: skip
                    relay.deliveries.append(delivery)
                if action == "dropped":
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED_HEADERS}
                answers = []
                for _ in range(2 if action == "duplicated" else 1):
                    try:
                        answers.append(httpx.post(relay.target, content=body, headers=headers, timeout=10).status_code)
                    except httpx.HTTPError:
                        answers.append(0)
                delivery.answers = tuple(answers)

        return Handler
