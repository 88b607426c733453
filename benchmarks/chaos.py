"""`make chaos`: the real roles under injected faults, and a check that nothing was lost, run twice, charged
twice or notified twice.

It starts, on its own Postgres database and the production profile: the web role, two dispatchers, a cpu
cluster and several gpu clusters whose workers run the SIMULATED backend (GPU_BACKEND=simulated: the real
runner path around a drawn sleep; no GPU, no frames worth looking at). Concurrent clients of mixed tiers submit
jobs (with and without Idempotency-Key, double clicks, SDK-style retries marked x-stainless-retry-count, a
cancellation racing each completion, one poison job) while the harness, acting as the fleet's supervisor,
injects faults: SIGKILL of gpu workers and of whole gpu clusters (mid-job and idle), SIGSTOP of a cluster past
its lease then SIGCONT, SIGKILL of a dispatcher, pg_terminate_backend of every role's connections, a Postgres
restart (--postgres-restart), a Redis restart, duplicated and dropped broker messages, SIGTERM deploys of
runners.

Then it reads every job, audit event, notification and ledger row, and every client operation it recorded,
checks the invariants (table below the run), and reports two recovery figures: the time from a busy runner's
death to its job running again, and throughput while runners are killed repeatedly against none. Any
violation: exit status 1. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchmarks  # noqa: E402,F401  (a throwaway SECRET_KEY shared by every process started here)
from benchmarks import fresh_db  # noqa: E402
from benchmarks import webhook_receivers as hooks_check  # noqa: E402
from benchmarks.stream_revocation import INVARIANT as STREAMS_INVARIANT  # noqa: E402
from benchmarks.stream_revocation import RevokedStreams  # noqa: E402
from harness.platform import Platform  # noqa: E402

TIERS = ("free", "paid", "internal")
TERMINAL_EVENTS = {"video.completed", "video.failed", "video.cancelled"}
POISON = "[simulated-poison]"


def scenario_env(args) -> dict[str, str]:
    env = {
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "GPU_BACKEND": "simulated",
        "SIMULATED_P50_SECONDS": "30",
        "SIMULATED_P99_SECONDS": "120",
        "SIMULATED_TIME_FACTOR": str(args.time_factor),
        "SIMULATED_POISON_MARKER": POISON,
        "JOB_HEARTBEAT_SECONDS": str(args.heartbeat),
        "JOB_LEASE_SECONDS": str(2 * args.heartbeat),
        "RUNNER_HEARTBEAT_SECONDS": str(args.heartbeat),
        "RUNNER_TTL_SECONDS": str(3 * args.heartbeat),
        "DISPATCH_INTERVAL_SECONDS": "0.05",
        "JOB_DISPATCH_TIMEOUT_SECONDS": "3",
        "JOB_MAX_DISPATCHES": "10",
        "STAGE_RESEND_SECONDS": "4",
        "STAGE_MAX_SENDS": "10",
        "JOB_MAX_ATTEMPTS": "3",
        "JOB_RETRY_BACKOFF_SECONDS": "0.5",
        "QUEUE_PUBLISH_SECONDS": "0.5",
        "RETENTION_SWEEP_SECONDS": "0",
        "WEB_WORKERS": "2",
        "CPU_WORKERS": "2",
        "LOG_LEVEL": "WARNING",
        "POLL_AFTER_MS": "200",
        "NOTIFY_RESYNC_SECONDS": "3",  # a revocation whose broadcast a fault lost is caught within this
    }
    for tier in TIERS:  # mixed tiers share the GPUs by weight; no caps or rate limits get in the run's way
        for name in ("MAX_INFLIGHT", "MAX_QUEUED", "DAILY_JOBS", "WAIT_BOUND_SECONDS", "RATE_PER_MINUTE"):
            env[f"TIER_{tier.upper()}_{name}"] = "0"
        env[f"TIER_{tier.upper()}_SUBMIT_RATE_PER_MINUTE"] = "0"
        env[f"TIER_{tier.upper()}_DAILY_CREDITS"] = "100000000" if tier != "internal" else "-1"
    env.update(hooks_check.ENV)  # the webhook receivers (benchmarks/webhook_receivers.py)
    return env


# --- clients ---------------------------------------------------------------------------------------------


@dataclass
class Intent:
    """One video a client means to make, and every request it sent for it."""

    id: str
    kind: str  # keyed | double_click | sdk_retry | lost_answer | plain | cancel_race | poison
    user: str
    prompt: str
    key: str | None = None
    answers: list[tuple[float, int, str | None]] = field(default_factory=list)  # (time, status, video id)
    cancel: int | None = None  # the cancel's status


class Clients:
    def __init__(self, base_url: str, keys: dict[str, str], stop: threading.Event, room, seed: int) -> None:
        self.base_url, self.keys, self.stop, self.room = base_url, keys, stop, room
        self.intents: list[Intent] = []
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.errors: Counter[str] = Counter()

    def run(self, n_threads: int) -> list[threading.Thread]:
        users = list(self.keys)
        threads = [
            threading.Thread(target=self._loop, args=(users[i % len(users)], i), daemon=True) for i in range(n_threads)
        ]
        for t in threads:
            t.start()
        return threads

    def _post(self, http, user: str, intent: Intent, *, retry_count: int = 0, key: str | None = None):
        headers = {"Authorization": f"Bearer {self.keys[user]}"}
        if key:
            headers["Idempotency-Key"] = key
        if retry_count:
            headers["x-stainless-retry-count"] = str(retry_count)
        try:
            resp = http.post(f"{self.base_url}/v1/videos", json={"prompt": intent.prompt}, headers=headers)
        except Exception as exc:  # a fault on the way: the outcome is unknown to this client
            self.errors[type(exc).__name__] += 1
            intent.answers.append((time.time(), 0, None))
            return None
        vid = resp.json().get("id") if resp.status_code in (200, 201) else None
        if resp.status_code >= 500:
            self.errors[f"http {resp.status_code}"] += 1
        intent.answers.append((time.time(), resp.status_code, vid))
        return resp

    def submit(self, http, user: str, intent: Intent) -> str | None:
        """As the SDK does: a failed try (no answer, 5xx) is tried again up to twice, marked as a retry; a keyed
        intent sends its key every time."""
        for retry in range(3):
            resp = self._post(http, user, intent, retry_count=retry, key=intent.key)
            if resp is not None and resp.status_code < 500:
                return resp.json().get("id") if resp.status_code in (200, 201) else None
            time.sleep(0.2 * (retry + 1))
        return None

    def _loop(self, user: str, n: int) -> None:
        import httpx

        kinds = ["keyed", "double_click", "sdk_retry", "lost_answer", "plain", "cancel_race"]
        weights = [25, 10, 25, 10, 10, 20]
        with httpx.Client(timeout=30) as http:
            seq = 0
            while not self.stop.is_set():
                if not self.room():
                    time.sleep(0.05)
                    continue
                seq += 1
                with self.lock:
                    kind = self.rng.choices(kinds, weights)[0]
                intent = Intent(id=f"{n}-{seq}", kind=kind, user=user, prompt=f"chaos {n}-{seq} {uuid.uuid4().hex[:8]}")
                if kind in ("keyed", "double_click", "cancel_race"):
                    intent.key = uuid.uuid4().hex
                with self.lock:
                    self.intents.append(intent)
                if kind == "plain":
                    self._post(http, user, intent)
                    continue
                vid = self.submit(http, user, intent)
                if kind == "double_click":  # the same request again, with the same key, at once
                    self._post(http, user, intent, key=intent.key)
                elif kind == "lost_answer" and vid:  # the answer was lost: the SDK sends it again as a retry
                    self._post(http, user, intent, retry_count=1)
                elif kind == "cancel_race" and vid:
                    time.sleep(random.random() * 1.5)
                    try:
                        resp = http.post(
                            f"{self.base_url}/v1/videos/{vid}/cancel",
                            headers={"Authorization": f"Bearer {self.keys[user]}"},
                        )
                        intent.cancel = resp.status_code
                    except Exception as exc:
                        self.errors[type(exc).__name__] += 1

    def poison(self, user: str) -> Intent:
        import httpx

        intent = Intent(id="poison", kind="poison", user=user, prompt=f"chaos poison {POISON}", key=uuid.uuid4().hex)
        with self.lock:
            self.intents.append(intent)
        with httpx.Client(timeout=30) as http:
            self.submit(http, user, intent)
        return intent


# --- the fleet and its faults ----------------------------------------------------------------------------


class Fleet:
    """The roles, started and restarted as their supervisor would; every fault injected is logged."""

    def __init__(self, plat: Platform, n_gpus: int) -> None:
        self.plat = plat
        self.gpus = [f"gpu.chaos.{i}" for i in range(n_gpus)]
        self.faults: list[tuple[float, str, str]] = []  # (time, fault, detail)
        # A busy runner's death: (time, job id, attempt then, "worker" or "cluster").
        self.kills: list[tuple[float, int, int, str]] = []
        self.revived: list[tuple[float, str, int]] = []  # (time, role, exit code): restarted after exiting

    def start(self) -> None:
        py = sys.executable
        self.plat.manage("train_moderation")  # as `make run` does: the cpu workers load it, never train mid-run
        self.plat._start("web", [py, "manage.py", "web", "--host", "127.0.0.1", "--port", str(self.plat.port)])
        for name in ("dispatcher-1", "dispatcher-2"):
            self.plat._start(name, [py, "manage.py", "dispatch"])
        self.plat._start("cpu", [py, "manage.py", "qcluster"], OMP_NUM_THREADS="1")  # as supervisord.conf runs it
        self.plat.start_delivery()
        for name in self.gpus:
            self.plat.start_gpu(name)

    def restart(self, name: str) -> None:
        proc = self.plat.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group
        proc.wait()
        py = sys.executable
        if name.startswith("gpu"):
            self.plat.start_gpu(name)
        elif name.startswith("dispatcher"):
            self.plat._start(name, [py, "manage.py", "dispatch"])
        elif name == "delivery":
            self.plat.start_delivery()
        else:  # the cpu role
            self.plat._start(name, [py, "manage.py", "qcluster"], OMP_NUM_THREADS="1")

    def revive(self) -> None:
        """Restart every role that exited on its own, as supervisord's autorestart does (a cluster whose
        connection is terminated while it starts exits, and supervisord starts it again). Called between fault
        steps, never during one (a step restarts what it kills itself)."""
        for name, proc in list(self.plat.procs.items()):
            if proc.poll() is not None:
                self.revived.append((time.time(), name, proc.returncode))
                print(f"  {time.strftime('%H:%M:%S')} {name} exited on its own ({proc.returncode}): restarted")
                self.restart(name)

    def note(self, fault: str, detail: str = "") -> None:
        self.faults.append((time.time(), fault, detail))
        print(f"  {time.strftime('%H:%M:%S')} {fault} {detail}", flush=True)

    def runners(self, *, busy: bool | None = None) -> list[tuple[str, int, int | None, int]]:
        """Live gpu workers: (cluster, worker pid, job id in hand or None, its attempt)."""
        from jobs.models import Job, Runner

        live = Runner.objects.filter(draining=False, last_seen_at__gt=_db_ago(3.0)).values_list("name", "queue")
        holding = {
            r: (pk, att) for r, pk, att in Job.objects.filter(state="running").values_list("runner_id", "pk", "attempt")
        }
        out = []
        for name, queue in live:
            if queue not in self.plat.procs:
                continue
            job, attempt = holding.get(name, (None, 0))
            if busy is None or busy == (job is not None):
                out.append((queue, int(name.rsplit(":", 1)[1]), job, attempt))
        return out

    def kill_worker(self, *, busy: bool) -> bool:
        choices = self.runners(busy=busy)
        if not choices:
            return False
        cluster, pid, job, attempt = random.choice(choices)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        if job is not None:
            self.kills.append((time.time(), job, attempt, "worker"))
        self.note("SIGKILL gpu worker", f"{cluster} pid {pid} " + (f"mid-job {job}" if job else "idle"))
        return True

    def kill_cluster(self, *, busy: bool) -> bool:
        choices = self.runners(busy=busy)
        if not choices:
            return False
        cluster, _pid, job, attempt = random.choice(choices)
        os.killpg(self.plat.procs[cluster].pid, signal.SIGKILL)
        if job is not None:
            self.kills.append((time.time(), job, attempt, "cluster"))
        self.note("SIGKILL gpu cluster", f"{cluster} " + (f"mid-job {job}" if job else "idle"))
        time.sleep(0.5)
        self.restart(cluster)
        return True

    def stop_past_lease(self, lease: float) -> None:
        choices = self.runners(busy=True)
        if not choices:
            return
        cluster, _pid, job, _attempt = random.choice(choices)
        group = self.plat.procs[cluster].pid
        os.killpg(group, signal.SIGSTOP)
        self.note("SIGSTOP gpu cluster", f"{cluster} mid-job {job} for {3 * lease:.1f}s")
        time.sleep(3 * lease)
        os.killpg(group, signal.SIGCONT)
        self.note("SIGCONT gpu cluster", cluster)

    def kill_dispatcher(self) -> None:
        name = random.choice(["dispatcher-1", "dispatcher-2"])
        os.killpg(self.plat.procs[name].pid, signal.SIGKILL)
        self.note("SIGKILL dispatcher", name)
        time.sleep(1.0)
        self.restart(name)

    def deploy_runner(self) -> None:
        cluster = random.choice(self.gpus)
        proc = self.plat.procs[cluster]
        os.killpg(proc.pid, signal.SIGTERM)
        self.note("SIGTERM deploy of a gpu cluster", cluster)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.note("  (it did not stop in 30 s: killed)")
        self.restart(cluster)

    def terminate_backends(self) -> int:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'videogen-%%' AND pid <> pg_backend_pid()"
            )
            n = cur.fetchone()[0]
        self.note("pg_terminate_backend", f"{n} connections of the roles")
        return n

    def broker_messages(self, *, duplicate: bool) -> int:
        from django.db import connection

        if duplicate:
            with connection.cursor() as cur:
                cur.execute(  # the newest messages, each twice more (taken ones too: a redelivery after its lock)
                    "INSERT INTO django_q_ormq (key, payload, lock) SELECT key, payload, lock FROM "
                    "(SELECT * FROM django_q_ormq ORDER BY id DESC LIMIT 50) newest, generate_series(1, 2)"
                )
                n = cur.rowcount
            self.note("broker messages duplicated", f"{n}")
            return n
        # Messages are taken within milliseconds: hold the consumers of the cpu queue and of one gpu queue still
        # (less than a lease), so messages pile up, and lose every one not yet taken.
        held = [self.plat.procs["cpu"].pid, self.plat.procs[random.choice(self.gpus)].pid]
        for group in held:
            os.killpg(group, signal.SIGSTOP)
        try:
            time.sleep(0.8)
            with connection.cursor() as cur:
                cur.execute("DELETE FROM django_q_ormq WHERE lock IS NULL OR lock < now()")
                n = cur.rowcount
        finally:
            for group in held:
                os.killpg(group, signal.SIGCONT)
        self.note("broker messages dropped", f"{n} (cpu and one gpu queue held still for 0.8 s)")
        return n

    def restart_redis(self, redis_url: str) -> None:
        port = redis_url.rsplit(":", 1)[1].split("/")[0]
        subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], capture_output=True, check=False)
        self.note("Redis restart", f"port {port}")
        time.sleep(1.0)
        start_redis(port)

    def restart_postgres(self) -> None:
        self.note("Postgres restart")
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True, capture_output=True
        )


def start_redis(port: str) -> None:
    """The machine's Redis, started as docs/operating.md says, once it has stopped."""
    for _ in range(50):
        if subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
            return
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "-::1",
                "--port",
                port,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "/var/lib/redis",
                "--logfile",
                "/var/log/redis/ci.log",
            ],
            capture_output=True,
            check=False,
        )
        time.sleep(0.2)
    raise RuntimeError("Redis did not come back")


