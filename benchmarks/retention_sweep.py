"""Benchmark: reads before and after the retention sweep deletes millions of rows (Postgres, loopback only).

The sweep (jobs.services.retention.purge_expired_rows) deletes the oldest audit events, notifications (with their
webhook deliveries and attempts) and django-q2 task results along each table's primary key, in batches. This
loads a history into its own database (finished jobs of many users, each with its events and notifications, a
webhook delivery and attempt per notification for a share of them, task results), most of it past retention,
then measures one user's reads through Django's full stack (middleware, DRF, the API key, the rate limiter):

- status: GET /v1/videos/{id}
- list: GET /v1/videos?limit=20
- notifications: GET /v1/notifications?limit=20

before the sweep, right after it (dead rows not yet vacuumed), and after VACUUM ANALYZE; then reports the sweep's
rate and each read's median and p99 as a ratio to its figure before. The last line of stdout is one JSON object.

    .venv/bin/python benchmarks/retention_sweep.py [--jobs 300000] [--requests 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import fresh_db  # noqa: E402  (after the path is set)
from benchmarks.dispatch_scale import create_users, machine, pct  # noqa: E402

EVENTS_PER_JOB = 5
NOTES_PER_JOB = 4
USERS = 2000
OLD_SHARE = 0.9  # of the history past every retention


def _insert(model, count: int, overrides: dict[str, str]) -> None:
    """`count` rows of `model` from generate_series (g = 1..count): an SQL expression per column where given, else
    the field's default, so a field added later needs no change here."""
    from django.db import connection

    cols, exprs, params = [], [], []
    for f in model._meta.concrete_fields:
        if f.primary_key and f.column not in overrides:
            continue
        cols.append(f.column)
        if f.column in overrides:
            exprs.append(overrides[f.column].replace("%", "%%"))  # the statement takes parameters
        elif getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False):
            exprs.append("now()")
        else:
            exprs.append("%s")
            default = f.get_default() if f.has_default() or not f.null else None
            params.append(f.get_db_prep_save(default, connection=connection) if default is not None else None)
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {model._meta.db_table} ({', '.join(connection.ops.quote_name(c) for c in cols)}) "
            f"SELECT {', '.join(exprs)} FROM generate_series(1, %s) g",
            [*params, count],
        )


def load(jobs: int, first_user: int) -> dict[str, int]:
    """The history: `jobs` finished jobs spread over USERS users; the oldest OLD_SHARE of them ended 100 days ago."""
    from django.db import connection
    from django_q.models import Task

    from jobs.models import Job, JobEvent
    from notifications.models import Notification, WebhookAttempt, WebhookDelivery, WebhookEndpoint

    old = int(jobs * OLD_SHARE)
    age = f"CASE WHEN {{n}} <= {old} THEN now() - interval '100 days' ELSE now() - interval '1 hour' END"
    user = f"{first_user} + (g % {USERS})"
    _insert(
        Job,
        jobs,
        {
            "public_id": "'video_' || lpad(to_hex(g), 24, '0')",
            "user_id": user,
            "state": "'succeeded'",
            "model": "'wan-tiny'",
            "prompt": "'a history'",
            "seconds": "4",
            "width": "128",
            "height": "128",
            "seed": "g",
            "progress": "100",
            "credits": "7",
            "created_at": age.format(n="g"),
            "completed_at": age.format(n="g"),
        },
    )
    with connection.cursor() as cur:
        cur.execute("SELECT min(id) FROM jobs_job")
        first_job = cur.fetchone()[0]
    job = f"{first_job} + (g - 1) / {{per}}"
    nth = "((g - 1) / {per} + 1)"
    _insert(
        JobEvent,
        jobs * EVENTS_PER_JOB,
        {
            "job_id": job.format(per=EVENTS_PER_JOB),
            "from_state": "'queued'",
            "to_state": "'running'",
            "reason": "'bench'",
            "actor": "'bench'",
            "attempt": "1",
            "created_at": age.format(n=nth.format(per=EVENTS_PER_JOB)),
        },
    )
    _insert(
        Notification,
        jobs * NOTES_PER_JOB,
        {
            "user_id": f"{first_user} + (((g - 1) / {NOTES_PER_JOB} + 1) % {USERS})",
            "seq": "g",
            "job_id": job.format(per=NOTES_PER_JOB),
            "event": "'video.step'",
            "attempt": f"(g - 1) % {NOTES_PER_JOB}",
            "payload": """'{"object": "video", "prompt": "a history", "status": "completed"}'::jsonb""",
            "created_at": age.format(n=nth.format(per=NOTES_PER_JOB)),
        },
    )
    endpoint = WebhookEndpoint.objects.create(user_id=first_user, name="bench", url="https://receiver.example/hook")
    with connection.cursor() as cur:
        cur.execute("SELECT min(id) FROM notifications_notification")
        first_note = cur.fetchone()[0]
    deliveries = jobs * NOTES_PER_JOB // 10
    _insert(
        WebhookDelivery,
        deliveries,
        {
            "endpoint_id": str(endpoint.pk),
            "notification_id": f"{first_note} + (g - 1) * 10",
            "event_id": "'evt_' || lpad(to_hex(g), 24, '0')",
            "event_type": "'video.step'",
            "body": "'{}'",
            "status": "'delivered'",
            "attempts": "1",
            "created_at": age.format(n=f"((g - 1) * 10 / {NOTES_PER_JOB} + 1)"),
        },
    )
    with connection.cursor() as cur:
        cur.execute("SELECT min(id) FROM notifications_webhookdelivery")
        first_delivery = cur.fetchone()[0]
    _insert(WebhookAttempt, deliveries, {"delivery_id": f"{first_delivery} + g - 1", "number": "1"})
    tasks = jobs // 2
    _insert(
        Task,
        tasks,
        {
            "id": "md5(g::text)",
            "name": "'bench-' || g",
            "func": "'jobs.tasks.moderate_input'",
            "started": age.format(n="g * 2"),
            "stopped": age.format(n="g * 2"),
            "success": "false",
            "attempt_count": "1",
        },
    )
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO notifications_notificationcounter (user_id, last_seq, read_seq) "
            "SELECT id, %s, 0 FROM auth_user ON CONFLICT DO NOTHING",
            [jobs * NOTES_PER_JOB],
        )
        cur.execute("ANALYZE")
    return {
        "jobs": jobs,
        "events": jobs * EVENTS_PER_JOB,
        "notifications": jobs * NOTES_PER_JOB,
        "webhook_deliveries": deliveries,
        "webhook_attempts": deliveries,
        "task_results": tasks,
    }


