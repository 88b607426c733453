"""The public video object (OpenAI Videos shape plus our extensions), shared by the API and notifications."""

from __future__ import annotations

from jobs.models import Job, State


def _ts(value) -> int | None:
    return int(value.timestamp()) if value else None


def video_object(job: Job, *, queue_position: int | None = None) -> dict:
    error = None
    if job.state in (State.FAILED, State.REJECTED) and job.error_code:
        error = {"code": job.error_code, "message": job.error_message}
    return {
        "id": job.public_id,
        "object": "video",
        "model": job.model,
        "status": job.public_status,
        "progress": 100 if job.state == State.SUCCEEDED else job.progress,
        "created_at": _ts(job.created_at),
        "completed_at": _ts(job.completed_at),
        "expires_at": _ts(job.expires_at),
        "seconds": str(job.seconds),
        "size": job.size,
        "prompt": job.prompt,
        "remixed_from_video_id": None,
        "error": error,
        # Extensions.
        "queue_position": queue_position,
        "attempt": job.attempt,
    }
