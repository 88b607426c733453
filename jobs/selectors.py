"""Reads of the job domain (status reads are the hot path: one indexed query each)."""

from __future__ import annotations

import re

from django.db.models import Q, QuerySet

from jobs.models import Job, State

PUBLIC_ID = re.compile(r"video_[0-9a-f]{24}")


def _visible(user_id: int) -> QuerySet[Job]:
    return Job.objects.filter(user_id=user_id, deleted_at__isnull=True)


def video_get(*, user_id: int, public_id: str) -> Job | None:
    if not PUBLIC_ID.fullmatch(public_id):
        return None  # not an id we issue (and never sent to the database: it may hold a NUL)
    return _visible(user_id).filter(public_id=public_id).first()


def video_list(*, user_id: int, after: str | None, limit: int, order: str) -> tuple[list[Job], bool] | None:
    """A page of the user's jobs; None when the `after` cursor is not one of theirs."""
    qs = _visible(user_id)
    if after:
        if not PUBLIC_ID.fullmatch(after):
            return None
        cursor = Job.objects.filter(user_id=user_id, public_id=after).values_list("pk", flat=True).first()
        if cursor is None:
            return None
        qs = qs.filter(pk__lt=cursor) if order == "desc" else qs.filter(pk__gt=cursor)
    qs = qs.order_by("-pk" if order == "desc" else "pk")
    rows = list(qs[: limit + 1])
    return rows[:limit], len(rows) > limit


def queue_position(job: Job) -> int | None:
    """1 + the number of queued jobs submitted before this one; None unless the job is queued."""
    if job.state != State.QUEUED:
        return None
    ahead = Job.objects.filter(Q(state=State.QUEUED) & Q(pk__lt=job.pk)).count()
    return ahead + 1