def measure(client, paths: dict[str, str], requests: int) -> dict[str, dict[str, float]]:
    """Median and p99 milliseconds of each read, interleaved, after a warm-up."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(requests + 50):
        for name, path in paths.items():
            started = time.perf_counter()
            answer = client.get(path)
            took = (time.perf_counter() - started) * 1000
            assert answer.status_code == 200, (path, answer.status_code, answer.content[:200])
            if i >= 50:
                times[name].append(took)
    return {n: {"p50_ms": round(statistics.median(t), 3), "p99_ms": round(pct(t, 0.99), 3)} for n, t in times.items()}


def sweep() -> tuple[dict[str, int], float]:
    from jobs.services import retention

    total: dict[str, int] = {}
    started = time.perf_counter()
    while True:
        done = retention.purge_expired_rows()
        for what, n in done.items():
            total[what] = total.get(what, 0) + n
        if not any(n >= retention.ROW_BATCH for n in done.values()):
            return total, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300_000, help="finished jobs in the history")
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per read and phase")
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/videogen_retention_bench")
    args = parser.parse_args()
    os.environ.update(DATABASE_URL=args.database, LOG_LEVEL="WARNING", VIDEOGEN_ROLE="worker")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ.setdefault("SECRET_KEY", "retention-benchmark-" + "x" * 32)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")
    fresh_db.recreate(args.database, env=dict(os.environ))

    from videogen import boot

    boot.setup()
    from django.db import connection
    from django.test import Client

    from jobs.accounts import api_key_create, ensure_user
    from jobs.models import Job

    info = machine()
    print(
        f"machine   {info['host']} · {info['cores']} cores · {info['cpu']} · PostgreSQL {info['postgres']} · "
        f"Python {info['python']}"
    )
    reader, _ = ensure_user(username="reader", tier="internal")  # no rate limit: the reads are timed, not capped
    first_user, _ = create_users(USERS)
    assert first_user == reader.pk  # the reader is one of the history's users
    started = time.perf_counter()
    rows = load(args.jobs, first_user=first_user)
    loaded = time.perf_counter() - started
    print(
        f"settings  {args.jobs:,} finished jobs of {USERS:,} users, {OLD_SHARE:.0%} of the history past retention; "
        f"{args.requests} timed requests per read and phase; in-process Django test client"
    )
    print("loaded    " + ", ".join(f"{k} {v:,}" for k, v in rows.items()) + f" in {loaded:.0f} s")
    own = Job.objects.filter(user=reader).order_by("-id").first()
    assert own is not None, "the reader owns no job"
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user_id=reader.pk)}", HTTP_HOST="127.0.0.1")
    paths = {
        "status": f"/v1/videos/{own.public_id}",
        "list": "/v1/videos?limit=20",
        "notifications": "/v1/notifications?limit=20",
    }
    phases = {"before": measure(client, paths, args.requests)}
    deleted, took = sweep()
    swept = sum(deleted.values())
    print(
        f"sweep     {swept:,} rows in {took:.1f} s ({swept / took:,.0f} rows/s): "
        + ", ".join(f"{k} {v:,}" for k, v in deleted.items())
        + " (notifications count with their deliveries and attempts)"
    )
    phases["after_sweep"] = measure(client, paths, args.requests)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    phases["after_vacuum"] = measure(client, paths, args.requests)
    ratios = {
        phase: {name: round(r[name]["p50_ms"] / phases["before"][name]["p50_ms"], 3) for name in paths}
        for phase, r in phases.items()
        if phase != "before"
    }
    print(f"{'read':14} {'before p50/p99':>18} {'after sweep':>18} {'after vacuum':>18}   ratio p50 (sweep, vacuum)")
    for name in paths:
        cells = [f"{phases[p][name]['p50_ms']:.2f}/{phases[p][name]['p99_ms']:.2f} ms" for p in phases]
        print(
            f"{name:14} {cells[0]:>18} {cells[1]:>18} {cells[2]:>18}   "
            f"{ratios['after_sweep'][name]:.2f}, {ratios['after_vacuum'][name]:.2f}"
        )
    print(
        json.dumps(
            {
                "machine": info,
                "history": rows,
                "deleted": deleted,
                "sweep_seconds": round(took, 1),
                "sweep_rows_per_s": round(swept / took),
                "reads": phases,
                "p50_ratio_to_before": ratios,
            }
        )
    )


if __name__ == "__main__":
    main()
