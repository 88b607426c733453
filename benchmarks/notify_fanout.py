"""`make bench-notify`: live notifications at fan-out. N clients (websocket or SSE, one per user) stay connected
to the web role as `make run` serves it (production profile: Postgres, channels-redis) while writer processes commit
state-change notifications at a fixed rate across their users. Reports commit → client latency p50/p99 and, per
(user, seq) written, how many arrived missing or more than once (after seq dedupe a client shows each once).
Targets: p99 <= 100 ms, 0 missing, 0 duplicated. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchmarks  # noqa: E402,F401  (a throwaway SECRET_KEY)
from benchmarks import fresh_db  # noqa: E402
from benchmarks.front_door import manage_shell, stop, wait_http  # noqa: E402
from harness.platform import free_port  # noqa: E402

MAKE_USERS = """
from jobs.accounts import api_key_create, ensure_user
for i in range({n}):
    user, _ = ensure_user(username=f"fan{{i}}")
    print(user.pk, api_key_create(user_id=user.pk))
"""


async def ws_client(base: str, key: str, got: dict, ready: asyncio.Event, done: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    url = base.replace("http", "ws") + "/ws/events?last_seq=0"
    async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=60) as ws:
        ready.set()
        while not done.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            msg = json.loads(raw)
            if msg.get("type") == "notification":
                got.setdefault(msg["seq"], []).append(time.time())


async def sse_client(base: str, key: str, got: dict, ready: asyncio.Event, done: asyncio.Event) -> None:
    import httpx

    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(60, read=None)) as http,
        http.stream("GET", base + "/v1/events", headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        ready.set()

        async def read() -> None:
            async for line in resp.aiter_lines():
                if line.startswith("id: "):
                    got.setdefault(int(line[4:]), []).append(time.time())

        reader = asyncio.create_task(read())
        await done.wait()
        reader.cancel()


def writer_process(w: int, args, user_ids: list[int], t0: float, out) -> None:
    from django.db import transaction

    from notifications.services import notification_create

    rng, interval, n, written = random.Random(7 + w), args.writers / args.rate, 0, []
    while time.time() < t0 + args.duration:
        i = rng.randrange(len(user_ids))
        with transaction.atomic():
            note = notification_create(
                user_id=user_ids[i], job_id=None, event="video.completed", payload={"id": f"video_fan{w}_{n}"}
            )
        written.append((i, note.seq, time.time()))
        n += 1
        time.sleep(max(0.0, t0 + n * interval - time.time()))
    time.sleep(0.5)  # the last hints leave this process's loop
    out.send(written)


def clients_process(args, base: str, keys: list[str], start, done_flag, results) -> None:
    """The clients in a process of their own, so that the writers and the clients never share an interpreter
    lock (a client's arrival time would include the writers' turn); arrivals go back through `results`."""
    received: list[dict] = [{} for _ in keys]
    asyncio.run(run_clients(args, base, keys, received, start, done_flag))
    results.send(received)


async def run_clients(args, base: str, keys: list[str], received: list[dict], start, done_flag) -> None:
    done = asyncio.Event()
    readies = [asyncio.Event() for _ in keys]
    client = ws_client if args.transport == "ws" else sse_client
    tasks = []
    for i, key in enumerate(keys):
        tasks.append(asyncio.create_task(client(base, key, received[i], readies[i], done)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # connect in waves, as a fleet of browsers would
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=120)
    start.set()
    while not done_flag.is_set():
        await asyncio.sleep(0.1)
    done.set()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="notifications committed per second")
    parser.add_argument("--writers", type=int, default=1, help="processes committing them, each at rate/writers")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--transport", choices=["ws", "sse"], default="ws")
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/videogen_fanout")
    args = parser.parse_args()

    env = {
        **os.environ,
        "DATABASE_URL": args.database,
        "LOG_LEVEL": "ERROR",
        "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        "WS_MAX_SOCKETS_PER_USER": "5",
        "TIER_FREE_RATE_PER_MINUTE": "0",
    }
    fresh_db.recreate(args.database, env=env)
    out = manage_shell(env, MAKE_USERS.format(n=args.clients))
    users = [(int(a), b) for a, b in (line.split() for line in out.splitlines() if " vg-" in line)]
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "manage.py", "web", "--port", str(port)], cwd=ROOT, env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    os.environ.update(env, VIDEOGEN_ROLE="worker", DJANGO_SETTINGS_MODULE="videogen.settings")
    from videogen import boot

    boot.setup()
    from django.conf import settings

    written: list[tuple[int, int, float]] = []  # (client index, seq, commit time)
    fork = multiprocessing.get_context("fork")  # before any connection is opened here
    start, done = fork.Event(), fork.Event()
    results, sent = fork.Pipe(duplex=False)
    try:
        wait_http(base + "/healthz", web)
        clients = fork.Process(
            target=clients_process, args=(args, base, [k for _, k in users], start, done, sent), daemon=True
        )
        clients.start()
        if not start.wait(timeout=180):
            raise TimeoutError("the clients did not all connect")
        time.sleep(1.0)
        t0 = time.time()
        # Writer processes, as the workers whose transitions write notifications are (each its own interpreter
        # and hint loop), each at its share of the rate.
        pipes = []
        for w in range(args.writers):
            into, out = fork.Pipe(duplex=False)
            fork.Process(target=writer_process, args=(w, args, [u for u, _ in users], t0, out), daemon=True).start()
            pipes.append(into)
        for into in pipes:
            if not into.poll(timeout=args.duration + 120):
                raise TimeoutError("a writer did not report")
            written += into.recv()
        took = max((committed for *_, committed in written), default=t0) - t0  # to the last commit
        rate = len(written) / took if took > 0 else 0.0
        time.sleep(settings.VIDEOGEN["NOTIFY_RESYNC_SECONDS"] + 2)  # what a lost hint would wait for
        done.set()
        if not results.poll(timeout=120):
            raise TimeoutError("the clients did not report")
        received: list[dict] = results.recv()
        clients.join(timeout=30)
    finally:
        done.set()
        stop(web)
    latencies, missing, duplicated = [], 0, 0
    for i, seq, committed in written:
        arrivals = received[i].get(seq, [])
        if not arrivals:
            missing += 1
            continue
        duplicated += len(arrivals) > 1
        latencies.append((arrivals[0] - committed) * 1000)
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    print(
        f"machine   {platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · clients and "
        "writer on the same cores"
    )
    print(
        f"settings  {args.clients} {args.transport} clients (one per user) · {len(written)} notifications in "
        f"{took:.1f}s ({rate:.0f}/s; writer processes: {args.writers}) · web: manage.py web, "
        f"{settings.WEB_WORKERS} processes · Postgres · channels-redis"
    )
    print(f"latency   commit -> client p50 {p50:.1f} ms, p99 {p99:.1f} ms (target <= 100 ms)")
    print(
        f"delivery  {missing} missing, {duplicated} delivered more than once (targets 0, 0); after seq dedupe "
        "a client shows each once"
    )
    spread = Counter(len(r) for r in received)
    print(f"clients   notifications per client: min {min(spread)}, max {max(spread)}")
    print(
        json.dumps(
            {
                "clients": args.clients,
                "transport": args.transport,
                "notifications": len(written),
                "rate": round(rate, 1),
                "p50_ms": round(p50, 1),
                "p99_ms": round(p99, 1),
                "missing": missing,
                "duplicated": duplicated,
                "targets_met": bool(p99 <= 100 and missing == 0 and duplicated == 0),
            }
        )
    )


if __name__ == "__main__":
    main()
