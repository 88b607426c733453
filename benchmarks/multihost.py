"""`make chaos-hosts`: the platform's roles as separate hosts on one machine, and link cuts between them.

Every host is a network namespace with a hostname of its own, made here (tests/hosts.py), on one switch: a data
host running its own Postgres (initdb in a scratch folder) and Redis, an S3 host (moto's server: no two hosts
share a disk, so clips travel through S3), and one host per role: web, dispatcher, cpu worker, the delivery
worker, and two gpu hosts running the real runner: on the tiny model (GPU_BACKEND=diffusers, the default), or
with `--backend simulated` on the SIMULATED backend (the real runner path around a fixed sleep, a placeholder clip;
what `--short` uses, to stay within a couple of minutes on a loaded 2-core machine). A receiver host takes every
user's webhooks. The client (this process) talks to the web host over the switch.

It shows, in order:
  spread     jobs submitted to the web host complete on both gpu hosts (counted per host);
  gpu cut    one gpu host's cable pulled mid-job (its switch port down; nothing killed): its job runs on the other
             host once the lease runs out; measured from the cut to the job running there and to its end;
             then the cable back, and the cut host serving again;
  redis cut  the web host cut from the Redis address alone (a silent drop): /readyz answers 503 naming redis,
             the rest of the API answers (a 503 where it needs Redis), and it recovers once the link is back;
             every status seen is recorded, and none may be a 500.
Then every job, event, ledger row and notification is checked: each job ended once, none ran twice to
completion, nobody was charged twice, exactly one terminal notification per job (in the database, as each user
reads them through the API, and as one webhook event from the delivery host). Any violation: exit status 1. The
last line is one JSON object.

`--short` is the run `make test` makes (tests/e2e/test_multihost.py); exit status 77 (and the reason) when this
machine cannot make namespaces.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchmarks  # noqa: E402,F401  (a throwaway SECRET_KEY shared by every process started here)
from harness import hosts  # noqa: E402

SKIPPED = 77
BUCKET = "videogen-hosts"
SUBNET = hosts.SUBNET
DB, REDIS, S3 = f"{SUBNET}.2", f"{SUBNET}.3", f"{SUBNET}.4"
WEB = f"{SUBNET}.10"
HOOKS = f"{SUBNET}.30"  # the users' webhook receiver, a host of its own
PY = sys.executable
MANAGE = [PY, "manage.py"]
GPU_HOSTS = ("gpu-a", "gpu-b")
# The roles, one host each: (host, its address's last number, argv, its own environment). Adding a role is a line.
ROLES: list[tuple[str, int, list[str], dict[str, str]]] = [
    ("web", 10, [*MANAGE, "web", "--host", WEB, "--port", "8000"], {"VIDEOGEN_ROLE": "web"}),
    ("dispatcher", 11, [*MANAGE, "dispatch"], {}),
    ("cpu", 12, [*MANAGE, "qcluster"], {"OMP_NUM_THREADS": "1"}),  # one thread per worker, as supervisord.conf
    ("delivery", 13, [*MANAGE, "qcluster"], {"Q_CLUSTER_NAME": "delivery"}),
    ("gpu-a", 21, [*MANAGE, "qcluster"], {"Q_CLUSTER_NAME": "gpu"}),
    ("gpu-b", 22, [*MANAGE, "qcluster"], {"Q_CLUSTER_NAME": "gpu"}),
]
SMALL = {"size": "128x128", "seconds": "4"}
LONG = {"size": "256x144", "seconds": "8"}  # long enough on the tiny model to be cut mid-job
TERMINAL_EVENTS = {"video.completed", "video.failed", "video.cancelled"}


# Slack over the lease and one period, for the reaper's pass, the dispatch, the gpu cluster's poll and the claim on a
# loaded machine.
RERUN_MARGIN_SECONDS = 1.0


def rerun_bound(env: dict[str, str]) -> float:
    """Seconds from a gpu host's cut to its job running on the other host, at most: the lease this run sets (the
    last renewal was before the cut), one period of its heartbeats or dispatcher passes, and the margin."""
    period = max(
        float(env[name]) for name in ("JOB_HEARTBEAT_SECONDS", "RUNNER_HEARTBEAT_SECONDS", "DISPATCH_INTERVAL_SECONDS")
    )
    return float(env["JOB_LEASE_SECONDS"]) + period + RERUN_MARGIN_SECONDS


def fleet_env(args, *, database_url: str, redis_url: str, s3_url: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STORAGE_BUCKET": BUCKET,
        "STORAGE_ENDPOINT_URL": s3_url,
        "STORAGE_ACCESS_KEY": "testing",
        "STORAGE_SECRET_KEY": "testing",
        "STORAGE_REGION": "us-east-1",
        "ALLOWED_HOSTS": f"{WEB},localhost",
        "GPU_BACKEND": args.backend,
        # SIMULATED: every job takes the same time (median = 99th percentile), long enough to be cut mid-job.
        "SIMULATED_P50_SECONDS": "30",
        "SIMULATED_P99_SECONDS": "30",
        "SIMULATED_TIME_FACTOR": str(args.simulated_seconds / 30),
        # The moderation models are installed once on the machine, as the gpu model is (MODELS_DIR).
        "MODERATION_CACHE_DIR": str(ROOT / "var" / "moderation"),
        "JOB_HEARTBEAT_SECONDS": "0.5",
        "JOB_LEASE_SECONDS": str(args.lease),
        "RUNNER_HEARTBEAT_SECONDS": "0.5",
        "RUNNER_TTL_SECONDS": str(args.lease),
        "DISPATCH_INTERVAL_SECONDS": "0.1",
        "JOB_DISPATCH_TIMEOUT_SECONDS": "3",
        "JOB_MAX_DISPATCHES": "20",
        "JOB_RETRY_BACKOFF_SECONDS": "0.2",
        "QUEUE_PUBLISH_SECONDS": "0.5",
        "RETENTION_SWEEP_SECONDS": "0",
        "POLL_AFTER_MS": "200",
        "WEB_WORKERS": "1",
        "CPU_WORKERS": "1",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "WEBHOOK_ALLOWED_NETWORKS": f"{SUBNET}.0/24",  # the receiver's host is on the switch's private subnet
    }
    for tier in ("free", "paid", "internal"):  # no cap or rate limit gets in the run's way
        for name in ("MAX_INFLIGHT", "MAX_QUEUED", "DAILY_JOBS", "WAIT_BOUND_SECONDS", "RATE_PER_MINUTE"):
            env[f"TIER_{tier.upper()}_{name}"] = "0"
        env[f"TIER_{tier.upper()}_SUBMIT_RATE_PER_MINUTE"] = "0"
    return env


class Run:
    """The fleet on its hosts, the client's view of it, and what was measured."""

    def __init__(self, args, net: hosts.Network, env: dict[str, str], keys: dict[str, str]) -> None:
        import httpx

        self.args, self.net, self.env, self.keys = args, net, env, keys
        self.base = f"http://{WEB}:8000"
        self.http = httpx.Client(timeout=args.request_timeout)
        self.statuses: list[tuple[str, str, str]] = []  # (phase, request, status or the exception's name)
        self.submitted: list[str] = []
        self.users = list(keys)
        self.turn = 0

    # --- the client ---------------------------------------------------------------------------------------

    def request(self, phase: str, method: str, path: str, user: str | None = None, **kw):
        headers = {"Authorization": f"Bearer {self.keys[user or self.users[0]]}"} if path.startswith("/v1") else {}
        label = f"{method} {path.split('?')[0] if '/videos/' not in path else '/v1/videos/{id}'}"
        try:
            resp = self.http.request(method, self.base + path, headers=headers, **kw)
        except Exception as exc:  # no answer: recorded as such (a timeout is not a 500, but it is seen)
            self.statuses.append((phase, label, type(exc).__name__))
            return None
        self.statuses.append((phase, label, str(resp.status_code)))
        return resp

    def submit(self, phase: str, prompt: str, shape: dict[str, str] | None = None) -> str | None:
        user = self.users[self.turn % len(self.users)]
        self.turn += 1
        resp = self.request(phase, "POST", "/v1/videos", user, json={"prompt": prompt, **(shape or SMALL)})
        if resp is not None and resp.status_code == 201:
            self.submitted.append(resp.json()["id"])
            return resp.json()["id"]
        return None

    def wait(self, predicate, timeout: float, what: str):
        from django.db import close_old_connections

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            close_old_connections()
            value = predicate()
            if value:
                return value
            self.net.check_alive()
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what}\n{fleet_state()}\n{self.net.logs()}")

    # --- the phases ---------------------------------------------------------------------------------------

    def spread(self, n: int) -> Counter:
        from jobs.models import Job

        ids = [self.submit("spread", f"a harbour at dusk, take {i}") for i in range(n)]
        assert all(ids), f"submissions refused: {self.statuses}"
        bound = 120 + 60 * n  # generous: the tiny model on a loaded 2-core machine takes tens of seconds a job
        self.wait(lambda: Job.objects.filter(public_id__in=ids, state="succeeded").count() == n, bound, "the jobs")
        return Counter(host_of(j.runner_id) for j in Job.objects.filter(public_id__in=ids))

    def gpu_cut(self, n: int, tries: int = 3) -> dict:
        """Pull a busy gpu host's cable mid-job; its job must run on the other host and end once."""
        from jobs.models import Job, JobEvent, Runner

        vid = self.submit(f"gpu cut {n}", f"a long pan over a glacier, cut {n}", LONG)
        assert vid, self.statuses[-1]
        job = self.wait(lambda: Job.objects.filter(public_id=vid, state="running").first(), 120, "the long job")
        victim, attempt = host_of(job.runner_id), job.attempt
        # Mid-job: a few heartbeats into generation, still far from its end.
        self.wait(lambda: Job.objects.filter(pk=job.pk, progress__gt=0).exists(), 60, "the long job's progress")
        cut_at = time.time()
        self.net.cut(victim)
        job.refresh_from_db()
        if (job.state, job.attempt) != ("running", attempt) and tries > 1:  # it ended before the cable went
            self.net.restore(victim)
            print(f"  {vid} was no longer running on {victim} at the cut: another job", flush=True)
            return self.gpu_cut(n, tries - 1)
        print(f"  {time.strftime('%H:%M:%S')} cable of {victim} pulled mid-job ({vid} attempt {attempt})", flush=True)
        again = self.wait(
            lambda: JobEvent.objects.filter(job_id=job.pk, to_state="running", attempt__gt=attempt).first(),
            120,
            "the job running on another host",
        )
        done = self.wait(
            lambda: Job.objects.filter(pk=job.pk, state__in=["succeeded", "failed"]).first(), 300, "the job's end"
        )
        rerun_host = host_of(again.actor.removeprefix("runner:"))
        self.net.restore(victim)
        back_at = time.time()
        print(f"  {time.strftime('%H:%M:%S')} cable of {victim} back", flush=True)
        # The cut host serves again: its runner heartbeats reach the database once more.
        from jobs.services import db_now_plus

        self.wait(
            lambda: Runner.objects.filter(host=victim, draining=False, last_seen_at__gt=db_now_plus(-1.0)).exists(),
            120,
            f"{victim} back in the fleet",
        )
        rejoined_at = time.time()
        # What happened to the job after the cut, for a report that has to explain a slow rerun.
        timeline = [
            f"{e.created_at.timestamp() - cut_at:+.2f}s {e.to_state} {e.actor}"
            for e in JobEvent.objects.filter(
                job_id=job.pk, created_at__gte=dt.datetime.fromtimestamp(cut_at - 1, dt.UTC)
            ).order_by("id")
        ]
        return {
            "host": victim,
            "job": vid,
            "rerun_on": rerun_host,
            "end_state": done.state,
            "attempts": done.attempt,
            "to_running_s": round(again.created_at.timestamp() - cut_at, 3),
            "to_done_s": round(done.completed_at.timestamp() - cut_at, 3),
            "rejoin_s": round(rejoined_at - back_at, 3),
            "events": timeline,
        }

    def probe(self, phase: str, vid: str, *, submit: bool) -> None:
        """One round of what a client does: the probes, a status read, a list, the event stream, a submission."""
        self.request(phase, "GET", "/healthz")
        self.request(phase, "GET", "/readyz")
        self.request(phase, "GET", "/v1/models")
        self.request(phase, "GET", f"/v1/videos/{vid}")
        self.request(phase, "GET", "/v1/notifications?limit=5")
        self.stream_status(phase)
        self.socket_status(phase)
        if submit:  # a few per phase: each is a job to run before the run ends
            self.submit(phase, f"a quiet street in the rain, {phase} {len(self.statuses)}")

    def stream_status(self, phase: str) -> None:
        """GET /v1/events: the status line only, then the stream is dropped."""
        headers = {"Authorization": f"Bearer {self.keys[self.users[0]]}"}
        try:
            with self.http.stream("GET", self.base + "/v1/events", headers=headers) as resp:
                self.statuses.append((phase, "GET /v1/events", str(resp.status_code)))
        except Exception as exc:
            self.statuses.append((phase, "GET /v1/events", type(exc).__name__))

    def socket_status(self, phase: str) -> None:
        """/ws/events: the handshake's status, and the close code when the socket is closed at once."""
        from websockets.exceptions import ConnectionClosed, InvalidStatus
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.keys[self.users[0]]}"}
        url = self.base.replace("http://", "ws://") + "/ws/events"
        try:
            with connect(url, additional_headers=headers, open_timeout=self.args.request_timeout) as ws:
                try:
                    ws.recv(timeout=1)
                    status = "101"
                except TimeoutError:
                    status = "101"  # open, with nothing to send yet
                except ConnectionClosed as closed:
                    status = f"101 closed {closed.rcvd.code if closed.rcvd else 'without a code'}"
        except InvalidStatus as exc:
            status = str(exc.response.status_code)
        except Exception as exc:
            status = type(exc).__name__
        self.statuses.append((phase, "WS /ws/events", status))

    def redis_cut(self, n: int, vid: str) -> dict:
        phase = f"redis cut {n}"
        cut_at = time.time()
        self.net.cut_between("web", REDIS)
        print(f"  {time.strftime('%H:%M:%S')} web cut from redis ({REDIS})", flush=True)
        readyz: list[dict] = []
        rounds = 0
        while time.time() < cut_at + self.args.redis_cut_seconds:
            self.probe(phase, vid, submit=rounds % 5 == 0)
            rounds += 1
            resp = self.request(phase, "GET", "/readyz")
            if resp is not None:
                readyz.append({"http": resp.status_code, **resp.json()})
        self.net.restore_between("web", REDIS)
        back_at = time.time()
        print(f"  {time.strftime('%H:%M:%S')} web reaches redis again", flush=True)
        after = f"after redis cut {n}"
        recovered = None
        deadline = back_at + 60
        while time.time() < deadline:
            resp = self.request(after, "GET", "/readyz")
            if resp is not None and resp.status_code == 200:
                recovered = time.time() - back_at
                break
            time.sleep(0.1)
        settle, rounds = time.time() + self.args.after_seconds, 0
        while time.time() < settle:
            self.probe(after, vid, submit=rounds % 20 == 0)
            rounds += 1
        named_redis = [r for r in readyz if r["http"] == 503 and r["checks"].get("redis", "").startswith("failed")]
        return {
            "readyz_503_naming_redis": len(named_redis),
            "readyz_seen": len(readyz),
            "readyz_other": [r for r in readyz if r not in named_redis][:3],
            "recover_s": None if recovered is None else round(recovered, 3),
            "statuses": dict(Counter(f"{label} {status}" for p, label, status in self.statuses if p == phase)),
            "statuses_after": dict(Counter(f"{label} {status}" for p, label, status in self.statuses if p == after)),
        }

    def notifications_seen(self) -> dict[tuple[str, int], tuple[str, str]]:
        seen: dict[tuple[str, int], tuple[str, str]] = {}
        for user in self.users:
            after = 0
            for _ in range(1000):  # bounded: 100 a page
                resp = self.request("read back", "GET", f"/v1/notifications?after_seq={after}&limit=100", user)
                assert resp is not None and resp.status_code == 200, resp
                body = resp.json()
                for note in body["data"]:
                    seen[(user, note["seq"])] = (note["data"]["id"], note["event"])
                after = body["last_seq"]
                if not body["has_more"]:
                    break
        return seen