def _db_ago(seconds: float):
    from jobs.services import db_now_plus

    return db_now_plus(-seconds)


# --- the check -------------------------------------------------------------------------------------------


def check(intents: list[Intent], kills, bound: float, max_attempts: int, notes_seen) -> dict:
    from jobs.models import TERMINAL, CreditEntry, Job, JobEvent
    from notifications.models import Notification

    jobs = {j.pk: j for j in Job.objects.all()}
    events: dict[int, list] = defaultdict(list)
    for e in JobEvent.objects.order_by("id").values(
        "job_id", "from_state", "to_state", "attempt", "actor", "created_at"
    ):
        events[e["job_id"]].append(e)
    by_prompt = defaultdict(list)
    for j in jobs.values():
        by_prompt[j.prompt].append(j)
    v: dict[str, list[str]] = defaultdict(list)

    for pk, job in jobs.items():
        ends = [e for e in events[pk] if e["to_state"] in TERMINAL]
        if job.state not in TERMINAL or len(ends) != 1:
            v["every accepted job reached exactly one terminal state"].append(
                f"{job.public_id} {job.state} {len(ends)}"
            )
        elif (job.completed_at - job.created_at).total_seconds() > bound:
            v["... within its bound"].append(
                f"{job.public_id} {(job.completed_at - job.created_at).total_seconds():.0f}s"
            )
        if (
            sum(e["to_state"] == "succeeded" for e in events[pk]) > 1
            or sum(e["from_state"] == "running" and e["to_state"] == "reviewing" for e in events[pk]) > 1
        ):
            v["none ran to completion or succeeded twice"].append(job.public_id)
        claim, last = 0, 0
        for e in events[pk]:
            if e["attempt"] < last:
                v["no stale-fence write applied"].append(f"{job.public_id} attempt {e['attempt']} after {last}")
            last = max(last, e["attempt"])
            if e["to_state"] == "running":
                claim = e["attempt"]
            elif e["actor"].startswith("runner:") and e["attempt"] != claim:
                v["no stale-fence write applied"].append(f"{job.public_id} {e['to_state']} by attempt {e['attempt']}")
        claims = sum(e["to_state"] == "running" for e in events[pk])
        if job.attempt != claims:
            v["attempts counted at claim, killed ones included"].append(f"{job.public_id} {job.attempt} vs {claims}")

    # Notifications: in the log, and as each user read it through the API (deduplicated by seq).
    terminal_notes = Counter(Notification.objects.filter(event__in=TERMINAL_EVENTS).values_list("job_id", flat=True))
    for pk, job in jobs.items():
        if terminal_notes[pk] != 1:
            v["exactly one visible terminal notification per job"].append(f"{job.public_id} {terminal_notes[pk]}")
    seen_terminal = Counter(vid for vid, event in notes_seen.values() if event in TERMINAL_EVENTS)
    for job in jobs.values():
        if seen_terminal[job.public_id] != 1:
            v["exactly one visible terminal notification per job"].append(
                f"{job.public_id} via API {seen_terminal[job.public_id]}"
            )

    # Credits: one reservation and one settlement per priced job; a charge only for a success.
    ledger: dict[int, Counter] = defaultdict(Counter)
    for job_id, kind in CreditEntry.objects.filter(job__isnull=False).values_list("job_id", "kind"):
        ledger[job_id][kind] += 1
    for pk, job in jobs.items():
        entries = ledger[pk]
        if entries["charge"] > 1 or entries["reserve"] > 1:
            v["nobody charged twice"].append(f"{job.public_id} {dict(entries)}")
        settled = entries["charge"] + entries["release"]
        if entries["reserve"] != settled or (entries["charge"] and job.state != "succeeded"):
            v["every reservation settled once (charged only on success)"].append(f"{job.public_id} {dict(entries)}")

    # Duplicate submissions: one job per intent, and every success answered with that job.
    for intent in intents:
        made = by_prompt.get(intent.prompt, [])
        answered = {vid for _, status, vid in intent.answers if vid}
        if len(made) > 1 or len(answered) > 1 or (answered and {j.public_id for j in made} != answered):
            v["duplicate submissions made one job each"].append(
                f"{intent.kind} {intent.id}: {len(made)} jobs, answered {sorted(answered)}"
            )
    for intent in intents:
        for _, status, _vid in intent.answers:
            if status >= 500 and status != 503:
                v["no server error: a store going away is a 503 to retry"].append(f"{intent.id} {status}")
    poison = next((i for i in intents if i.kind == "poison"), None)
    pj = by_prompt.get(poison.prompt, [None])[0] if poison else None
    if pj is None or (pj.state, pj.attempt, pj.error_code) != ("failed", max_attempts, "generation_error"):
        v["the poison job failed after the maximum attempts"].append(f"{pj and (pj.state, pj.attempt, pj.error_code)}")

    # Recovery: a busy runner's death to its job running again (its next claim).
    recoveries: dict[str, list[float]] = {"worker": [], "cluster": []}
    unrecovered = []
    for t_kill, job_id, attempt, kind in kills:
        evs, job = events[job_id], jobs[job_id]
        again = next((e for e in evs if e["to_state"] == "running" and e["attempt"] > attempt), None)
        if again is not None:
            recoveries[kind].append(max(0.0, again["created_at"].timestamp() - t_kill))
        elif job.state == "cancelled" or (job.state == "failed" and job.attempt >= max_attempts):
            continue  # cancelled meanwhile, or that was its last attempt
        elif any(e["attempt"] == attempt and e["from_state"] == "running" for e in evs):
            continue  # the attempt had ended (completed or given back) before the kill landed
        else:
            unrecovered.append(job.public_id)
    states = Counter(j.state for j in jobs.values())
    return {
        "violations": v,
        "jobs": len(jobs),
        "states": states,
        "recoveries": recoveries,
        "unrecovered": unrecovered,
        "intents": len(intents),
    }


