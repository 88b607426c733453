"""How many /ws/events sockets each user has open, so that one user cannot hold a web role's sockets.

With Redis (the production profile) the count spans every web process: a sorted set per user of socket
names scored by their last sign of life; a socket refreshes its entry with every resync, and entries of
sockets whose process died age out after STALE_RESYNCS resyncs. Without Redis (the embedded profile: one
web process) a set per user in this process.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from jobs.api.ratelimit import redis_client  # the per-process Redis client the rate limiter keeps

STALE_RESYNCS = 3
KEY = "ws:sockets:{}"

_local: dict[int, set[str]] = {}
_lock = threading.Lock()


def _stale_after() -> float:
    return STALE_RESYNCS * settings.VIDEOGEN["NOTIFY_RESYNC_SECONDS"]


def admit(user_id: int, name: str) -> bool:
    """Count a new socket; False (and not counted) when the user already has WS_MAX_SOCKETS_PER_USER."""
    cap = settings.VIDEOGEN["WS_MAX_SOCKETS_PER_USER"]
    found = redis_client()
    if found is None:
        with _lock:
            names = _local.setdefault(user_id, set())
            if len(names) >= cap:
                return False
            names.add(name)
            return True
    client, prefix = found
    key, now = f"{prefix}:{KEY.format(user_id)}", time.time()
    pipe = client.pipeline(transaction=True)
    pipe.zremrangebyscore(key, "-inf", now - _stale_after())
    pipe.zadd(key, {name: now})
    pipe.zcard(key)
    pipe.expire(key, int(_stale_after()) + 1)
    count = pipe.execute()[2]
    if count > cap:
        client.zrem(key, name)
        return False
    return True


def refresh(user_id: int, name: str) -> None:
    found = redis_client()
    if found is not None:
        client, prefix = found
        key = f"{prefix}:{KEY.format(user_id)}"
        pipe = client.pipeline(transaction=False)
        pipe.zadd(key, {name: time.time()}, xx=True)
        pipe.expire(key, int(_stale_after()) + 1)
        pipe.execute()


def release(user_id: int, name: str) -> None:
    found = redis_client()
    if found is None:
        with _lock:
            _local.get(user_id, set()).discard(name)
        return
    client, prefix = found
    client.zrem(f"{prefix}:{KEY.format(user_id)}", name)