def fleet_state() -> str:
    """What the database says, for a failure's message."""
    from jobs.models import Job, JobEvent, Runner

    lines = ["jobs:"]
    lines += [
        f"  {row}" for row in Job.objects.order_by("id").values_list("id", "state", "attempt", "runner_id", "queue")
    ]
    lines.append("runners:")
    lines += [f"  {row}" for row in Runner.objects.values_list("name", "queue", "last_seen_at", "draining")]
    lines.append("last events:")
    events = JobEvent.objects.order_by("-id").values_list(
        "job_id", "from_state", "to_state", "attempt", "actor", "reason"
    )
    lines += [f"  {row}" for row in reversed(events[:25])]
    return "\n".join(lines)


def serve_hooks(log: str) -> None:
    """The receiver host's server: every webhook POST is a line (its webhook-id, type and video), answered 200."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    out = open(log, "a", buffering=1)  # noqa: SIM115  (the server's lifetime)

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            line = {"id": self.headers.get("webhook-id"), "type": body.get("type"), "path": self.path}
            out.write(json.dumps({**line, "video": (body.get("data") or {}).get("id")}) + "\n")
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer((HOOKS, 8080), Receiver).serve_forever()


def hooks_received(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def web_up(base: str) -> bool:
    import httpx

    try:
        return httpx.get(base + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def host_of(runner_id: str) -> str:
    return runner_id.split(":", 1)[0] if runner_id else "?"


def check(notes_seen, hooks: list[dict]) -> dict[str, list[str]]:
    """The invariants over every job of the run."""
    from jobs.models import TERMINAL, CreditEntry, Job, JobEvent
    from notifications.models import Notification

    jobs = {j.pk: j for j in Job.objects.all()}
    events: dict[int, list] = defaultdict(list)
    for e in JobEvent.objects.order_by("id").values("job_id", "from_state", "to_state", "attempt", "actor"):
        events[e["job_id"]].append(e)
    v: dict[str, list[str]] = defaultdict(list)
    for pk, job in jobs.items():
        evs = events[pk]
        ends = [e for e in evs if e["to_state"] in TERMINAL]
        if job.state not in TERMINAL or len(ends) != 1:
            v["every job ended exactly once"].append(f"{job.public_id} {job.state} {len(ends)}")
        if sum(e["from_state"] == "running" and e["to_state"] == "reviewing" for e in evs) > 1:
            v["none ran twice to completion"].append(job.public_id)
        if job.attempt != sum(e["to_state"] == "running" for e in evs):
            v["attempts counted at each claim"].append(job.public_id)
        claim = 0
        for e in evs:
            if e["to_state"] == "running":
                claim = e["attempt"]
            elif e["actor"].startswith("runner:") and e["attempt"] != claim:
                v["no write from a fenced-off attempt"].append(f"{job.public_id} {e['to_state']} by {e['attempt']}")
    ledger: dict[int, Counter] = defaultdict(Counter)
    for job_id, kind in CreditEntry.objects.filter(job__isnull=False).values_list("job_id", "kind"):
        ledger[job_id][kind] += 1
    for pk, job in jobs.items():
        entries = ledger[pk]
        if entries["charge"] > 1 or entries["reserve"] > 1:
            v["nobody charged twice"].append(f"{job.public_id} {dict(entries)}")
        if entries["reserve"] != entries["charge"] + entries["release"] or (
            entries["charge"] and job.state != "succeeded"
        ):
            v["every reservation settled once"].append(f"{job.public_id} {dict(entries)}")
    terminal = Counter(Notification.objects.filter(event__in=TERMINAL_EVENTS).values_list("job_id", flat=True))
    seen = Counter(vid for vid, event in notes_seen.values() if event in TERMINAL_EVENTS)
    for pk, job in jobs.items():
        if terminal[pk] != 1 or seen[job.public_id] != 1:
            v["notified exactly once"].append(f"{job.public_id} {terminal[pk]} stored, {seen[job.public_id]} read")
    # Webhooks, sent by the delivery host: each job's end reached its owner's receiver as one event (a retry of
    # it carries the same webhook-id, so a receiver dedupes it).
    events_by_video: dict[str, set[str]] = defaultdict(set)
    for hook in hooks:
        if hook["type"] in TERMINAL_EVENTS:
            events_by_video[hook["video"]].add(hook["id"])
    for job in jobs.values():
        if len(events_by_video[job.public_id]) != 1:
            v["each job's end delivered by webhook as one event"].append(
                f"{job.public_id} {len(events_by_video[job.public_id])} events"
            )
    return v


def warm_moderation() -> None:
    """The text classifier is trained once per machine and kept (as the gpu model is installed once): here, before
    the cpu host needs it (a worker never trains it)."""
    from moderation import textmodel

    textmodel.ensure()  # trains only when no artifact for this data is there


def start_fleet(net: hosts.Network, env: dict[str, str], workdir: Path) -> None:
    for name, _n, argv, own in ROLES:
        home = workdir / name
        (home / "metrics").mkdir(parents=True, exist_ok=True)
        # Nothing on disk is shared: each host has its own var folder, media folder and metric files.
        local = {
            "VIDEOGEN_VAR_DIR": str(home),
            "MEDIA_ROOT": str(home / "media"),
            "PROMETHEUS_MULTIPROC_DIR": str(home / "metrics"),
        }
        if name.startswith("gpu"):
            # Each gpu host signs its clips (content credentials) with a signer of its own, as set-up makes one.
            from videogen import provenance

            c2pa = home / "c2pa"
            provenance.issue_local_credentials(
                authority_path=c2pa / "ca.pem", cert_path=c2pa / "signer.pem", key_path=c2pa / "signer.key"
            )
        role = "web" if name == "web" else "worker"
        net.spawn(name, name, argv, {**os.environ, **env, **local, "VIDEOGEN_ROLE": role, **own}, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the run `make test` makes (a couple of minutes)")
    parser.add_argument("--backend", choices=("diffusers", "simulated"), default="diffusers")
    parser.add_argument("--simulated-seconds", type=float, default=4.0, help="each SIMULATED job's run time")
    parser.add_argument("--jobs", type=int, default=8, help="jobs of the spread phase")
    parser.add_argument("--gpu-cuts", type=int, default=2, help="gpu hosts' cables pulled, one after another")
    parser.add_argument("--redis-cuts", type=int, default=2, help="cuts of the web host from Redis")
    parser.add_argument("--redis-cut-seconds", type=float, default=8.0)
    parser.add_argument("--after-seconds", type=float, default=4.0, help="probing after each Redis cut")
    parser.add_argument("--lease", type=float, default=3.0, help="JOB_LEASE_SECONDS (and the runners' TTL)")
    parser.add_argument("--request-timeout", type=float, default=15.0)
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--workdir", default=str(ROOT / "var" / "multihost"))
    parser.add_argument("--serve-hooks", metavar="LOG", help=argparse.SUPPRESS)  # the receiver host's process
    args = parser.parse_args()
    if args.serve_hooks:
        serve_hooks(args.serve_hooks)
        return 0
    if args.short:
        args.jobs, args.gpu_cuts, args.redis_cuts, args.redis_cut_seconds, args.after_seconds = 4, 1, 1, 5.0, 2.0
        args.backend = "simulated"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still removes its hosts (finally)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in [*workdir.glob("*.log"), *workdir.glob("*.jsonl")]:
        old.unlink()

    started = time.time()
    try:
        hosts.check_capable()
    except hosts.Unsupported as exc:
        print(f"skipped: {exc}")
        return SKIPPED
    net = hosts.Network(workdir)
    try:
        net.open()
        net.add_host("db", 2, extra=(3,))  # Postgres on .2, Redis on .3: one host, two addresses
        net.add_host("s3", 4)
        net.add_host("hooks", 30)
        for name, n, _argv, _env in ROLES:
            net.add_host(name, n)
        print(f"hosts made in {time.time() - started:.0f}s", flush=True)
        admin = hosts.start_postgres(net, "db", DB)
        redis_url = hosts.start_redis(net, "db", REDIS)
        s3_url = hosts.start_s3(net, "s3", S3, BUCKET, PY)
        database_url = f"{admin}/videogen"
        subprocess.run(["psql", f"{admin}/postgres", "-qc", "CREATE DATABASE videogen"], check=True)
        env = fleet_env(args, database_url=database_url, redis_url=redis_url, s3_url=s3_url)
        os.environ.update(env)
        os.environ["VIDEOGEN_ROLE"] = "worker"
        os.environ.setdefault("MODELS_DIR", str(ROOT / "var" / "test-models"))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")
        print(f"postgres, redis and s3 up in {time.time() - started:.0f}s", flush=True)
        subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env={**os.environ}, check=True)
        from videogen import boot

        boot.setup()
        from gpu_runner import registry
        from gpu_runner.tiny_model import build_tiny_wan
        from jobs.accounts import api_key_create, ensure_user

        if not registry.get("wan-tiny").path.exists():
            build_tiny_wan(registry.get("wan-tiny").path)
        warm_moderation()
        keys = {}
        for i in range(args.users):
            user, _ = ensure_user(username=f"hosts-{i}", tier=("free", "paid", "internal")[i % 3])
            keys[user.username] = api_key_create(user_id=user.pk)
        print(f"schema, models and users ready in {time.time() - started:.0f}s", flush=True)
        hooks_log = workdir / "hooks.jsonl"
        net.spawn(
            "hooks", "hooks", [PY, str(Path(__file__).resolve()), "--serve-hooks", str(hooks_log)], {**os.environ}
        )
        start_fleet(net, env, workdir)
        run = Run(args, net, env, keys)
        from jobs.models import Job, Runner
        from jobs.services import db_now_plus

        run.wait(lambda: web_up(run.base), 180, "the web host")  # before it listens: not counted as answers
        run.wait(
            lambda: (
                set(Runner.objects.filter(last_seen_at__gt=db_now_plus(-2.0)).values_list("host", flat=True))
                >= set(GPU_HOSTS)
            ),
            180,
            "both gpu hosts' runners",
        )
        for i, user in enumerate(run.users):  # each user's endpoint on the receiver host
            endpoint = {"name": user, "url": f"http://{HOOKS}:8080/{user}", "event_types": sorted(TERMINAL_EVENTS)}
            resp = run.request("start", "POST", "/v1/webhook_endpoints", user, json=endpoint)
            assert resp is not None and resp.status_code in (200, 201), (i, resp and resp.text)
        ready_at = time.time()
        print(f"fleet up in {ready_at - started:.0f}s: hosts {sorted(net.hosts)}", flush=True)

        print(f"spread: {args.jobs} jobs submitted to the web host (at {time.time() - started:.0f}s)", flush=True)
        per_host = run.spread(args.jobs)
        print(f"  jobs per gpu host: {dict(per_host)}", flush=True)

        cuts = []
        for n in range(args.gpu_cuts):
            print(f"gpu cut {n + 1} (at {time.time() - started:.0f}s)", flush=True)
            cuts.append(run.gpu_cut(n + 1))
            print(f"  {cuts[-1]}", flush=True)

        redis_cuts = []
        probe_vid = run.submitted[0]
        for n in range(args.redis_cuts):
            print(f"redis cut {n + 1} (at {time.time() - started:.0f}s)", flush=True)
            redis_cuts.append(run.redis_cut(n + 1, probe_vid))
            print(f"  {redis_cuts[-1]}", flush=True)

        print(f"drain (at {time.time() - started:.0f}s)", flush=True)
        from jobs.models import TERMINAL

        run.wait(lambda: not Job.objects.exclude(state__in=TERMINAL).exists(), 300, "every job's end")
        all_per_host = Counter(
            host_of(r) for r in Job.objects.filter(state="succeeded").values_list("runner_id", flat=True)
        )
        notes_seen = run.notifications_seen()
        ended = Job.objects.count()
        run.wait(
            lambda: len({h["video"] for h in hooks_received(hooks_log) if h["type"] in TERMINAL_EVENTS}) >= ended,
            120,
            "every job's end at the webhook receiver",
        )
        hooks = hooks_received(hooks_log)
        violations = check(notes_seen, hooks)
        states = Counter(Job.objects.values_list("state", flat=True))
        finished = time.time()
    finally:
        net.close()

    http_500 = [s for s in run.statuses if s[2].startswith("5") and s[2] != "503"]
    no_answer = [s for s in run.statuses if not s[2].split()[0].isdigit()]
    if http_500:
        violations["no 500 (a store out of reach is a 503)"] = [
            f"{p}: {label} {status}" for p, label, status in http_500
        ]
    for n, rc in enumerate(redis_cuts, 1):
        if not rc["readyz_503_naming_redis"] or rc["recover_s"] is None:
            violations["/readyz names redis while cut, and recovers"].append(f"cut {n}: {rc}")
    for cut in cuts:
        if cut["rerun_on"] == cut["host"] or cut["end_state"] != "succeeded":
            violations["a cut host's job ends on the other host"].append(str(cut))
        if cut["to_running_s"] > rerun_bound(env):
            violations[f"a cut host's job runs on the other host within {rerun_bound(env):g}s"].append(str(cut))
    if set(per_host) != set(GPU_HOSTS):
        violations["jobs complete on both gpu hosts"].append(str(dict(per_host)))
    report(
        args, run, per_host, all_per_host, cuts, redis_cuts, violations, states, no_answer, hooks, finished - started
    )
    return 1 if violations else 0


def report(args, run, per_host, all_per_host, cuts, redis_cuts, violations, states, no_answer, hooks, took) -> None:
    print()
    print(f"machine: {platform.node()} {os.cpu_count()} cores; run {took:.0f}s; lease {args.lease}s")
    print("hosts: db (postgres, redis), s3 (moto), " + ", ".join(name for name, *_ in ROLES))
    print(f"jobs: {sum(states.values())} ({dict(states)}); spread phase per gpu host: {dict(per_host)}")
    print(f"succeeded per gpu host over the whole run: {dict(all_per_host)}")
    for cut in cuts:
        print(
            f"gpu cut of {cut['host']}: its job running on {cut['rerun_on']} {cut['to_running_s']:.2f}s after the "
            f"cut, done {cut['to_done_s']:.2f}s after it (attempt {cut['attempts']}); {cut['host']} back in the "
            f"fleet {cut['rejoin_s']:.2f}s after its cable"
        )
    for n, rc in enumerate(redis_cuts, 1):
        print(f"redis cut {n}: /readyz 503 naming redis {rc['readyz_503_naming_redis']}/{rc['readyz_seen']}, "
              f"ready again {rc['recover_s']}s after the link")  # fmt: skip
        print(f"  during: {rc['statuses']}")
        print(f"  after:  {rc['statuses_after']}")
    ids = Counter(h["id"] for h in hooks)
    print(f"webhooks received from the delivery host: {len(hooks)} ({len(ids)} events, {sum(ids.values()) - len(ids)} "
          "sent again)")  # fmt: skip
    statuses = Counter(status for _, _, status in run.statuses)
    print(f"every HTTP status seen: {dict(statuses)}; requests without an answer: {len(no_answer)}")
    print(f"violations: {sum(len(x) for x in violations.values())}")
    for name, found in violations.items():
        print(f"  {name}: {len(found)}  e.g. {found[:3]}")
    to_running = [c["to_running_s"] for c in cuts]
    print(
        json.dumps(
            {
                "jobs": sum(states.values()),
                "per_host": dict(per_host),
                "per_host_all": dict(all_per_host),
                "gpu_cuts": cuts,
                "cut_to_running_max_s": max(to_running) if to_running else None,
                "cut_to_running_p50_s": statistics.median(to_running) if to_running else None,
                "redis_cuts": [
                    {k: rc[k] for k in ("readyz_503_naming_redis", "recover_s", "statuses")} for rc in redis_cuts
                ],
                "statuses": dict(statuses),
                "no_answer": len(no_answer),
                "webhooks": len(hooks),
                "http_500": sum(1 for _, _, s in run.statuses if s.startswith("5") and s != "503"),
                "violations": sum(len(x) for x in violations.values()),
            }
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("TMPDIR", tempfile.gettempdir())
    sys.exit(main())
