"""Per-user, per-tier request rate limits for /v1, shared by every web process through Django's cache.

Each tier (settings.VIDEOGEN_TIERS) has two per-minute buckets, 0 meaning unlimited:
  RATE_PER_MINUTE         every API request of the user
  SUBMIT_RATE_PER_MINUTE  requests a view marks as submissions (VideosView: POST /v1/videos)
A bucket is a fixed-window counter `rl:{bucket}:{user_pk}:{window_index}` bumped atomically, so concurrent
processes never lose counts the way DRF's SimpleRateThrottle (get, append, set) does. On Redis (the cache's
LOCATION) every bucket of a request is counted in one round trip (one script: INCR, EXPIRE NX) through one
connection pool per process; Django's cache API would cost two round trips per bucket (EXISTS, INCRBY) and,
since each request runs in its own context under the web role, a new Redis connection per request. The same
round trip reads the request's key marker (jobs.api.auth), so a revoked key stops working at once in every
process. In the embedded profile (locmem) the cache's locked incr counts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpResponseBase
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from jobs.accounts import tier_limits
from jobs.api import auth
from jobs.api.errors import ApiError

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# After a cache failure this process skips the limiter for this long: one warning instead of one per request,
# and no per-request connect attempts (or socket timeouts) against a Redis that is down.
CACHE_RETRY_SECONDS = 5.0
# Where the throttle stores the headers it computed, for RateLimitedAPIView.finalize_response.
REQUEST_ATTR = "ratelimit_headers"

# cache alias -> time.monotonic() until which the limiter is bypassed (per process).
_cache_down_until: dict[str, float] = {}
# Redis URL -> client over a thread-safe connection pool (per process).
_clients: dict[str, redis.Redis] = {}
_scripts: dict[redis.Redis, Any] = {}  # client -> its COUNT_SCRIPT
REDIS_BACKEND = "django.core.cache.backends.redis.RedisCache"


def redis_location(alias: str = "default") -> tuple[str, str] | None:
    """(URL, key prefix) of a Redis-backed cache alias; None: the cache is not Redis."""
    conf = settings.CACHES[alias]
    if conf["BACKEND"] != REDIS_BACKEND:
        return None
    location = conf["LOCATION"] if isinstance(conf["LOCATION"], str) else conf["LOCATION"][0]
    return location, conf.get("KEY_PREFIX", "")


# Short timeouts: a slow or unreachable Redis must cost a request milliseconds, not seconds (fail open).
REDIS_TIMEOUTS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


def _redis_for(alias: str) -> tuple[redis.Redis, str] | None:
    """The process-wide client and key prefix for a Redis-backed cache alias (None: not Redis)."""
    found = redis_location(alias)
    if found is None:
        return None
    location, prefix = found
    client = _clients.get(location)
    if client is None:
        client = _clients[location] = redis.Redis.from_url(location, **REDIS_TIMEOUTS)
    return client, prefix


def redis_client() -> tuple[redis.Redis, str] | None:
    """The default cache's Redis client and key prefix (None: the cache is not Redis)."""
    return _redis_for("default")


@dataclass(frozen=True)
class Usage:
    """One bucket after counting this request."""

    bucket: str  # "requests" or "submits": the suffix of the x-ratelimit-* headers
    limit: int
    used: int  # including this request
    reset: float  # seconds until the window (and the counter) resets

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    def headers(self) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{self.bucket}": str(self.limit),
            f"x-ratelimit-remaining-{self.bucket}": str(max(0, self.limit - self.used)),
            f"x-ratelimit-reset-{self.bucket}": f"{max(1, math.ceil(self.reset))}s",
        }


def tier_of(user: Any) -> str:
    try:
        return user.account.tier
    except ObjectDoesNotExist:  # a user created outside ensure_user has no Account
        return "free"


