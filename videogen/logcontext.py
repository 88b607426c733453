"""What every log line says it is about: the request id and the job (id, attempt, runner, user, tier).

Bound in context variables (each request, thread and asyncio task has its own) and added to every record by
ContextFilter, so the JSON formatter writes them as fields. The web role binds the request id
(videogen.requestid); the request's job keeps it (Job.request_id), and every task, runner and transition that
job causes binds it again, so one id follows a submission through every role's logs and the job's events.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

FIELDS = ("request_id", "job_id", "attempt", "runner", "user", "tier")
_context: ContextVar[dict[str, Any] | None] = ContextVar("videogen_log_context", default=None)


def current() -> dict[str, Any]:
    return _context.get() or {}


def request_id() -> str:
    return str(current().get("request_id") or "")


@contextlib.contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields for the duration of the block (nested blocks add to the outer ones)."""
    token = _context.set({**current(), **{k: v for k, v in fields.items() if v not in (None, "")}})
    try:
        yield
    finally:
        _context.reset(token)


def job_fields(job: Any) -> dict[str, Any]:
    """A job's fields for bind(), from a Job or anything with the same attributes."""
    return {
        "request_id": getattr(job, "request_id", "") or None,
        "job_id": getattr(job, "pk", None),
        "attempt": getattr(job, "attempt", None),
        "runner": getattr(job, "runner_id", "") or None,
        "user": getattr(job, "user_id", None),
        "tier": getattr(job, "tier", "") or None,
    }


@contextlib.contextmanager
def for_job(job_id: int) -> Iterator[None]:
    """Bind a job's fields by id (one indexed read), for a task that is handed only the id."""
    from jobs.models import Job

    row = Job.objects.filter(pk=job_id).values("pk", "request_id", "attempt", "runner_id", "user_id", "tier").first()
    if row is None:
        with bind(job_id=job_id):
            yield
        return
    with bind(
        request_id=row["request_id"], job_id=row["pk"], attempt=row["attempt"], runner=row["runner_id"],
        user=row["user_id"], tier=row["tier"],
    ):  # fmt: skip
        yield


class ContextFilter(logging.Filter):
    """Puts the bound fields on every record (None where unbound), for the formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = current()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, bound.get(name))
        return True


class ReadableFormatter(logging.Formatter):
    """One short line per record for a person at a terminal (LOG_FORMAT=plain, the embedded profile's default):
    time, level, logger, message, then only the context fields that are bound ("job_id=42 attempt=2")."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        bound = " ".join(f"{name}={value}" for name in FIELDS if (value := getattr(record, name, None)) is not None)
        if not bound:
            return line
        first, newline, rest = line.partition("\n")  # a traceback stays below the line it belongs to
        return f"{first}  [{bound}]{newline}{rest}"
