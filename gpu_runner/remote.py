"""The remote worker: drives one remote pool (jobs.backends) as a runner with `concurrency` slots.

`manage.py remote_worker POOL` runs it. It registers like a gpu runner (slots, models, pool), so the dispatcher
hands it work by the same policy; it reads the jobs handed to its queue from the job table (no broker message),
and for each:

1. claims it (the same compare-and-set as a gpu runner: attempt + 1, a lease);
2. writes the intent (our Idempotency-Key) under the fence, then creates the remote job, then records the
   server's id under the fence. A crash between the create and the record leaves the intent `creating`: on a
   server that honours Idempotency-Key (openai-videos, videogen) the next poll sends the same create again and
   gets the same remote job; elsewhere nobody can tell whether it was made, so the intent becomes `unknown`
   (logged, shown in the admin), the attempt is retried, and a remote job made in that window is an orphan
   that runs to its end unseen: the window is one create request long. A create refused before anything was
   sent (the server down or restarting) is sent again each poll, on any server, keeping the job's attempt
   and slot, until the server answers or the stuck bound passes;
3. polls every live remote job each `poll_seconds` (the truth); a webhook only moves the next poll to now;
4. on `completed` downloads the clip, signs it with our content credentials (what the server's clip carried
   becomes an ingredient; a clip that cannot be signed is not stored: tried again at the next poll), stores it
   and completes the job (fenced): output moderation and
   everything after runs as for a local clip, and no remote URL ever reaches a user; on `failed` the attempt
   fails (retried while attempts remain); on 404 (the server restarted and forgot) or past its stuck bound the
   attempt is retried at once, counted;
5. renews the leases of its jobs from a thread; a job that moved on (cancelled, or retried elsewhere after a
   lost lease) has its remote job cancelled there (DELETE, whatever the dialect does with it) and abandoned.

A worker that starts takes over the pool's running jobs (same attempts, same remote jobs), so a restart costs no
generation. One worker drives a pool at a time (it offers the pool's whole concurrency): a second one started
for the same pool stands by until the first stops heartbeating, then takes over.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import close_old_connections, connection
from django.utils import timezone

from gpu_runner import outputs
from jobs import backends, services
from jobs.models import Job, RemoteJob, Runner, State
from jobs.remote_webhooks import TOLERANCE_SECONDS
from jobs.services import remote as remote_services
from jobs.services.transitions import db_now_plus
from videogen import logcontext, metrics, provenance
from videogen.video_io import decode_mp4, make_thumbnail, probe_mp4

log = logging.getLogger(__name__)

P = RemoteJob.Phase
# What users read when the remote server fails them; the server's own words go to staff only.
BACKEND_ERROR = "The video could not be generated because of an error on the generation backend."
BACKEND_REFUSED = "The generation backend refused this request."
# Share of the progress bar the remote generation fills; downloading and storing the clip are the rest.
REMOTE_SHARE = 90
# An intent's remote_status while its create is unconfirmed: refused before anything was sent (safe to send
# again on any server), or being sent again.
NOT_SENT, SENDING = "create-not-sent", "create-sending"


class Unavailable(Exception):
    """The server could not be reached or failed (5xx, 429, timeout): try again later."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent  # whether the request may have reached the server


class Refused(Exception):
    """The server refused the request (a 4xx other than 404, 408, 409 and 429)."""


class Gone(Exception):
    """404: the server does not know this job (it restarted and forgot it)."""


