"""Benchmark: the dispatcher's decision cost against the length of the queue, on Postgres (loopback only).

The policy reads a snapshot by index (the lowest tags and the oldest waits of each (tier, model)
queue), so a decision must cost the same at 1,000 queued jobs as at 1,000,000. For each size this loads that
many queued jobs (users = size / 10; tiers 80% free, 18% paid, 2% internal by user; tags ascending per user;
1% of jobs waiting out a retry backoff) into its own database, runs ANALYZE, registers S single-slot runners
on their own queues, then repeats `dispatch_once()` (each pass hands out S jobs), finishing the dispatched jobs
with a raw UPDATE and adding as many new arrivals, so the queue keeps its length. Per dispatched job it reports:

- decision: `last_pass.decision_seconds / dispatched` (snapshot reads + policy)
- pass: `last_pass.total_seconds / dispatched` (decision + the transitions' writes)
- dispatch_once: the whole call, timed outside (free-slot reads, advisory lock, commit)

and `publish_queue_summary()` at each size, the query plans of the snapshot reads, and the machine.
The last line of stdout is one JSON object.

    .venv/bin/python benchmarks/dispatch_scale.py [--sizes 1000,10000,100000,1000000] [--slots 8] [--passes 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import fresh_db  # noqa: E402  (after the path is set)

MODEL = "wan-tiny"
JOBS_PER_USER = 10


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def machine() -> dict:
    from django.db import connection

    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name")), "?")
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        pg = cur.fetchone()[0]
    return {
        "host": platform.node(),
        "cores": os.cpu_count(),
        "cpu": model,
        "postgres": pg,
        "python": platform.python_version(),
    }


def _job_columns(overrides: dict[str, str], *, copy: bool = False) -> tuple[list[str], list[str], list[object]]:
    """Every concrete column of jobs_job: an SQL expression where given, else the column itself (copy) or the
    field's Python default (so a field added later needs no change here)."""
    from jobs.models import Job

    cols, exprs, params = [], [], []
    for f in Job._meta.concrete_fields:
        if f.primary_key:
            continue
        cols.append(f.column)
        if f.column in overrides:
            exprs.append(overrides[f.column].replace("%", "%%"))  # the statement takes parameters
        elif copy:
            exprs.append(f.column)
        else:
            exprs.append("%s")
            default = f.get_default() if f.has_default() or not f.null else None
            params.append(f.get_db_prep_save(default, connection=_conn()) if default is not None else None)
    return cols, exprs, params


def _conn():
    from django.db import connection

    return connection


def create_users(n: int) -> tuple[int, int]:
    with _conn().cursor() as cur:
        cur.execute("SELECT count(*), min(id), max(id) FROM auth_user")
        count, first, last = cur.fetchone()
        if count < n:
            cur.execute(
                """INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,
                       is_active, date_joined)
                   SELECT '!', false, 'bench-' || g, '', '', '', false, true, now()
                   FROM generate_series(%s, %s) g""",
                [count + 1, n],
            )
            cur.execute("SELECT min(id), max(id) FROM auth_user")
            first, last = cur.fetchone()
    return first, last


