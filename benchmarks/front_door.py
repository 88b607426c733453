"""`make bench`: the front door at peak, against the bare DRF reference in the same run (loopback only).

Starts the reference (`benchmarks/reference`: validate + one INSERT / one SELECT, gunicorn with 4 sync
workers) and the project's web role exactly as `make run` serves it (`manage.py web`, same processes and
settings, production profile on Postgres and Redis; no workers run, as the reference has none). Drives both
with wrk (same threads, connections and duration) in the order reference, project, reference, then measures
list latency with the jobs table at 10k rows and again at 10M rows. Prints a report and one JSON line last.

The project's submissions run the whole path with the paid tier's default limits: bearer auth, both
rate-limit buckets, the caps, the credit reservation, the job, its audit event and its moderation task. The
load comes from --users paid users in turn (each user's submissions are serialised on their account row, as
caps and credits require, so a peak of 1,000 submissions/s comes from many users), few enough per user that
no limit refuses one.

    .venv/bin/python benchmarks/front_door.py [--duration 12] [--connections 32] [--users 1024]
        [--list-rows 10000000] [--skip-list-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import fresh_db  # noqa: E402  (after the path is set)
from harness.platform import free_port  # noqa: E402

WRK_DIR = ROOT / "benchmarks" / "wrk"
REFDRF = ROOT / "benchmarks" / "reference" / "serve.sh"
FLOOR = ROOT / "benchmarks" / "floor" / "serve.sh"
PG = "postgres://postgres@127.0.0.1:5432"

TARGETS = {
    "submit_rps": 1000,
    "submit_ratio": 0.6,
    "submit_p99_ms": 50,
    "read_ratio": 0.9,
    "read_p99_ms": 20,
    "list_ratio": 0.5,
    "list_10m_over_10k": 1.5,
}


def wrk(url: str, script: str, env: dict[str, str], *, duration: float, connections: int, threads: int = 2) -> dict:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_DIR / script),
    ]
    out = subprocess.run(
        [*cmd, url], env={**os.environ, "WRK_DIR": str(WRK_DIR), **env}, capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(url)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def project_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        "LOG_LEVEL": "ERROR",
    }


def lines_file(name: str, lines: list[str]) -> str:
    path = ROOT / "var" / "bench" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


MAKE_USERS = """
from jobs.accounts import api_key_create, ensure_user
for i in range({n}):
    user, _ = ensure_user(username=f"bench{{i}}", tier="paid")
    print(api_key_create(user_id=user.pk))
"""


def manage_shell(env: dict[str, str], code: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**env, "VIDEOGEN_ROLE": "worker"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def make_users(env: dict[str, str], n: int) -> list[str]:
    out = manage_shell(env, MAKE_USERS.format(n=n))
    return [word for word in out.split() if word.startswith("vg-")]  # shell also prints what it imported


def psql(url: str, sql: str) -> str:
    done = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"psql failed: {done.stderr.strip()}\n{sql}")
    return done.stdout.strip()


# Rows of one user's history, straight into the table (the API would take hours for 10M): finished jobs.
FILL = """
INSERT INTO jobs_job (public_id, user_id, state, model, prompt, seconds, width, height, seed, reference_key,
    request_hash, attempt, runner_id, progress, video_key, thumbnail_key, error_code, error_message, created_at,
    stage_sends, cost, credits, queue, tier, completed_at)
SELECT 'video_' || lpad(to_hex({offset} + i), 24, '0'), ({users})[1 + (i % array_length({users}, 1))], 'succeeded',
    'wan-tiny', 'filler ' || i, 4, 128, 128, i, '', '', 1, '', 100, 'videos/x.mp4', 'thumbs/x.webp', '', '',
    now() - interval '1 day', 1, 1.0, 1, '', 'paid', now() - interval '1 day'