class Client:
    """One pool's server, as its dialect speaks."""

    def __init__(self, pool: backends.Pool, transport: httpx.BaseTransport | None = None) -> None:
        self.pool = pool
        headers = {"User-Agent": "videogen-remote/1"}
        if pool.api_key:
            headers["Authorization"] = f"Bearer {pool.api_key}"
        timeout = httpx.Timeout(pool.timeout_seconds, connect=min(5.0, pool.timeout_seconds))
        self.http = httpx.Client(base_url=pool.base_url + "/", headers=headers, timeout=timeout, transport=transport)

    def _count(self, call: str, outcome: str) -> None:
        metrics.REMOTE_CALLS.labels(self.pool.name, self.pool.dialect.name, call, outcome).inc()

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        call = {"POST": "create", "DELETE": "cancel"}.get(method, "status")
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            self._count(call, "unreachable")
            raise Unavailable(f"{method} {path}: {exc}", sent=False) from None
        except httpx.HTTPError as exc:
            self._count(call, "error")
            raise Unavailable(f"{method} {path}: {type(exc).__name__} {exc}", sent=True) from None
        self._count(call, str(response.status_code))
        if response.status_code == 404:
            raise Gone(f"{method} {path}: 404")
        if response.status_code >= 500 or response.status_code in (408, 409, 429):
            raise Unavailable(f"{method} {path}: {response.status_code} {response.text[:300]}", sent=True)
        if response.status_code >= 400:
            raise Refused(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response

    def create(self, *, fields: dict[str, str], reference: bytes | None, key: str) -> dict:
        headers = {"Idempotency-Key": key}
        if self.pool.dialect.create_as == "json" and reference is None:
            response = self._send("POST", "videos", json=fields, headers=headers)
        else:
            files: dict[str, tuple] = {name: (None, value) for name, value in fields.items()}
            if reference is not None:
                files["input_reference"] = ("reference.png", reference, "image/png")
            response = self._send("POST", "videos", files=files, headers=headers)
        return _json(response)

    def status(self, remote_id: str) -> dict:
        return _json(self._send("GET", f"videos/{remote_id}"))

    def content(self, remote_id: str) -> bytes:
        limit = settings.REMOTE["MAX_RESULT_BYTES"]
        try:
            with self.http.stream("GET", f"videos/{remote_id}/content") as response:
                self._count("content", str(response.status_code))
                if response.status_code == 404:
                    raise Gone(f"content of {remote_id}: 404")
                if response.status_code >= 400:
                    raise Unavailable(f"content of {remote_id}: {response.status_code}", sent=True)
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise Refused(f"content of {remote_id} is over {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise Unavailable(f"content of {remote_id}: {type(exc).__name__} {exc}", sent=True) from None

    def cancel(self, remote_id: str) -> None:
        try:
            self._send("DELETE", f"videos/{remote_id}")
        except (Unavailable, Refused, Gone) as exc:  # best effort: the result is discarded either way
            log.info("pool %s: cancel of %s: %s", self.pool.name, remote_id, exc)


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise Unavailable(f"not JSON: {response.text[:200]!r}", sent=True) from None
    return body if isinstance(body, dict) else {"_": body}


@dataclass
class _Held:
    job_id: int
    attempt: int


class RemoteWorker:
    def __init__(self, pool: backends.Pool, client: Client | None = None) -> None:
        self.pool = pool
        self.client = client or Client(pool)
        self.name = f"remote:{pool.name}@{socket.gethostname()}:{os.getpid()}"
        # Names this worker's uploads: a takeover keeps the attempt, so two workers can hold one attempt.
        self.token = secrets.token_hex(6)
        self.stop = threading.Event()
        self._last_sweep = 0.0

    # --- the loop ------------------------------------------------------------------------------------------

    def _other_worker(self) -> str | None:
        """A live worker already driving this pool (it offers the pool's whole concurrency: two would double it)."""
        ttl = settings.VIDEOGEN["RUNNER_TTL_SECONDS"]
        return (
            Runner.objects.filter(queue=self.pool.queue, draining=False, last_seen_at__gte=db_now_plus(-ttl))
            .exclude(name=self.name)
            .values_list("name", flat=True)
            .first()
        )

    def run(self) -> None:
        while (other := self._other_worker()) is not None and not self.stop.is_set():
            log.info("remote worker %s: %s drives pool %s; standing by", self.name, other, self.pool.name)
            self.stop.wait(settings.VIDEOGEN["RUNNER_TTL_SECONDS"])
            close_old_connections()
        if self.stop.is_set():
            return
        taken = remote_services.remote_takeover(pool=self.pool.name, runner=self.name)
        log.info(
            "remote worker %s: %s slot(s) for %s; took over %s job(s)",
            self.name,
            self.pool.concurrency,
            sorted(self.pool.models),
            taken,
        )
        beat = threading.Thread(target=self._heartbeats, name="remote-heartbeat", daemon=True)
        self._beat_once()
        beat.start()
        tick = settings.REMOTE["TICK_SECONDS"]
        try:
            while not self.stop.is_set():
                try:
                    close_old_connections()
                    self.tick()
                except Exception:
                    log.exception("remote worker %s: tick failed; going on", self.name)
                    connection.close()
                self.stop.wait(tick)
        finally:
            self.stop.set()
            beat.join(timeout=5)
            try:
                services.runner_withdraw(name=self.name)
            except Exception:
                log.warning("remote worker %s could not withdraw", self.name, exc_info=True)

    def tick(self) -> None:
        handed = Job.objects.filter(state=State.DISPATCHED, queue=self.pool.queue).values_list("pk", flat=True)
        for job_id in handed[:100]:
            self.start(job_id)
        for rj in remote_services.remote_due(pool=self.pool.name):
            self.poll(rj)
        if time.monotonic() - self._last_sweep > 60:
            self._last_sweep = time.monotonic()
            remote_services.remote_forget_events(older_than_seconds=3 * TOLERANCE_SECONDS)

    # --- leases -------------------------------------------------------------------------------------------

    def _heartbeats(self) -> None:
        interval = min(settings.VIDEOGEN["HEARTBEAT_SECONDS"], settings.VIDEOGEN["RUNNER_HEARTBEAT_SECONDS"])
        try:
            while not self.stop.wait(interval):
                try:
                    close_old_connections()
                    self._beat_once()
                except Exception:
                    log.warning("remote worker %s: heartbeat failed", self.name, exc_info=True)
                    connection.close()
        finally:
            connection.close()

    def _beat_once(self) -> None:
        services.runner_heartbeat(
            name=self.name,
            slots=self.pool.concurrency,
            model_names=sorted(self.pool.models),
            queue=self.pool.queue,
            host=socket.gethostname(),
            pool=self.pool.name,
            version=f"remote:{self.pool.dialect.name}",
        )
        now = timezone.now()
        for rj in remote_services.remote_live(pool=self.pool.name):
            job = rj.job
            if job.state != State.RUNNING or job.attempt != rj.attempt:
                continue  # moved on: the next poll cancels it there
            alive = services.job_heartbeat(job_id=job.pk, attempt=rj.attempt, progress=self._progress(rj, job, now))
            if not alive:
                remote_services.remote_poll_now(remote_job_id=rj.pk)  # which cancels it there

    def _progress(self, rj: RemoteJob, job: Job, now) -> int:
        if self.pool.dialect.real_progress:
            return (rj.remote_progress or 0) * REMOTE_SHARE // 100
        started = rj.recorded_at or rj.created_at
        return backends.estimated_progress((now - started).total_seconds(), job.cost) * REMOTE_SHARE // 100

    # --- a job handed to this pool -------------------------------------------------------------------------

    def start(self, job_id: int) -> None:
        job = services.job_claim(job_id=job_id, runner=self.name)
        if job is None:
            return
        with logcontext.bind(**logcontext.job_fields(job)):
            self._start(job)

    def _start(self, job: Job) -> None:
        held = _Held(job.pk, job.attempt)
        earlier = remote_services.remote_adoptable(job_id=job.pk, pool=self.pool.name)
        if earlier is not None and remote_services.remote_adopt(remote_job_id=earlier.pk, attempt=held.attempt):
            log.info("job %s attempt %s adopts remote job %s", job.pk, held.attempt, earlier)
            return  # polled from here on: no second generation
        key = f"videogen-{job.public_id}-{held.attempt}"
        rj = remote_services.remote_begin(job_id=job.pk, attempt=held.attempt, pool=self.pool.name, key=key)
        if rj is not None:
            self._create(rj, job)

    def _create(self, rj: RemoteJob, job: Job) -> None:
        fields = backends.create_fields(
            self.pool, model=job.model, prompt=job.prompt, size=f"{job.width}x{job.height}", seconds=job.seconds
        )
        reference = None
        if job.reference_key:
            with default_storage.open(job.reference_key, "rb") as fh:
                reference = fh.read()
        if rj.remote_status == NOT_SENT:  # from here until it answers, this create may reach the server
            remote_services.remote_polled(
                remote_job_id=rj.pk, status=SENDING, progress=None, poll_in=self.pool.timeout_seconds
            )
        try:
            answer = self.client.create(fields=fields, reference=reference, key=rj.idempotency_key)
        except Refused as exc:
            self._fail(rj, code="backend_refused", message=BACKEND_REFUSED, retryable=False, detail=str(exc))
            return
        except (Unavailable, Gone) as exc:
            sent = not isinstance(exc, Unavailable) or exc.sent
            if not sent:
                # Refused before a byte was sent (the server is down or restarting): nothing was made, so any
                # dialect may send it again. The job keeps its attempt and its slot, and waits for the server
                # (up to the stuck bound) rather than burning attempts while it restarts.
                remote_services.remote_polled(
                    remote_job_id=rj.pk, status=NOT_SENT, progress=None, poll_in=self.pool.poll_seconds, detail=str(exc)
                )
                return
            if self.pool.dialect.idempotent_create:
                # Made or not, the same key asks again at the next poll and gets the same remote job.
                remote_services.remote_polled(
                    remote_job_id=rj.pk,
                    status="create-unconfirmed",
                    progress=None,
                    poll_in=self.pool.poll_seconds,
                    detail=str(exc),
                )
                return
            self._fail(
                rj, code="backend_unavailable", message=BACKEND_ERROR, retryable=True, detail=str(exc), phase=P.UNKNOWN
            )
            log.warning(
                "pool %s: job %s: create %s may have made a remote job we cannot see (%s)",
                self.pool.name,
                job.pk,
                rj.idempotency_key,
                exc,
            )
            return
        remote_id = backends.remote_id(answer)
        if not remote_id:
            self._fail(
                rj,
                code="backend_error",
                message=BACKEND_ERROR,
                retryable=True,
                detail=f"create answered no id: {str(answer)[:300]}",
                phase=P.UNKNOWN,
            )
            return
        if not remote_services.remote_record(
            remote_job_id=rj.pk, attempt=rj.attempt, remote_id=remote_id, poll_in=self.pool.poll_seconds
        ):
            self.client.cancel(remote_id)  # our job moved on while the create was in flight

    def _collect_again(self, rj, *, detail: str) -> None:
        """The server's clip is done but could not be taken yet: try again at the next poll."""
        remote_services.remote_polled(
            remote_job_id=rj.pk, status="completed", progress=100, poll_in=self.pool.poll_seconds, detail=detail
        )

    def _fail(
        self,
        rj: RemoteJob,
        *,
        code: str,
        message: str,
        retryable: bool,
        detail: str,
        phase: str = P.DONE,
        backoff: bool = True,
    ) -> None:
        remote_services.remote_end(remote_job_id=rj.pk, phase=phase, detail=detail)
        services.job_fail_attempt(
            job_id=rj.job_id,
            attempt=rj.attempt,
            error_code=code,
            message=message,
            retryable=retryable,
            detail=f"{self.pool.name}: {detail}"[:1000],
            backoff=backoff,
        )

    # --- polling: the truth ----------------------------------------------------------------------------------

    def poll(self, rj: RemoteJob) -> None:
        with logcontext.bind(**logcontext.job_fields(rj.job)):
            self._poll(rj)

    def _poll(self, rj: RemoteJob) -> None:
        job = rj.job
        moved_on = job.state != State.RUNNING or job.attempt != rj.attempt
        if rj.phase == P.CREATING:
            self._reconcile(rj, job, moved_on)
            return
        if moved_on:
            self.client.cancel(rj.remote_id)
            remote_services.remote_end(remote_job_id=rj.pk, phase=P.ABANDONED, detail=f"job is {job.state}")
            return
        try:
            status = backends.read_status(self.pool.dialect, self.client.status(rj.remote_id))
        except Gone:
            log.warning(
                "pool %s: remote job %s of job %s is gone (404); retrying ours", self.pool.name, rj.remote_id, job.pk
            )
            self._fail(
                rj,
                code="backend_lost",
                message=BACKEND_ERROR,
                retryable=True,
                detail="the server no longer knows the job (404)",
                phase=P.LOST,
                backoff=False,
            )
            return
        except (Unavailable, Refused) as exc:
            if self._stuck(rj, job):
                return
            remote_services.remote_polled(
                remote_job_id=rj.pk,
                status="unreachable",
                progress=None,
                poll_in=self.pool.poll_seconds,
                detail=str(exc),
            )
            return
        if status.phase == backends.COMPLETED:
            self._collect(rj, job)
        elif status.phase == backends.FAILED:
            self._fail(
                rj, code="backend_failed", message=BACKEND_ERROR, retryable=True, detail=f"{status.raw}: {status.error}"
            )
        elif not self._stuck(rj, job):
            remote_services.remote_polled(
                remote_job_id=rj.pk, status=status.raw, progress=status.progress, poll_in=self.pool.poll_seconds
            )

    def _reconcile(self, rj: RemoteJob, job: Job, moved_on: bool) -> None:
        """An intent whose create was never confirmed: refused unsent (the server was down), cut off by a crash, or
        timed out."""
        if rj.remote_status == NOT_SENT:
            if moved_on:
                remote_services.remote_end(
                    remote_job_id=rj.pk, phase=P.ABANDONED, detail=f"never sent; job is {job.state}"
                )
            elif not self._stuck(rj, job):
                self._create(rj, job)
            return
        if not self.pool.dialect.idempotent_create:
            detail = "a create was cut off; the server cannot say whether it made the job (no idempotency)"
            log.warning("pool %s: job %s: %s", self.pool.name, job.pk, detail)
            if moved_on:
                remote_services.remote_end(remote_job_id=rj.pk, phase=P.UNKNOWN, detail=detail)
            else:
                self._fail(
                    rj,
                    code="backend_unavailable",
                    message=BACKEND_ERROR,
                    retryable=True,
                    detail=detail,
                    phase=P.UNKNOWN,
                )
            return
        if not moved_on and self._stuck(rj, job):
            return
        self._create(rj, job)  # the same key: the same remote job if the first create made one
        if moved_on:
            rj.refresh_from_db()
            if rj.remote_id:
                self.client.cancel(rj.remote_id)

    def _stuck(self, rj: RemoteJob, job: Job) -> bool:
        since = rj.recorded_at or rj.created_at
        bound = max(self.pool.stuck_min_seconds, self.pool.stuck_factor * job.cost)
        if (timezone.now() - since).total_seconds() <= bound:
            return False
        if rj.remote_id:
            self.client.cancel(rj.remote_id)
        self._fail(
            rj,
            code="backend_stuck",
            message=BACKEND_ERROR,
            retryable=True,
            detail=f"not finished after {bound:.0f} s",
            phase=P.LOST,
            backoff=False,
        )
        return True

    def _collect(self, rj: RemoteJob, job: Job) -> None:
        """The remote clip becomes ours: downloaded, checked, stored, then the job completes (fenced)."""
        started = time.monotonic()
        try:
            data = self.client.content(rj.remote_id)
            info = probe_mp4(data)
            first = decode_mp4(data, max_frames=1)
            if not info.get("frames") or len(first) == 0:
                raise ValueError(f"not a playable video: {info}")
        except Gone:
            self._fail(
                rj,
                code="backend_lost",
                message=BACKEND_ERROR,
                retryable=True,
                detail="the clip is gone (404)",
                phase=P.LOST,
                backoff=False,
            )
            return
        except Unavailable as exc:
            self._collect_again(rj, detail=f"download: {exc}")
            return
        except Exception as exc:  # a 413-sized or undecodable answer: this attempt's result is unusable
            self._fail(rj, code="backend_error", message=BACKEND_ERROR, retryable=True, detail=f"result: {exc}")
            return
        # Under this worker's own name: a worker that took the pool over keeps the attempt, so both may collect
        # the clip; the one fenced out below then deletes only its own upload, never the clip the other completed
        # with (object stores overwrite a key in place).
        base = f"videos/{job.public_id}/attempt-{rj.attempt}-{self.token}"
        made = provenance.Generation(
            model=job.model,
            model_version=provenance.model_version(job.model, self.pool.remote_model(job.model)),
            created_at=rj.polled_at or timezone.now(),
            backend=f"remote:{self.pool.name}",
        )
        try:
            keys = outputs.store(
                base=base, video=data, thumbnail=make_thumbnail(first[0]), generation=made, derived=True
            )
        except provenance.SigningError as exc:
            # Fail-closed, and the server's clip is kept there: signing is tried again at the next poll, until the
            # job's stuck bound.
            if not self._stuck(rj, job):
                self._collect_again(rj, detail=f"content credentials: {exc}")
            return
        took = ((rj.polled_at or timezone.now()) - (rj.recorded_at or rj.created_at)).total_seconds()
        done = services.job_complete(
            job_id=job.pk,
            attempt=rj.attempt,
            video_key=keys[0],
            thumbnail_key=keys[1],
            gpu_seconds=max(0.0, took),
            video_signed=True,
        )
        remote_services.remote_end(
            remote_job_id=rj.pk,
            phase=P.DONE if done else P.ABANDONED,
            detail=f"downloaded {len(data)} bytes in {time.monotonic() - started:.2f} s",
        )
        if not done:
            for key in keys:
                default_storage.delete(key)
