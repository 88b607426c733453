"""A SIMULATED remote video server (a conformance server, not a real engine): it replays the request and answer
shapes of each dialect's server as read from their source, on a loopback port, for the tests of
gpu_runner.remote. Its clips are real MP4s made of noise frames.

Per dialect: how a create must be sent (multipart, JSON or both) and what it answers (200 or 202), the statuses
a job walks through (`processing`, no `in_progress`), the progress it reports (real, 0-then-100, simulated,
none), the shape of an error (object or plain string) and what DELETE does. `restart()` forgets every job, as
each of those servers does (a later GET answers 404). A prompt containing "[remote-fail]" fails, one with
"[remote-stuck]" never ends.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from videogen.video_io import encode_mp4

# dialect -> (accepts multipart, accepts JSON, create status, running word or None, progress kind, error kind,
#             delete kind, honours Idempotency-Key)
QUIRKS = {
    "openai-videos": (True, True, 200, "in_progress", "real", "object", "aborts", True),
    "vllm-omni": (True, False, 200, "in_progress", "jump", "object", "aborts", False),
    "sglang": (True, True, 200, None, "jump", "object", "drops", False),
    "fastvideo": (True, False, 200, "in_progress", "jump", "object", "queued_only", False),
    "tensorrt-llm": (True, True, 202, None, "none", "string", "aborts", False),
    "aquiles": (False, True, 200, "processing", "simulated", "object", "queued_only", False),
}


@dataclass
class SimJob:
    id: str
    model: str
    prompt: str
    size: str
    seconds: str
    created: float
    cancelled: bool = False


@dataclass
class Received:
    method: str
    path: str
    content_type: str
    headers: dict[str, str]
    fields: dict[str, str] = field(default_factory=dict)


class RemoteSim:
    def __init__(self, dialect: str, *, queue_seconds: float = 0.3, run_seconds: float = 0.6) -> None:
        self.dialect = dialect
        (self.multipart, self.json, self.create_status, self.running_word, self.progress_kind, self.error_kind,
         self.delete_kind, self.idempotent) = QUIRKS[dialect]  # fmt: skip
        self.queue_seconds, self.run_seconds = queue_seconds, run_seconds
        self.jobs: dict[str, SimJob] = {}
        self.by_key: dict[str, str] = {}
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.clip = encode_mp4(np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8), fps=4)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RemoteSim:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def restart(self) -> None:
        """Forget every job, as a restarted server does."""
        with self.lock:
            self.jobs.clear()
            self.by_key.clear()

    def creates(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    # --- what a job looks like now --------------------------------------------------------------------------

    def _phase(self, job: SimJob) -> str:
        if job.cancelled:
            return "cancelled"
        if "[remote-stuck]" in job.prompt:
            return "running"
        age = time.monotonic() - job.created
        if age < self.queue_seconds:
            return "queued"
        if age < self.queue_seconds + self.run_seconds:
            return "running"
        return "failed" if "[remote-fail]" in job.prompt else "completed"

    def _object(self, job: SimJob) -> dict:
        phase = self._phase(job)
        status = {"running": self.running_word or "queued", "cancelled": "failed"}.get(phase, phase)
        body: dict = {"id": job.id, "object": "video", "model": job.model, "status": status, "prompt": job.prompt,
                      "size": job.size, "seconds": job.seconds, "created_at": int(job.created)}  # fmt: skip
        if self.progress_kind != "none":
            body["progress"] = self._progress(job, phase)
        if phase == "failed":
            body["error"] = (
                "CUDA out of memory" if self.error_kind == "string" else {"code": "engine_error", "message": "boom"}
            )
        return body

    def _progress(self, job: SimJob, phase: str) -> int:
        if phase == "completed":
            return 100
        if self.progress_kind == "real" and phase == "running":
            return min(99, int(100 * (time.monotonic() - job.created - self.queue_seconds) / self.run_seconds))
        if self.progress_kind == "simulated":
            return 42
        return 0

    # --- HTTP -------------------------------------------------------------------------------------------------

    def _handler(self):
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: object, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, fields: dict[str, str] | None = None) -> None:
                sim.received.append(
                    Received(
                        self.command,
                        self.path,
                        self.headers.get("Content-Type", ""),
                        {k.lower(): v for k, v in self.headers.items()},
                        fields or {},
                    )
                )

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                kind = self.headers.get("Content-Type", "")
                if self.path != "/v1/videos":
                    self._record()
                    return self._send(404, {"detail": "Not Found"})
                if kind.startswith("multipart/form-data"):
                    if not sim.multipart:
                        self._record()
                        return self._send(415, {"detail": "send JSON"})
                    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw)
                    fields = {
                        part.get_param("name", header="content-disposition"): part.get_content()
                        for part in message.iter_parts()
                        if part.get_filename() is None
                    }
                elif kind.startswith("application/json"):
                    if not sim.json:
                        self._record()
                        return self._send(400, {"detail": "multipart/form-data required"})
                    fields = {k: str(v) for k, v in json.loads(raw).items()}
                else:
                    self._record()
                    return self._send(415, {"detail": "unsupported media type"})
                self._record(fields)
                key = self.headers.get("Idempotency-Key", "")
                with sim.lock:
                    if sim.idempotent and key in sim.by_key and sim.by_key[key] in sim.jobs:
                        return self._send(200, sim._object(sim.jobs[sim.by_key[key]]))
                    job = SimJob(f"video_{uuid.uuid4().hex}", fields.get("model", ""), fields.get("prompt", ""),
                                 fields.get("size", ""), fields.get("seconds", ""), time.monotonic())  # fmt: skip
                    sim.jobs[job.id] = job
                    if key:
                        sim.by_key[key] = job.id
                self._send(sim.create_status, sim._object(job))

            def _job(self) -> SimJob | None:
                parts = self.path.split("/")  # ['', 'v1', 'videos', id, ('content')]
                with sim.lock:
                    return sim.jobs.get(parts[3]) if len(parts) >= 4 and parts[2] == "videos" else None

            def do_GET(self) -> None:
                self._record()
                job = self._job()
                if job is None:
                    return self._send(404, {"detail": "Video not found"})
                if self.path.endswith("/content"):
                    if sim._phase(job) != "completed":
                        return self._send(400, {"detail": "not ready"})
                    return self._send(200, sim.clip, "video/mp4")
                self._send(200, sim._object(job))

            def do_DELETE(self) -> None:
                self._record()
                job = self._job()
                if job is None:
                    return self._send(404, {"detail": "Video not found"})
                phase = sim._phase(job)
                if sim.delete_kind == "queued_only" and phase != "queued":
                    return self._send(400, {"detail": "only queued jobs can be cancelled"})
                with sim.lock:
                    if sim.delete_kind == "drops":
                        sim.jobs.pop(job.id, None)  # the record goes; the work (not simulated) would go on
                    else:
                        job.cancelled = True
                self._send(200, {"id": job.id, "object": "video.deleted", "deleted": True})

        return Handler