FROM generate_series(1, {count}) AS i
"""


def fill(url: str, *, users: list[int], count: int, offset: int) -> float:
    started = time.perf_counter()
    array = "ARRAY[" + ",".join(map(str, users)) + "]"
    psql(url, FILL.format(users=array, count=count, offset=offset))
    # As a settled table would be (visibility map, hint bits, statistics), and so that no autovacuum of the new
    # rows runs while the latency is measured.
    psql(url, "VACUUM (ANALYZE) jobs_job")
    return time.perf_counter() - started


def list_latency(base: str, key: str, env: dict[str, str], cursors: list[str], duration: float) -> dict:
    """First pages and deep cursor pages of one user's list, at low concurrency (latency, not throughput)."""
    paths = ["/v1/videos?limit=20"] + [f"/v1/videos?limit=20&after={c}" for c in cursors]
    requests = {"WRK_REQUESTS": lines_file("list-scale.txt", [f"{key} {p}" for p in paths])}
    wrk(base, "get_paths.lua", requests, duration=1, connections=2, threads=1)  # warm: pages and key cached
    return wrk(base, "get_paths.lua", requests, duration=duration, connections=2, threads=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=1024)
    parser.add_argument("--list-rows", type=int, default=10_000_000)
    parser.add_argument("--skip-list-scale", action="store_true")
    parser.add_argument("--database", default=f"{PG}/videogen_bench")
    parser.add_argument("--ref-database", default=f"{PG}/videogen_ref")
    parser.add_argument("--floor-database", default=f"{PG}/videogen_floor")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk); `make bench` installs it.")
    if not REFDRF.exists():
        sys.exit(f"the reference is missing: {REFDRF}")

    env = project_env(args.database)
    fresh_db.recreate(args.database, env=env)
    psql(f"{PG}/postgres", f"DROP DATABASE IF EXISTS {args.ref_database.rsplit('/', 1)[1]} WITH (FORCE)")
    keys = make_users(env, args.users)
    serving = manage_shell(env, "from django.conf import settings; print(settings.WEB_WORKERS, settings.WEB_THREADS)")
    web_workers, web_threads = map(int, serving.split()[-2:])

    ref_port, floor_port, port = free_port(), free_port(), free_port()
    ref = subprocess.Popen(
        [str(REFDRF), str(ref_port), args.ref_database],
        env={**os.environ, "PYTHON": sys.executable},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    floor = subprocess.Popen(
        [str(FLOOR), str(floor_port), args.floor_database],
        env={**env, "PYTHON": sys.executable, "FLOOR_USERS": str(args.users)},
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    web = subprocess.Popen(
        [sys.executable, "manage.py", "web", "--port", str(port)], cwd=ROOT, env=env, start_new_session=True
    )
    ref_base, base = f"http://127.0.0.1:{ref_port}", f"http://127.0.0.1:{port}"
    floor_base = f"http://127.0.0.1:{floor_port}"
    run = dict(duration=args.duration, connections=args.connections)
    results: dict[str, dict] = {}
    try:
        wait_http(base + "/healthz", web)
        for _ in range(600):  # serve.sh creates its database and table first
            if httpx.post(ref_base + "/jobs", json={"prompt": "warm"}, timeout=5).status_code == 201 or time.sleep(0.1):
                break
        wait_http(floor_base + "/jobs/none", floor, timeout=120)
        body = json.dumps({"prompt": "a lighthouse at dawn, waves breaking", "size": "128x128"})
        ref_reads = {"WRK_REQUESTS": lines_file("ref-reads.txt", [f"- /jobs/{i}" for i in range(1, 65)])}
        submits = {"WRK_BODY": body, "WRK_KEYS": lines_file("keys.txt", keys)}

        def reference(tag: str) -> None:
            results[f"ref_submit_{tag}"] = wrk(ref_base + "/jobs", "post_json.lua", {"WRK_BODY": body}, **run)
            results[f"ref_read_{tag}"] = wrk(ref_base, "get_paths.lua", ref_reads, **run)

        # Warm both (connections, caches), then measure: reference, project, reference.
        wrk(ref_base + "/jobs", "post_json.lua", {"WRK_BODY": body}, duration=2, connections=8)
        wrk(base + "/v1/videos", "post_json.lua", submits, duration=1, connections=8)
        reference("before")
        floor_keys = {
            "WRK_BODY": body,
            "WRK_KEYS": lines_file("floor-keys.txt", [f"floor-{n}" for n in range(args.users)]),
        }
        wrk(floor_base + "/jobs", "post_json.lua", floor_keys, duration=1, connections=8)
        results["floor_submit"] = wrk(floor_base + "/jobs", "post_json.lua", floor_keys, **run)
        owned = psql(args.floor_database, "SELECT DISTINCT ON (user_id) user_id, public_id FROM floorjobs_job")
        floor_reads = [f"floor-{line.split('|')[0]} /jobs/{line.split('|')[1]}" for line in owned.splitlines()]
        reads_file = lines_file("floor-reads.txt", floor_reads)
        results["floor_read"] = wrk(floor_base, "get_paths.lua", {"WRK_REQUESTS": reads_file}, **run)
        results["submit"] = wrk(base + "/v1/videos", "post_json.lua", submits, **run)
        # Each user reads one of their own videos and lists their own; the ids come from the API itself.
        reads, lists = [], []
        with httpx.Client(base_url=base) as client:
            for key in keys:
                page = client.get("/v1/videos?limit=1", headers={"Authorization": f"Bearer {key}"}).json()
                if page["data"]:  # a short run may not reach every user
                    reads.append(f"{key} /v1/videos/{page['data'][0]['id']}")
                    lists.append(f"{key} /v1/videos?limit=20")
        results["read"] = wrk(base, "get_paths.lua", {"WRK_REQUESTS": lines_file("reads.txt", reads)}, **run)
        results["list"] = wrk(base, "get_paths.lua", {"WRK_REQUESTS": lines_file("lists.txt", lists)}, **run)
        reference("after")

        scale = None
        if not args.skip_list_scale:
            scale = list_scale(args, env, base)
    finally:
        stop(web)
        stop(ref)
        stop(floor)
    report(args, results, scale, web_workers, web_threads)


def list_scale(args, env: dict[str, str], base: str) -> dict:
    """List latency for a user with 10k videos in a 10k-row table, then in a table of --list-rows rows."""
    url = args.database
    psql(url, "TRUNCATE jobs_job CASCADE")
    key = make_users(env, 1)[0]  # bench0 again: a fresh key, the same user
    uid = int(psql(url, "SELECT id FROM auth_user WHERE username = 'bench0'"))
    others = [int(x) for x in psql(url, "SELECT id FROM auth_user WHERE username <> 'bench0'").split()]
    small = 10_000
    filled = {"10k": fill(url, users=[uid], count=small, offset=0)}
    cursors = psql(url, f"SELECT public_id FROM jobs_job WHERE user_id = {uid} ORDER BY id DESC OFFSET 5000 LIMIT 3")
    at_10k = list_latency(base, key, env, cursors.split(), duration=args.duration / 2)
    # The rest of the table: a long history for this user too (a tenth), the rest spread over the others.
    rest = args.list_rows - small
    filled["own"] = fill(url, users=[uid], count=rest // 10, offset=small)
    filled["others"] = fill(url, users=others, count=rest - rest // 10, offset=small + rest // 10)
    rows = int(psql(url, "SELECT count(*) FROM jobs_job"))
    at_big = list_latency(base, key, env, cursors.split(), duration=args.duration / 2)
    return {"rows": rows, "at_10k": at_10k, "at_big": at_big, "fill_seconds": filled}


def report(args, results: dict, scale: dict | None, web_workers: int, web_threads: int) -> None:
    def mean(a: str, b: str, field: str) -> float:
        return (results[a][field] + results[b][field]) / 2

    ref_submit = mean("ref_submit_before", "ref_submit_after", "rps")
    ref_read = mean("ref_read_before", "ref_read_after", "rps")
    print(
        f"machine   {platform.node()} · {os.cpu_count()} cores · {platform.machine()} · Python "
        f"{platform.python_version()} · wrk on the same cores"
    )
    print(
        f"settings  wrk -t2 -c{args.connections} -d{args.duration:g}s · web: manage.py web, {web_workers} processes x "
        f"{web_threads} threads · {args.users} paid users · Postgres · Redis"
    )
    print(f"{'run':<20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'errors':>7}")
    for name, r in results.items():
        print(
            f"{name:<20} {r['rps']:>8.0f} {r['p50_us'] / 1000:>8.1f} {r['p99_us'] / 1000:>8.1f} "
            f"{r['non2xx']:>8} {r['socket_errors']:>7}"
        )
    summary = {
        "submit_rps": round(results["submit"]["rps"]),
        "submit_p99_ms": round(results["submit"]["p99_us"] / 1000, 1),
        "submit_ratio": round(results["submit"]["rps"] / ref_submit, 3),
        "submit_non2xx": results["submit"]["non2xx"],
        "read_rps": round(results["read"]["rps"]),
        "read_p99_ms": round(results["read"]["p99_us"] / 1000, 1),
        "read_ratio": round(results["read"]["rps"] / ref_read, 3),
        "list_rps": round(results["list"]["rps"]),
        "list_ratio": round(results["list"]["rps"] / ref_read, 3),
        "ref_submit_rps": round(ref_submit),
        "ref_read_rps": round(ref_read),
        # The invariants' floor (benchmarks/floor): the reference plus only what the invariants require.
        "floor_submit_ratio": round(results["floor_submit"]["rps"] / ref_submit, 3),
        "floor_read_ratio": round(results["floor_read"]["rps"] / ref_read, 3),
        "submit_over_floor": round(results["submit"]["rps"] / results["floor_submit"]["rps"], 3),
        "read_over_floor": round(results["read"]["rps"] / results["floor_read"]["rps"], 3),
    }
    if scale is not None:
        small, big = scale["at_10k"], scale["at_big"]
        print(
            f"list latency, 2 connections: 10k rows p50 {small['p50_us'] / 1000:.2f} ms (mean "
            f"{small['mean_us'] / 1000:.2f}); {scale['rows']:,} rows p50 {big['p50_us'] / 1000:.2f} ms (mean "
            f"{big['mean_us'] / 1000:.2f}); filled in {sum(scale['fill_seconds'].values()):.0f} s"
        )
        summary["list_rows"] = scale["rows"]
        summary["list_10m_over_10k"] = round(big["mean_us"] / small["mean_us"], 3)
    met = {
        "submit": summary["submit_rps"] >= TARGETS["submit_rps"]
        and summary["submit_ratio"] >= TARGETS["submit_ratio"]
        and summary["submit_p99_ms"] <= TARGETS["submit_p99_ms"]
        and summary["submit_non2xx"] == 0,
        "read": summary["read_ratio"] >= TARGETS["read_ratio"] and summary["read_p99_ms"] <= TARGETS["read_p99_ms"],
        "list": summary["list_ratio"] >= TARGETS["list_ratio"],
    }
    if "list_10m_over_10k" in summary:
        met["list_scale"] = summary["list_10m_over_10k"] <= TARGETS["list_10m_over_10k"]
    summary["targets_met"] = met
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
