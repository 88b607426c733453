"""Benchmark: submissions and status reads against a real web process on Postgres (loopback only).

Starts uvicorn (the web role) on a bench database, creates a user and key, then drives a bounded number of
requests with concurrent async clients and prints a report: machine, settings, throughput, latency
percentiles. No workers run, so every submission stays queued: this measures the API path alone.

    .venv/bin/python benchmarks/api_throughput.py [--submits 2000] [--reads 6000] [--concurrency 32] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import fresh_db  # noqa: E402  (after the path is set)
from tests.platform import free_port  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def drive(n: int, concurrency: int, request) -> tuple[float, list[float], dict[int, int]]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            status = await request(i)
            latencies.append(time.perf_counter() - start)
            codes[status] = codes.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, codes


def line(name: str, n: int, elapsed: float, lat: list[float], codes: dict[int, int]) -> str:
    return (
        f"{name:<8} {n:>6} requests  {n / elapsed:>8.0f}/s  p50 {pct(lat, 0.5):6.1f} ms  "
        f"p99 {pct(lat, 0.99):6.1f} ms  max {max(lat) * 1000:6.1f} ms  status {dict(sorted(codes.items()))}"
    )


async def run(base: str, key: str, args) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
        ids: list[str] = []

        async def submit(i: int) -> int:
            resp = await client.post("/v1/videos", json={"prompt": f"bench {i}", "size": "128x128"})
            if resp.status_code == 201:
                ids.append(resp.json()["id"])
            return resp.status_code

        async def read(i: int) -> int:
            return (await client.get(f"/v1/videos/{ids[i % len(ids)]}")).status_code

        async def page(i: int) -> int:
            return (await client.get("/v1/videos?limit=20")).status_code

        await drive(50, 8, submit)  # warm connections and caches
        results = [("submit", args.submits, *await drive(args.submits, args.concurrency, submit))]
        results.append(("read", args.reads, *await drive(args.reads, args.concurrency, read)))
        results.append(("list", args.reads // 4, *await drive(args.reads // 4, args.concurrency, page)))
    print(f"machine   {platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}")
    print(f"settings  uvicorn workers {args.workers} · concurrency {args.concurrency} · Postgres {args.database}")
    for name, n, elapsed, lat, codes in results:
        print(line(name, n, elapsed, lat, codes))
    submit_rate = results[0][1] / results[0][2]
    read_rate = results[1][1] / results[1][2]
    print(f"ratio     status reads per submission time: {read_rate / submit_rate:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submits", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/videogen_bench")
    args = parser.parse_args()
    env = {
        **os.environ,
        "DATABASE_URL": args.database,
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "LOG_LEVEL": "ERROR",
        # A paid user with its caps and rate limits lifted: the whole metered submission path (caps checked,
        # credits reserved) is measured, without the limits refusing the load.
        **{f"TIER_PAID_{f}": "0" for f in ("MAX_INFLIGHT", "MAX_QUEUED", "DAILY_JOBS", "RATE_PER_MINUTE")},
        "TIER_PAID_SUBMIT_RATE_PER_MINUTE": "0",
        "TIER_PAID_DAILY_CREDITS": str(10**12),
    }
    fresh_db.recreate(args.database, env=env)
    manage = [sys.executable, "manage.py"]
    key = (
        subprocess.run(
            [*manage, "create_api_key", "bench", "--tier", "paid"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = free_port()
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "videogen.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "error",
            "--workers",
            str(args.workers),
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        asyncio.run(run(base, key, args))
    finally:
        web.terminate()
        web.wait()


if __name__ == "__main__":
    main()