def read_notifications(base_url: str, keys: dict[str, str]) -> dict[tuple[str, int], tuple[str, str]]:
    """Every user's notifications through the API, page by page, deduplicated by (user, seq)."""
    import httpx

    seen: dict[tuple[str, int], tuple[str, str]] = {}
    with httpx.Client(timeout=30) as http:
        for user, key in keys.items():
            after = 0
            while True:
                body = http.get(
                    f"{base_url}/v1/notifications",
                    params={"after_seq": after, "limit": 100},
                    headers={"Authorization": f"Bearer {key}"},
                ).json()
                for n in body["data"]:
                    seen[(user, n["seq"])] = (n["data"]["id"], n["event"])
                after = body["last_seq"]
                if not body["has_more"]:
                    break
    return seen


def completions_between(t0: float, t1: float) -> int:
    import datetime as dt

    from jobs.models import JobEvent

    utc = dt.UTC
    return JobEvent.objects.filter(
        to_state="succeeded",
        created_at__gte=dt.datetime.fromtimestamp(t0, utc),
        created_at__lt=dt.datetime.fromtimestamp(t1, utc),
    ).count()


# --- the run ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="accepted jobs to aim for")
    parser.add_argument("--gpus", type=int, default=4, help="gpu clusters (one SIMULATED slot each)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--users", type=int, default=12, help="users, spread over the tiers")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of the baseline and the kill phase")
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between runner kills in that phase")
    parser.add_argument("--heartbeat", type=float, default=0.5, help="JOB_HEARTBEAT_SECONDS (the lease is 2x)")
    parser.add_argument("--time-factor", type=float, default=0.01, help="the simulated 30 s median becomes 0.3 s")
    parser.add_argument("--bound", type=float, default=180.0, help="most seconds from submission to the end")
    parser.add_argument("--postgres-restart", action="store_true", help="restart Postgres (else only terminate)")
    parser.add_argument("--no-redis-restart", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/videogen_chaos")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--workdir", default=str(ROOT / "var" / "chaos"))
    args = parser.parse_args()
    random.seed(args.seed)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("*.log"):
        old.unlink()

    env = scenario_env(args)
    os.environ.update(env)
    os.environ["VIDEOGEN_ROLE"] = "worker"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")
    fresh_db.recreate(args.database_url, env={**os.environ})
    from videogen import boot

    boot.setup()
    from django.db import close_old_connections, connection

    from jobs.accounts import api_key_create, ensure_user
    from jobs.models import TERMINAL, Job

    keys = {}
    for i in range(args.users):
        user, _ = ensure_user(username=f"chaos-{i}", tier=TIERS[i % len(TIERS)])
        keys[user.username] = api_key_create(user_id=user.pk)
    # Webhook receivers, a dripping and a NUL-byte one among them; their users are read back with the others.
    hooks = hooks_check.SlowReceivers()
    hook_keys = hooks.setup(keys)

    plat = Platform(database_url=args.database_url, redis_url=args.redis_url, workdir=workdir, extra_env=env)
    fleet = Fleet(plat, args.gpus)
    # A key revoked while its streams are open (a step of phase 3); its user is read back with the others.
    streams = RevokedStreams(plat.base_url, bound=float(env["NOTIFY_RESYNC_SECONDS"]) + 15)
    stream_keys = streams.setup()
    stop = threading.Event()
    backlog_cap = 4 * args.gpus
    unfinished = [0]
    lock = threading.Lock()

    def watch_backlog() -> None:
        while not stop.is_set():
            try:
                close_old_connections()
                n = Job.objects.exclude(state__in=TERMINAL).count()
                with lock:
                    unfinished[0] = n
            except Exception:
                connection.close()
            time.sleep(0.2)

    def room() -> bool:
        with lock:
            return unfinished[0] < backlog_cap and accepted() < args.jobs

    def accepted() -> int:
        return sum(1 for i in clients.intents if any(s in (200, 201) for _, s, _ in i.answers))

    started = time.time()
    clients = Clients(plat.base_url, keys, stop, room, args.seed)
    print(f"chaos: {args.gpus} gpu clusters (SIMULATED backend), 2 dispatchers, web, cpu; {args.clients} clients")
    try:
        fleet.start()
        _wait_web(plat)
        _wait_for(lambda: len(fleet.runners()) >= args.gpus, 120, plat, "gpu runners")
        threading.Thread(target=watch_backlog, daemon=True).start()
        clients.poison("chaos-0")
        hooks.submit(plat.base_url)
        # The cpu stage loads its moderation models with its first job (seconds): wait that out, so the
        # baseline below measures throughput, not a model load.
        _wait_for(lambda: Job.objects.exclude(state="pending").exists(), 120, plat, "the first moderation")
        threads = clients.run(args.clients)
        time.sleep(3)

        print("phase 1: no faults (baseline throughput)")
        b0 = time.time()
        time.sleep(args.window)
        b1 = time.time()

        print(f"phase 2: a runner killed every {args.kill_every:.1f}s (mid-job)")
        k0 = time.time()
        while time.time() < k0 + args.window:
            fleet.revive()
            fleet.kill_worker(busy=True)
            time.sleep(args.kill_every)
        k1 = time.time()

        print("phase 3: every other fault")
        lease = 2 * args.heartbeat
        steps = [
            lambda: fleet.kill_cluster(busy=True),
            lambda: fleet.stop_past_lease(lease),
            fleet.kill_dispatcher,
            fleet.terminate_backends,
            lambda: fleet.broker_messages(duplicate=True),
            fleet.deploy_runner,
            lambda: fleet.broker_messages(duplicate=False),
            fleet.terminate_backends,
            fleet.restart_postgres if args.postgres_restart else fleet.terminate_backends,
            (lambda: None) if args.no_redis_restart else (lambda: fleet.restart_redis(args.redis_url)),
            lambda: fleet.kill_worker(busy=True),
            fleet.terminate_backends,
            lambda: (fleet.note("key revoked mid-stream"), streams.run()),
        ]
        rounds = 0
        while accepted() < args.jobs or rounds == 0:
            for step in steps:
                fleet.revive()
                try:
                    close_old_connections()
                    step()
                except Exception as exc:  # the harness's own connection may be among those terminated
                    connection.close()
                    fleet.note("  (fault step hiccup)", f"{type(exc).__name__}: {exc}")
                time.sleep(random.uniform(1.0, 2.5))
            rounds += 1
            print(f"  round {rounds}: {accepted()} jobs accepted")

        print("phase 4: drain, then idle faults")
        stop.set()
        for t in threads:
            t.join(timeout=60)
        deadline = time.time() + args.bound
        while time.time() < deadline:
            fleet.revive()
            close_old_connections()
            if not Job.objects.exclude(state__in=TERMINAL).exists():
                break
            time.sleep(0.5)
        fleet.kill_worker(busy=False)
        fleet.kill_cluster(busy=False)

        def runners_back() -> bool:
            fleet.revive()
            return len(fleet.runners()) >= args.gpus

        _wait_for(runners_back, 60, plat, "gpu runners after the idle kills")
        hooks.drain()
        close_old_connections()
        notes_seen = read_notifications(plat.base_url, {**keys, **stream_keys})
        notes_seen.update(read_notifications(plat.base_url, hook_keys))
        finished = time.time()
    finally:
        stop.set()
        plat.stop()
        hooks.close()
        if not args.no_redis_restart:
            start_redis(args.redis_url.rsplit(":", 1)[1].split("/")[0])

    close_old_connections()
    result = check(clients.intents, fleet.kills, args.bound, int(env["JOB_MAX_ATTEMPTS"]), notes_seen)
    result["violations"].update(hooks.found())
    result["violations"][STREAMS_INVARIANT] = streams.found()
    baseline = completions_between(b0, b1) / (b1 - b0)
    under_kills = completions_between(k0, k1) / (k1 - k0)
    recoveries, unrecovered = result["recoveries"], len(result["unrecovered"])
    target = 2 * args.heartbeat + float(env["DISPATCH_INTERVAL_SECONDS"])
    report(args, result, clients, fleet, baseline, under_kills, recoveries, unrecovered, target, finished - started)
    ok = not any(result["violations"].values()) and unrecovered == 0  # keys with empty lists are clean
    return 0 if ok else 1


