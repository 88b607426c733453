"""Fair-queuing state kept in the database: each user's counter and each tier's clock and weighted service.

The decisions themselves live in jobs.services.policy (pure); this module reads and writes their inputs.
"""

from __future__ import annotations

from jobs.accounts import tier_limits
from jobs.models import Job, SchedFlow, SchedTier, Tier
from jobs.services import policy


def rules() -> dict[str, policy.TierRule]:
    out = {}
    for tier in Tier.values:
        limits = tier_limits(tier)
        out[tier] = policy.TierRule(
            weight=max(float(limits["WEIGHT"]), 1e-6), aging_seconds=float(limits["AGING_SECONDS"])
        )
    return out


def weights() -> dict[str, float]:
    return {t: r.weight for t, r in rules().items()}


def tag_new_job(job: Job) -> float:
    """The virtual start tag of a job entering the queue; advances its user's counter by the job's cost.

    Runs inside the transition's transaction; the user's counter row is locked so concurrent jobs of one user
    get consecutive tags.
    """
    flow, _ = SchedFlow.objects.select_for_update().get_or_create(user_id=job.user_id)
    clock = SchedTier.objects.filter(tier=job.tier).values_list("vclock", flat=True).first() or 0.0
    tag = policy.start_tag(user_finish=flow.finish, tier_clock=clock)
    SchedFlow.objects.filter(pk=flow.pk).update(finish=tag + job.cost)
    return tag


def tier_state() -> dict[str, float]:
    return dict(SchedTier.objects.values_list("tier", "vtime"))


def save_tier_state(*, vtime: dict[str, float], vclock: dict[str, float]) -> None:
    """Write the dispatcher's new weighted service and clocks (the caller holds the dispatch lock)."""
    current = {row.tier: row for row in SchedTier.objects.all()}
    for tier, value in vtime.items():
        row = current.get(tier)
        clock = max(vclock.get(tier, 0.0), row.vclock if row else 0.0)
        if row is None:
            SchedTier.objects.create(tier=tier, vtime=value, vclock=clock)
        elif row.vtime != value or row.vclock != clock:
            SchedTier.objects.filter(tier=tier).update(vtime=value, vclock=clock)
