"""Who goes next: the scheduling policy as plain code over a snapshot, with no database access.

The dispatcher and the fleet simulation run these very functions.

- Tiers share GPU time by weight: each tier's `vtime` grows by cost / weight when one of its jobs is handed
  out, and a free slot goes to the backlogged tier with the lowest `vtime` (weighted fair queuing over
  GPU-seconds). A tier with no backlog is lifted to the lowest backlogged `vtime`, so idling banks nothing and
  its share goes to the others meanwhile (work-conserving).
- Inside a tier, users share by service received: each job carries a virtual start tag, the user's counter of
  GPU-seconds queued or served, lifted to the tier's clock when the user had fallen behind (VTC-style, as in
  start-time fair queuing). The lowest tag goes first, so a user with 50 queued jobs does not delay a user
  with 1, and a user of long jobs gets no more GPU time than a user of short ones.
- Aging: a job that has waited most of its tier's aging bound (AGING_LEAD before it) goes before anything else,
  so that it starts within the bound.
- A slot only takes jobs of a model its runner serves.

`estimate` turns the same rules into queue positions, start times and per-tier waits from a published
summary of the queue, so a status read never scans the queue. It follows the order `decide` hands jobs out in,
from the tiers' weighted service at publication: while nothing new arrives, each pass takes only jobs counted
ahead, so a waiting job's position never rises (a fresh fluid share at each read would count the other tiers'
share again after they had had it).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TierRule:
    weight: float
    aging_seconds: float  # 0: no aging


@dataclass(frozen=True)
class Candidate:
    """A queued job at the head of its (tier, model) queue by tag, or among the longest waiting."""

    job_id: int
    user_id: int
    tier: str
    model: str
    tag: float
    cost: float  # estimated GPU-seconds
    waited: float  # seconds since it first queued


@dataclass(frozen=True)
class Slot:
    """One free slot of a live, non-draining runner; work for it goes to `queue`."""

    queue: str
    models: frozenset[str]


@dataclass
class Snapshot:
    rules: Mapping[str, TierRule]
    vtime: Mapping[str, float]
    slots: Sequence[Slot]
    candidates: Iterable[Candidate]


@dataclass
class Decision:
    assignments: list[tuple[Candidate, str]] = field(default_factory=list)  # (job, runner queue)
    vtime: dict[str, float] = field(default_factory=dict)  # every tier's new weighted service
    vclock: dict[str, float] = field(default_factory=dict)  # tiers whose clock advanced: highest tag handed out
    aged: list[int] = field(default_factory=list)  # job ids that went first by aging


def decide(snapshot: Snapshot) -> Decision:
    rules = snapshot.rules
    vtime = {tier: snapshot.vtime.get(tier, 0.0) for tier in rules}
    pending = sorted(snapshot.candidates, key=lambda c: (c.tag, c.job_id))
    backlogged = {c.tier for c in pending}
    _lift_idle(vtime, backlogged)
    decision = Decision(vtime=vtime)
    for slot in snapshot.slots:
        eligible = [c for c in pending if c.model in slot.models]
        if not eligible:
            continue
        pick = _most_overdue(eligible, rules)
        if pick is not None:
            decision.aged.append(pick.job_id)
        else:
            tiers = {c.tier for c in eligible}
            tier = min(tiers, key=lambda t: _turn(vtime[t], rules[t].weight, t))
            pick = next(c for c in eligible if c.tier == tier)  # eligible is in tag order
        pending.remove(pick)
        decision.assignments.append((pick, slot.queue))
        vtime[pick.tier] += pick.cost / rules[pick.tier].weight
        decision.vclock[pick.tier] = max(decision.vclock.get(pick.tier, pick.tag), pick.tag)
    _lift_idle(vtime, {c.tier for c in pending})  # and after this pass's service: idling banks not even one job
    return decision


def _turn(vtime: float, weight: float, tier: str) -> tuple[float, float, str]:
    """Which tier's turn comes first: the lowest weighted service, then the higher weight, then the name. Service
    is compared to 1e-9 so that sums of costs that are equal on paper (3 x 10/3 and 10) tie as they should."""
    return round(vtime, 9), -weight, tier


def _lift_idle(vtime: dict[str, float], backlogged: set[str]) -> None:
    if not backlogged:
        return
    floor = min(vtime[t] for t in backlogged if t in vtime)
    for tier in vtime:
        if tier not in backlogged and vtime[tier] < floor:
            vtime[tier] = floor


# A job goes before anything else once it has waited this share of its tier's aging bound, not only once the
# bound has passed: it still has to wait for a slot to free (measured: the bound overshot by 14-33 s at 4 slots,
# jobs of 49 s mean), and the bound is a promise of when it starts.
AGING_LEAD = 0.1


def _most_overdue(eligible: list[Candidate], rules: Mapping[str, TierRule]) -> Candidate | None:
    overdue = [c for c in eligible if 0 < rules[c.tier].aging_seconds * (1 - AGING_LEAD) < c.waited]
    if not overdue:
        return None
    return max(overdue, key=lambda c: (c.waited - rules[c.tier].aging_seconds, -c.job_id))


def start_tag(*, user_finish: float, tier_clock: float) -> float:
    """A newly queued job's tag: the user's counter, lifted to the tier's clock if they had fallen behind."""
    return max(user_finish, tier_clock)


