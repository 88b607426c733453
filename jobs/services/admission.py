"""Admission: may this user's new job in? A pure decision over the user's usage and their tier's limits.

Order: a moderation cooldown, then the day's job cap, then unfinished jobs (concurrency), then waiting jobs
(queue), then the tier's estimated wait (capacity). Credits are checked where they are reserved
(jobs.services.credits). `count_block` decides when repeated blocks start a cooldown (jobs.services.abuse).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    jobs_today: int
    unfinished: int  # pending .. reviewing
    waiting: int  # pending, queued, dispatched: not yet on a GPU


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    retry_after: int


def seconds_to_midnight(now: dt.datetime) -> int:
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((tomorrow - now).total_seconds()))


def count_block(recent: Sequence[float], *, at: float, blocks: int, window: float) -> tuple[list[float], bool]:
    """One more input-stage block of a user's prompt, at `at` (epoch seconds), after the `recent` ones.

    Returns the times to keep (those within the window, the newest `blocks` at most: all a later call needs) and
    whether they reach `blocks` within the window: the user is slowed down and flagged. A time ahead of `at` (a
    worker whose clock runs ahead) still counts."""
    kept = sorted([*(t for t in recent if t > at - window), at])[-blocks:]
    return kept, len(kept) >= blocks


def check_cooldown(*, until: dt.datetime | None, now: dt.datetime) -> Refusal | None:
    """429 while the user's moderation cooldown lasts (None: none, or it has ended)."""
    if until is None or until <= now:
        return None
    wait = max(1, math.ceil((until - now).total_seconds()))
    return Refusal(
        429,
        "moderation_cooldown",
        "Several of your recent prompts were blocked by the content policy, so new videos are paused for this "
        f"account until {until.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC.",
        wait,
    )


def check_caps(
    *, usage: Usage, limits: Mapping[str, float], tier: str, now: dt.datetime, retry_after: int
) -> Refusal | None:
    daily, inflight, queued = int(limits["DAILY_JOBS"]), int(limits["MAX_INFLIGHT"]), int(limits["MAX_QUEUED"])
    if daily and usage.jobs_today >= daily:
        return Refusal(
            429,
            "daily_limit",
            f"The {tier} tier allows {daily} videos a day; the count resets at 00:00 UTC.",
            seconds_to_midnight(now),
        )
    if inflight and usage.unfinished >= inflight:
        return Refusal(
            429,
            "concurrency_limit",
            f"You have {usage.unfinished} unfinished videos; the {tier} tier allows {inflight} at a time.",
            retry_after,
        )
    if queued and usage.waiting >= queued:
        return Refusal(
            429,
            "queue_limit",
            f"You have {usage.waiting} videos waiting for a GPU; the {tier} tier allows {queued} waiting.",
            retry_after,
        )
    return None


def check_capacity(*, wait: float | None, bound: float, tier: str) -> Refusal | None:
    """503 while the tier's estimated wait is past its bound (None: no estimate yet, admit)."""
    if wait is None or not bound or wait <= bound:
        return None
    retry = int(min(300, max(5, math.ceil(wait - bound))))
    return Refusal(
        503,
        "capacity_exceeded",
        f"The GPUs are at capacity for the {tier} tier (estimated wait {wait:.0f}s, limit {bound:.0f}s); "
        "try again later.",
        retry,
    )
