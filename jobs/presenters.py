"""The public video object (OpenAI Videos shape plus our extensions), shared by the API and notifications."""

from __future__ import annotations

from jobs.accounts import tier_limits
from jobs.models import Account, CreditEntry, Job, State
from jobs.services import credits


def unix_time(value) -> int | None:
    return int(value.timestamp()) if value else None


def video_object(job: Job, queue_position: int | None = None, estimated_start_at=None) -> dict:
    error = None
    if job.state in (State.FAILED, State.REJECTED, State.CANCELLED) and job.error_code:
        error = {"code": job.error_code, "message": job.error_message}
    return {
        "id": job.public_id,
        "object": "video",
        "model": job.model,
        "status": job.public_status,
        "progress": 100 if job.state == State.SUCCEEDED else job.progress,
        "created_at": unix_time(job.created_at),
        "completed_at": unix_time(job.completed_at),
        "expires_at": unix_time(job.expires_at),
        "seconds": str(job.seconds),
        "size": job.size,
        "prompt": job.prompt,
        "remixed_from_video_id": None,
        "error": error,
        # Extensions.
        "queue_position": queue_position,
        "estimated_start_at": unix_time(estimated_start_at),
        "start_deadline_at": unix_time(job.start_deadline_at),
        "credits": job.credits,
        "attempt": job.attempt,
        "progress_estimated": _progress_estimated(job),
        "content_credentials": _content_credentials(job),
    }


# What a signed clip's C2PA manifest says (videogen.provenance); readers verify it from the file itself.
CONTENT_CREDENTIALS = {"standard": "c2pa", "ai_generated": True}


def _content_credentials(job: Job) -> dict | None:
    """The finished video's file carries our signed content credentials: null until then, and for a clip stored
    before every clip was signed."""
    return dict(CONTENT_CREDENTIALS) if job.state == State.SUCCEEDED and job.video_signed else None


def _progress_estimated(job: Job) -> bool:
    """Whether `progress` is our estimate (from observed timings) rather than the generator's own count: a remote
    pool whose server reports no real progress (jobs.backends)."""
    if job.state != State.RUNNING:
        return False
    from jobs import backends

    pool = backends.pool_of_runner(job.runner_id)
    return pool is not None and not pool.dialect.real_progress


def credit_summary(account: Account) -> dict:
    """A user's credits: balance, today's allowance (per their tier) and what is still available."""
    daily = int(tier_limits(account.tier)["DAILY_CREDITS"])
    metered = daily >= 0
    left = credits.allowance_left(account, daily) if metered else None
    return {
        "object": "credits",
        "tier": account.tier,
        "metered": metered,
        "balance": account.credit_balance,
        "daily_allowance": daily if metered else None,
        "allowance_remaining": left,
        "available": account.credit_balance + left if metered else None,
        "jobs_today": account.day_jobs if account.usage_day == credits.today() else 0,
    }


def credit_entry(entry: CreditEntry) -> dict:
    return {
        "id": entry.pk,
        "object": "credit_entry",
        "kind": entry.kind,
        "amount": entry.amount,
        "allowance_amount": entry.allowance_amount,
        "balance_after": entry.balance_after,
        "video_id": entry.job.public_id if entry.job_id else None,
        "note": entry.note,
        "actor": entry.actor if entry.kind in ("grant", "adjust") else None,
        "created_at": unix_time(entry.created_at),
    }


def appeal_object(review) -> dict:
    """A user's appeal, as the API shows it: the outcome, never the moderator or the scores."""
    return {
        "object": "video.appeal",
        "video_id": review.job.public_id,
        "status": review.status,
        "message": review.message,
        "created_at": unix_time(review.created_at),
        "decided_at": unix_time(review.decided_at),
        "rerun_video_id": review.rerun.public_id if review.rerun_id else None,
    }