def load(size: int, first_user: int) -> float:
    """Replace the queue by `size` queued jobs of size/10 users. Returns the seconds it took."""
    started = time.perf_counter()
    users = max(1, size // JOBS_PER_USER)
    u = f"(g % {users})"
    k = f"(g / {users})"  # the user's k-th job: tags ascend per user
    overrides = {
        "public_id": "'video_' || lpad(to_hex(g), 24, '0')",
        "user_id": f"{first_user} + {u}",
        "state": "'queued'",
        "model": f"'{MODEL}'",
        "prompt": "'bench'",
        "seconds": "4",
        "width": "128",
        "height": "128",
        "seed": "g",
        "tier": f"CASE WHEN {u} % 100 < 80 THEN 'free' WHEN {u} % 100 < 98 THEN 'paid' ELSE 'internal' END",
        "cost": "0.5 + ((g::bigint * 7919) % 10) * 0.5",
        "credits": "7",
        "vtag": f"{k} * 5.0 + ({u} * 0.37)::numeric % 50",
        # Oldest first by id, spread over the last hour.
        "queued_at": f"now() - interval '1 hour' + g * interval '3600 seconds' / {size}",
        "not_before": "CASE WHEN g % 100 = 0 THEN now() + interval '1 hour' END",
        "created_at": "now()",
    }
    cols, exprs, params = _job_columns(overrides)
    with _conn().cursor() as cur:
        cur.execute(
            "TRUNCATE jobs_job, jobs_jobevent, django_q_ormq, jobs_schedtier, jobs_schedflow, jobs_queuesummary "
            "RESTART IDENTITY CASCADE"
        )
        cur.execute(
            f"INSERT INTO jobs_job ({', '.join(cols)}) SELECT {', '.join(exprs)} FROM generate_series(1, %s) g",
            [*params, size],
        )
        cur.execute("VACUUM ANALYZE jobs_job")
    return time.perf_counter() - started


def replace_finished() -> int:
    """Finish what the pass dispatched (a raw UPDATE) and add as many new arrivals at the back of their users'
    queues, so the queue keeps its length."""
    cols, exprs, params = _job_columns(
        {
            "public_id": "'video_' || substr(md5(random()::text || id::text), 1, 24)",
            "state": "'queued'",
            "vtag": "vtag + 1000000",
            "queued_at": "now()",
            "created_at": "now()",
            "completed_at": "NULL",
            "dispatched_at": "NULL",
            "lease_expires_at": "NULL",
            "queue": "''",
        },
        copy=True,
    )
    with _conn().cursor() as cur:
        cur.execute(
            "UPDATE jobs_job SET state = 'succeeded', completed_at = now() WHERE state = 'dispatched' RETURNING id"
        )
        ids = [row[0] for row in cur.fetchall()]
        if ids:
            cur.execute(
                f"INSERT INTO jobs_job ({', '.join(cols)}) SELECT {', '.join(exprs)} FROM jobs_job WHERE id = ANY(%s)",
                [*params, ids],
            )
    return len(ids)


def explain(slots: int) -> list[str]:
    """The plans of the snapshot's reads (jobs.services.dispatch._candidates) for the free tier."""
    from jobs.models import Job
    from jobs.services import dispatch

    out = []
    cols = ("id", "user_id", "tier", "model", "vtag", "cost", "queued_at")
    base = Job.objects.filter(dispatch._runnable(), tier="free", model=MODEL)
    for order in (("vtag", "id"), ("queued_at", "id")):
        qs = base.order_by(*order).values_list(*cols)[: slots + dispatch.SNAPSHOT_SLACK]
        plan = qs.explain(analyze=True, buffers=True)
        scan = next((ln.strip() for ln in plan.splitlines() if "Scan" in ln), "?").split("  (")[0]
        removed = re.search(r"Rows Removed by Filter: (\d+)", plan)
        buffers = re.search(r"Buffers: ([^\n]+)", plan)
        took = re.search(r"Execution Time: ([\d.]+) ms", plan)
        out.append(
            f"order by {', '.join(order)}: {scan.removeprefix('->  ')}, {buffers.group(1) if buffers else '?'}, "
            f"rows removed by filter {removed.group(1) if removed else 0}, {took.group(1) if took else '?'} ms"
        )
    return out


class PolicyClock:
    """Times jobs.services.policy.decide (the pure part of the decision) as the dispatcher calls it."""

    def __init__(self) -> None:
        from jobs.services import policy

        self.policy, self.original, self.last = policy, policy.decide, 0.0

    def __enter__(self) -> PolicyClock:
        def timed(snapshot):
            started = time.perf_counter()
            try:
                return self.original(snapshot)
            finally:
                self.last = time.perf_counter() - started

        self.policy.decide = timed
        return self

    def __exit__(self, *exc: object) -> None:
        self.policy.decide = self.original


def measure(size: int, *, slots: int, passes: int, warmup: int, first_user: int, verbose: bool) -> dict:
    from jobs import services
    from jobs.services import dispatch

    users = max(1, size // JOBS_PER_USER)
    loaded = load(size, first_user)
    for i in range(slots):
        services.runner_heartbeat(name=f"bench-{i}", slots=1, model_names=[MODEL], queue=f"bench.{i}")
    decision, total, wall, pure = [], [], [], []
    with PolicyClock() as clock:
        for i in range(warmup + passes):
            started = time.perf_counter()
            n = services.dispatch_once()
            took = time.perf_counter() - started
            stats = dispatch.last_pass
            if i >= warmup and n:
                decision.append(stats.decision_seconds / n)
                total.append(stats.total_seconds / n)
                wall.append(took / n)
                pure.append(clock.last / n)
            replace_finished()
    plans = explain(slots)
    publish = []
    for _ in range(3):
        publish.append(services.publish_queue_summary())
    row = {
        "queued": size,
        "users": users,
        "load_s": round(loaded, 1),
        "passes": len(decision),
        "decision_ms_per_job_p50": round(statistics.median(decision) * 1000, 4),
        "decision_ms_per_job_p95": round(pct(decision, 0.95) * 1000, 4),
        "policy_ms_per_job_p50": round(statistics.median(pure) * 1000, 4),
        "pass_ms_per_job_p50": round(statistics.median(total) * 1000, 4),
        "pass_ms_per_job_p95": round(pct(total, 0.95) * 1000, 4),
        "dispatch_once_ms_per_job_p50": round(statistics.median(wall) * 1000, 4),
        "dispatch_once_ms_per_job_p95": round(pct(wall, 0.95) * 1000, 4),
        "publish_ms": round(statistics.median(publish) * 1000, 1),
        "plans": plans,
    }
    if verbose:
        print(
            f"{size:>9,} queued {users:>7,} users  load {loaded:6.1f} s  per dispatched job: decision p50 "
            f"{row['decision_ms_per_job_p50']:.3f} p95 {row['decision_ms_per_job_p95']:.3f} ms (policy alone "
            f"{row['policy_ms_per_job_p50']:.3f}) · pass p50 "
            f"{row['pass_ms_per_job_p50']:.3f} p95 {row['pass_ms_per_job_p95']:.3f} ms · dispatch_once p50 "
            f"{row['dispatch_once_ms_per_job_p50']:.3f} p95 {row['dispatch_once_ms_per_job_p95']:.3f} ms · "
            f"publish_queue_summary {row['publish_ms']:.1f} ms",
            flush=True,
        )
        for plan in plans:
            print(f"{'':>10}plan: {plan}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--slots", type=int, default=8, help="free single-slot runners (jobs handed out per pass)")
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/videogen_dispatch_bench")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    os.environ.update(
        DATABASE_URL=args.database,
        LOG_LEVEL="WARNING",
        VIDEOGEN_ROLE="worker",
        # Registered once, the runners stay live for the whole benchmark; no reaper runs here.
        RUNNER_TTL_SECONDS="86400",
        JOB_DISPATCH_TIMEOUT_SECONDS="86400",
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")
    fresh_db.recreate(args.database)

    from videogen import boot

    boot.setup()
    info = machine()
    print(
        f"machine   {info['host']} · {info['cores']} cores · {info['cpu']} · PostgreSQL {info['postgres']} · "
        f"Python {info['python']}"
    )
    print(
        f"settings  {args.slots} single-slot runners (jobs per pass), {args.passes} passes per size after "
        f"{args.warmup} warm-up, {JOBS_PER_USER} queued jobs per user, queue length held constant"
    )
    first_user, _ = create_users(max(sizes) // JOBS_PER_USER)
    rows = {}
    for size in sizes:
        rows[str(size)] = measure(
            size, slots=args.slots, passes=args.passes, warmup=args.warmup, first_user=first_user, verbose=True
        )
    decisions = {s: r["decision_ms_per_job_p50"] for s, r in rows.items()}
    ref = decisions.get("100000") or statistics.median(decisions.values())
    spread = {s: round((v - ref) / ref, 3) for s, v in decisions.items()}
    print(
        "decision cost relative to "
        + ("100k" if "100000" in decisions else "the median")
        + ": "
        + ", ".join(f"{int(s):,}: {v:+.1%}" for s, v in spread.items())
    )
    print(json.dumps({"machine": info, "slots": args.slots, "sizes": rows, "decision_vs_100k": spread}))


if __name__ == "__main__":
    main()