# --- positions and ETAs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierQueue:
    """One tier's queue for one model, as published: totals and checkpoints in dispatch order.

    `checkpoints` are (tag, job id, jobs before it, GPU-seconds before it), ascending by (tag, id) — the order
    the policy serves a tier in; the first is the tier's first job and the last its last one. Between
    checkpoints, counts and work are interpolated.
    """

    count: int
    work: float
    checkpoints: Sequence[tuple[float, int, float, float]]

    def ahead_of(self, tag: float, job_id: int = 0) -> tuple[float, float]:
        """(jobs, GPU-seconds) of this queue that go before the job with this tag and id."""
        cps = self.checkpoints
        key = (tag, job_id)
        if not cps or key < (cps[0][0], cps[0][1]):
            return 0.0, 0.0
        i = bisect.bisect_left([(c[0], c[1]) for c in cps], key)
        if i < len(cps) and (cps[i][0], cps[i][1]) == key:
            return float(cps[i][2]), float(cps[i][3])
        if i == len(cps):
            return float(self.count), float(self.work)
        (prev_tag, _, prev_n, prev_w), (next_tag, _, next_n, next_w) = cps[i - 1], cps[i]
        frac = 0.5 if next_tag == prev_tag else (tag - prev_tag) / (next_tag - prev_tag)
        # At least the previous checkpoint's job is ahead; at most every job before the next checkpoint.
        return prev_n + 1 + frac * max(0.0, next_n - prev_n - 1), prev_w + frac * (next_w - prev_w)

    def handed_before(self, work: float, *, wins_ties: bool) -> tuple[float, float]:
        """(jobs, GPU-seconds) of this queue handed out before it has been served `work`: the jobs with less work
        than that ahead of them in it (and, with `wins_ties`, the one with exactly that much)."""
        cps = self.checkpoints
        if not cps:
            return 0.0, 0.0
        before = [c[3] for c in cps]
        i = bisect.bisect_right(before, work + TIE) if wins_ties else bisect.bisect_left(before, work - TIE)
        if i == 0:
            return 0.0, 0.0
        if i == len(cps):
            return float(self.count), float(self.work)
        (_, _, prev_n, prev_w), (_, _, next_n, next_w) = cps[i - 1], cps[i]
        # The previous checkpoint's job goes; between the two, as many as the work interpolates to.
        frac = 1.0 if next_w <= prev_w else min(1.0, max(0.0, (work - prev_w) / (next_w - prev_w)))
        jobs = prev_n + 1 + frac * max(0.0, next_n - prev_n - 1)
        return jobs, prev_w + (jobs - prev_n) * (next_w - prev_w) / max(1.0, next_n - prev_n)


@dataclass(frozen=True)
class ModelQueue:
    """Everything published for one model: live capacity, the work still running, each tier's queue."""

    capacity: float  # slots of live, non-draining runners serving the model
    running_work: float  # estimated GPU-seconds left on the running jobs
    first_free_in: float  # seconds until the first busy slot frees (0 when one is free)
    tiers: Mapping[str, TierQueue]
    vtime: Mapping[str, float] = field(default_factory=dict)  # each tier's weighted service, as decide reads it


# Weighted service closer than this is a tie (decide compares it rounded to 1e-9 too).
TIE = 1e-6


def _ahead(
    queue: ModelQueue, weights: Mapping[str, float], *, tier: str, jobs: float, work: float
) -> tuple[float, float]:
    """(jobs, GPU-seconds) handed out before a job of `tier` that has `jobs` and `work` of its own tier ahead of
    it, if nothing else arrives. decide serves the tier with the lowest weighted service and adds the job's
    cost / weight, so a tier's job with `w` GPU-seconds ahead of it in its tier goes at service vtime + w / weight:
    merging the tiers by that value is the order the dispatcher follows, pass after pass."""
    backlogged = {t for t, q in queue.tiers.items() if q.count > 0 and t in weights}
    vtime = {t: float(queue.vtime.get(t, 0.0)) for t in weights}
    _lift_idle(vtime, backlogged)  # as decide does: an idle tier banks nothing
    turn = vtime[tier] + work / weights[tier]
    mine = _turn(turn, weights[tier], tier)[1:]
    for other in sorted(backlogged - {tier}):
        # Its jobs whose service comes before ours; at equal service, decide's tie-break (weight, then name).
        n, w = queue.tiers[other].handed_before(
            (turn - vtime[other]) * weights[other], wins_ties=_turn(0.0, weights[other], other)[1:] < mine
        )
        jobs, work = jobs + n, work + w
    return jobs, work


@dataclass(frozen=True)
class Estimate:
    position: int  # 1 = next to start
    start_in: float  # seconds from the summary's time


def estimate(
    queue: ModelQueue, weights: Mapping[str, float], *, tier: str, tag: float, job_id: int = 0
) -> Estimate | None:
    """Where a queued job with this tag stands, and when it should start. None without capacity."""
    if queue.capacity <= 0:
        return None
    own = queue.tiers.get(tier, TierQueue(0, 0.0, ()))
    jobs, work = own.ahead_of(tag, job_id)
    ahead_n, ahead_w = _ahead(queue, weights, tier=tier, jobs=jobs, work=work)
    start = max(queue.first_free_in, (queue.running_work + ahead_w) / queue.capacity)
    return Estimate(position=1 + round(ahead_n), start_in=start)


def tier_wait(queue: ModelQueue, weights: Mapping[str, float], *, tier: str) -> float | None:
    """Admission: how long the tier's whole backlog takes to drain at its share. None without capacity."""
    if queue.capacity <= 0:
        return None
    own = queue.tiers.get(tier)
    if own is None or own.work <= 0:
        return 0.0
    _, ahead_w = _ahead(queue, weights, tier=tier, jobs=own.count, work=own.work)
    return max(queue.first_free_in, (queue.running_work + ahead_w) / queue.capacity)