def _wait_web(plat: Platform) -> None:
    from urllib.request import urlopen

    def up() -> bool:
        try:
            with urlopen(plat.base_url + "/healthz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    _wait_for(up, 120, plat, "the web role")


def _wait_for(check_fn, timeout: float, plat: Platform, what: str) -> None:
    from django.db import close_old_connections

    deadline = time.time() + timeout
    while time.time() < deadline:
        close_old_connections()
        if check_fn():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}\n{plat.logs()}")


INVARIANTS = [
    "every accepted job reached exactly one terminal state",
    "... within its bound",
    "none ran to completion or succeeded twice",
    "no stale-fence write applied",
    "exactly one visible terminal notification per job",
    "nobody charged twice",
    "every reservation settled once (charged only on success)",
    "attempts counted at claim, killed ones included",
    "the poison job failed after the maximum attempts",
    "duplicate submissions made one job each",
    "no server error: a store going away is a 503 to retry",
    STREAMS_INVARIANT,
]
INVARIANTS += hooks_check.INVARIANTS


def _r(values: list[float], f) -> float | None:
    return round(f(values), 3) if values else None


def report(args, result, clients, fleet, baseline, under_kills, recoveries, unrecovered, target, took) -> None:
    v = result["violations"]
    faults = Counter(f for _, f, _ in fleet.faults if not f.startswith(" "))
    kinds = Counter(i.kind for i in clients.intents)
    print()
    print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.python_version()}; run {took:.0f}s")
    print(
        f"settings: {args.gpus} gpu clusters, simulated median {30 * args.time_factor:.2f}s, heartbeat "
        f"{args.heartbeat}s, lease {2 * args.heartbeat}s, {args.clients} clients, {args.users} users"
    )
    print(f"jobs: {result['jobs']} accepted from {result['intents']} intents ({dict(kinds)})")
    print(f"end states: {dict(result['states'])}")
    print(f"faults injected: {dict(faults)}")
    exits = [f"{name} ({code})" for _, name, code in fleet.revived]
    print(f"roles that exited on their own and were restarted (as supervisord does): {exits or 'none'}")
    print(f"client-side errors while faults ran (answers retried as the SDK does): {dict(clients.errors)}")
    print()
    width = max(len(name) for name in INVARIANTS)
    print(f"{'invariant':<{width}}  violations")
    for name in INVARIANTS:
        found = v.get(name, [])
        print(f"{name:<{width}}  {len(found)}" + (f"   e.g. {found[:3]}" if found else ""))
    print()
    everything = recoveries["worker"] + recoveries["cluster"]
    p50 = statistics.median(everything) if everything else float("nan")
    worst = max(everything) if everything else float("nan")
    ratio = under_kills / baseline if baseline else float("nan")
    print(
        "recovery, a busy runner's death to its job running again "
        f"(target <= {target:.2f}s = 2 x heartbeat + dispatch interval):"
    )
    for kind, how in (("worker", "its cluster replaces it"), ("cluster", "restarted by its supervisor")):
        got = recoveries[kind]
        if got:
            mid = statistics.median(got)
            print(f"  {kind} SIGKILL ({how}): p50 {mid:.2f}s, max {max(got):.2f}s over {len(got)} kills")
    print(f"  all: p50 {p50:.2f}s, max {worst:.2f}s; {unrecovered} killed runners' jobs never ran again")
    print(
        f"throughput: {baseline:.2f} jobs/s without faults, {under_kills:.2f} jobs/s with a runner killed every "
        f"{args.kill_every:.1f}s: {ratio:.1%} (target >= 90%)"
    )
    print(
        json.dumps(
            {
                "jobs": result["jobs"],
                "violations": sum(len(x) for x in v.values()),
                "faults": sum(faults.values()),
                "recovery_p50_s": round(p50, 3),
                "recovery_max_s": round(worst, 3),
                "recovery_target_s": target,
                "recovery_worker_p50_s": _r(recoveries["worker"], statistics.median),
                "recovery_cluster_p50_s": _r(recoveries["cluster"], statistics.median),
                "unrecovered": unrecovered,
                "throughput_baseline": round(baseline, 3),
                "throughput_under_kills": round(under_kills, 3),
                "throughput_ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
