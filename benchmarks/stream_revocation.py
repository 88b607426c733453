"""A chaos step: a key revoked while streams it opened are live (`benchmarks/chaos.py`).

Each time the step runs, a fresh key of the user `chaos-streams` opens an SSE stream (GET /v1/events) and a
websocket (/ws/events) on the web role; a video submitted and cancelled with the user's other key shows the
streams live (its video.cancelled); the key is revoked as the admin does it (the row saved with revoked_at, in
this process: the change reaches the web processes through Redis); then a second video is submitted and
cancelled, as in the review's finding (the next video.cancelled, with its prompt, reached the revoked stream).

The invariant: no notification written after the revocation reaches either stream, the SSE stream ends and the
websocket closes with 4401, both within NOTIFY_RESYNC_SECONDS and a margin (the resync catches a change whose
broadcast a fault lost).
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
from websockets.sync.client import connect

INVARIANT = "a revoked key's streams closed before its next event"
USER = "chaos-streams"


class Stream:
    """One live stream read on a thread: the seqs it got, whether it ended (and the websocket's close code)."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.opened = threading.Event()
        self.ended = threading.Event()
        self.code: int | None = None
        self.error = ""


class RevokedStreams:
    def __init__(self, base_url: str, bound: float) -> None:
        self.base_url, self.bound = base_url, bound
        self.violations: list[str] = []
        self.rounds = 0
        self.exercised = 0  # rounds whose streams were seen live before the revocation
        self.kept = ""
        self.user_id = 0

    def setup(self) -> dict[str, str]:
        """The user and its lasting key (for the harness's read of every user's notifications)."""
        from jobs.accounts import api_key_create, ensure_user

        user, _ = ensure_user(username=USER, tier="internal")
        self.user_id = user.pk
        self.kept = api_key_create(user_id=user.pk, name="kept")
        return {USER: self.kept}

    def run(self) -> None:
        from jobs.accounts import api_key_create

        doomed = api_key_create(user_id=self.user_id, name=f"revoked-{self.rounds}")
        self.rounds += 1
        sse, ws = Stream(), Stream()
        since = self._last_seq()  # the streams send what comes after it
        threads = [
            threading.Thread(target=self._read_sse, args=(doomed, since, sse), daemon=True),
            threading.Thread(target=self._read_ws, args=(doomed, since, ws), daemon=True),
        ]
        for t in threads:
            t.start()
        if not (sse.opened.wait(30) and ws.opened.wait(30)):
            return  # a fault kept the streams from opening: nothing to revoke in this round
        before = self._submit("before")
        deadline = time.time() + 60
        while before and time.time() < deadline and not (sse.seqs and ws.seqs):
            time.sleep(0.1)  # live: the streams carried an event of this user
        self.exercised += bool(sse.seqs and ws.seqs)
        revoked_at_seq = self._revoke(doomed)
        self._submit("after")
        for name, stream in (("sse", sse), ("websocket", ws)):
            if not stream.ended.wait(self.bound):
                self.violations.append(f"{name} still open {self.bound:.0f}s after the revocation ({stream.error})")
            late = [seq for seq in stream.seqs if seq > revoked_at_seq]
            if late:
                self.violations.append(f"{name} got seqs {late[:3]} after the revocation at seq {revoked_at_seq}")
        if ws.ended.is_set() and ws.code != 4401:
            self.violations.append(f"websocket closed with {ws.code}, not 4401 ({ws.error})")

    def found(self) -> list[str]:
        """The violations, and one if no round ever had live streams to revoke (the step proved nothing)."""
        return self.violations + ([] if self.exercised else [f"no live streams in {self.rounds} rounds"])

    def _revoke(self, key: str) -> int:
        """Revoke the key as the admin does (its signals tell the web processes); the user's last seq then."""
        from django.db import close_old_connections
        from django.utils import timezone

        from jobs.models import ApiKey

        close_old_connections()
        row = ApiKey.objects.get(prefix=key[:10], user_id=self.user_id)
        row.revoked_at = timezone.now()
        row.save()
        return self._last_seq()

    def _last_seq(self) -> int:
        from django.db import close_old_connections

        from notifications.models import NotificationCounter

        close_old_connections()
        counter = NotificationCounter.objects.filter(user_id=self.user_id).values_list("last_seq", flat=True)
        return counter.first() or 0

    def _submit(self, what: str) -> str | None:
        """A video of the user, sent with its lasting key and cancelled at once (each request tried again on a
        fault; the create with one Idempotency-Key)."""
        intent = f"chaos-stream-{uuid.uuid4().hex[:12]}"
        headers = {"Authorization": f"Bearer {self.kept}"}
        video = self._post("/v1/videos", {"prompt": f"{intent} {what}"}, {**headers, "Idempotency-Key": intent})
        if video is not None:
            self._post(f"/v1/videos/{video}/cancel", None, headers)
        return video

    def _post(self, path: str, body: dict | None, headers: dict[str, str]) -> str | None:
        for _ in range(5):
            try:
                resp = httpx.post(f"{self.base_url}{path}", json=body, headers=headers, timeout=30)
                if resp.status_code in (200, 201):
                    return resp.json()["id"]
                if resp.status_code < 500:
                    return None  # refused (a cancel of a video that already ended): nothing to try again
            except httpx.HTTPError:
                pass
            time.sleep(1)
        return None

    def _read_sse(self, key: str, since: int, stream: Stream) -> None:
        try:
            with httpx.stream(
                "GET",
                f"{self.base_url}/v1/events",
                headers={"Authorization": f"Bearer {key}", "Last-Event-ID": str(since)},
                timeout=httpx.Timeout(10, read=self.bound + 60),
            ) as resp:
                if resp.status_code != 200:
                    stream.error = f"http {resp.status_code}"
                    return
                stream.opened.set()
                for line in resp.iter_lines():
                    if line.startswith("id: "):
                        stream.seqs.append(int(line[4:]))
        except Exception as exc:  # a fault cut it: it ended, and the seqs it got still count
            stream.error = f"{type(exc).__name__}: {exc}"
        finally:
            stream.ended.set()

    def _read_ws(self, key: str, since: int, stream: Stream) -> None:
        url = self.base_url.replace("http://", "ws://") + f"/ws/events?last_seq={since}"
        socket = None
        try:
            socket = connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10)
            stream.opened.set()
            for raw in socket:
                message = json.loads(raw)
                if message.get("type") == "notification":
                    stream.seqs.append(message["seq"])
        except Exception as exc:  # a close with a code other than 1000 or 1001 ends the loop with an error
            stream.error = f"{type(exc).__name__}: {exc}"
        finally:
            if socket is not None:
                stream.code = socket.close_code
                socket.close()
            stream.ended.set()