def buckets_for(user: Any, submit: bool) -> list[tuple[str, int]]:
    """The user's tier buckets this request counts against: (name, per-minute limit), unlimited ones left out."""
    limits = tier_limits(tier_of(user))
    buckets = [("requests", int(limits.get("RATE_PER_MINUTE", 0)))]
    if submit:
        buckets.append(("submits", int(limits.get("SUBMIT_RATE_PER_MINUTE", 0))))
    return [(name, limit) for name, limit in buckets if limit > 0]


@dataclass(frozen=True)
class Plan:
    """What one request counts: its buckets' counters in the current window, and its key's change marker."""

    names: list[str]
    keys: list[str]
    marker: str | None
    reset: float  # seconds until the window ends


def plan_count(user: Any, key: auth.KeyAuth | None, submit: bool, now: float) -> Plan | None:
    """None: nothing to count (an unlimited tier whose key was looked up just now)."""
    buckets = buckets_for(user, submit)
    remembered = key is not None and key.remembered_since is not None
    if not buckets and not remembered:
        return None
    window = int(now // WINDOW_SECONDS)
    # Every bucket is counted, even when an earlier one refuses: the buckets share the window, so a refused
    # request's count in the submit bucket is gone when the general bucket frees up again.
    names = [name for name, _ in buckets]
    return Plan(
        names=names,
        keys=[f"rl:{name}:{user.pk}:{window}" for name in names],
        marker=auth.CHANGED_KEY.format(key.key_hash) if remembered else None,
        reset=(window + 1) * WINDOW_SECONDS - now,
    )


# Every counter of a request bumped, and given its expiry if it has none (the TTL outlives the window whatever
# second the key was created in), and the key's change marker read: one command, whatever the number of
# buckets (a pipeline of INCR, EXPIRE and GET cost the limiter a fifth more CPU in the web process).
# KEYS: the counters, then the marker if ARGV[2] is "1"; ARGV[1]: the TTL.
COUNT_SCRIPT = """
local counters = #KEYS - tonumber(ARGV[2])
local out = {}
for i = 1, counters do
  out[i] = redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[1], 'NX')
end
if ARGV[2] == '1' then out[counters + 1] = redis.call('GET', KEYS[#KEYS]) end
return out
"""


def count_call(prefix: str, keys: list[str], marker: str | None) -> dict[str, list]:
    """COUNT_SCRIPT's arguments (for a redis-py Script, sync or asyncio) for the plan's keys and marker."""
    names = [f"{prefix}:{key}" for key in keys] + ([f"{prefix}:{marker}"] if marker is not None else [])
    return {"keys": names, "args": [WINDOW_SECONDS + 1, 1 if marker is not None else 0]}


def count_replies(replies: list, keys: list[str], marker: str | None) -> tuple[list[int], bytes | None]:
    """(each counter after this request, the key's change marker or None)."""
    if marker is None:
        return replies, None
    # A missing marker (GET's nil) may end the script's array early.
    return replies[: len(keys)], replies[len(keys)] if len(replies) > len(keys) else None


def judge(plan: Plan, counts: list[int], user: Any, submit: bool) -> dict[str, str]:
    """The x-ratelimit-* headers of an allowed request; a 429 ApiError (with them) for a refused one. `user` is
    the request's user after any key change (its tier may differ from the one the plan was made for)."""
    limits = dict(buckets_for(user, submit))
    headers: dict[str, str] = {}
    for name, used in zip(plan.names, counts, strict=True):
        if name not in limits:
            continue  # the user's tier changed to one without this limit
        usage = Usage(name, limits[name], used, plan.reset)
        headers.update(usage.headers())
        if usage.exceeded:
            raise _rejection(usage, tier_of(user), headers)
    return headers


def _rejection(usage: Usage, tier: str, headers: dict[str, str]) -> ApiError:
    what = "requests" if usage.bucket == "requests" else "video submissions"
    retry_s = max(1, math.ceil(usage.reset))
    # The openai SDK prefers retry-after-ms (exact wait) over Retry-After (whole seconds); it honours either
    # when 0 < delay <= 120 s, which a 60 s window always is.
    headers["Retry-After"] = str(retry_s)
    # round() first: float noise (12.4 s -> 12400.000001 ms) must not add a millisecond.
    headers["retry-after-ms"] = str(max(1, math.ceil(round(usage.reset * 1000, 3))))
    return ApiError(
        f"Rate limit reached for {what}: {usage.limit} per minute on the {tier} tier. Try again in {retry_s} s.",
        code="rate_limit_exceeded",
        status_code=429,
        type="rate_limit_error",
        headers=dict(headers),
    )


def bypassed(alias: str = "default") -> bool:
    """The limiter is off for a moment after its cache failed."""
    return time.monotonic() < _cache_down_until.get(alias, 0.0)


def cache_failed(alias: str, exc: Exception) -> None:
    _cache_down_until[alias] = time.monotonic() + CACHE_RETRY_SECONDS
    log.warning(
        "rate limiting disabled for %ss: cache %r unavailable (%s: %s)",
        CACHE_RETRY_SECONDS,
        alias,
        type(exc).__name__,
        exc,
    )


class TierRateThrottle(BaseThrottle):
    """Counts the request against the user's tier buckets; raises a 429 ApiError when one is over its limit."""

    def __init__(self, clock: Callable[[], float] | None = None, cache_alias: str = "default") -> None:
        self.clock = clock or time.time
        self.cache_alias = cache_alias

    def allow_request(self, request: Request, view: APIView) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            return True  # authentication/permissions answer these (401) before throttles run
        submit = request.method in getattr(view, "submit_methods", ())
        if self._bypassed():
            return True
        key = request.auth if isinstance(request.auth, auth.KeyAuth) else None
        plan = plan_count(user, key, submit, self.clock())
        if plan is None:
            return True
        counted = self._count(plan.keys, plan.marker)
        if counted is None:
            return True  # fail open, and don't advertise limits we are not enforcing
        counts, changed = counted
        if changed is not None:
            auth.changed_since(request, changed)  # 401 here if the key was revoked meanwhile
        setattr(request, REQUEST_ATTR, judge(plan, counts, request.user, submit))
        return True

    def _count(self, keys: list[str], marker: str | None) -> tuple[list[int], bytes | None] | None:
        """Atomically add one to each window's counter and read the key's change marker (jobs.api.auth; None
        without Redis), in one round trip; None if the cache is unreachable."""
        try:
            found = _redis_for(self.cache_alias)
            if found is not None:
                client, prefix = found
                script = _scripts.get(client)
                if script is None:
                    script = _scripts[client] = client.register_script(COUNT_SCRIPT)
                return count_replies(script(**count_call(prefix, keys, marker)), keys, marker)
            cache = caches[self.cache_alias]
            counts = []
            for key in keys:
                try:
                    counts.append(cache.incr(key))  # the common case: the window's key exists
                except ValueError:
                    # First request of the window. add() is set-if-absent, so racing threads create it once.
                    cache.add(key, 0, timeout=WINDOW_SECONDS + 1)
                    counts.append(cache.incr(key))
            return counts, None
        except Exception as exc:  # any backend error (redis ConnectionError, TimeoutError, ...): never a 500
            cache_failed(self.cache_alias, exc)
            return None

    def _bypassed(self) -> bool:
        return bypassed(self.cache_alias)


class RateLimitedAPIView(APIView):
    """Base for every /v1 view: tier rate limits, with x-ratelimit-* headers on every response."""

    throttle_classes = [TierRateThrottle]
    # Methods that also count against SUBMIT_RATE_PER_MINUTE (VideosView: {"POST"}).
    submit_methods: ClassVar[frozenset[str]] = frozenset()

    def finalize_response(self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in (getattr(request, REQUEST_ATTR, None) or {}).items():
            response[name] = value
        return response
