"""Run what the cpu queue holds, in order, as a cpu worker would: the real signed broker rows, the real tasks."""

from __future__ import annotations

import importlib

from django_q.models import OrmQ
from django_q.signing import SignedPackage


def run_queued(func: str) -> list[str]:
    """Run every queued task of `func` (dotted path) now, and drop every message; their outcomes, in order."""
    module, name = func.rsplit(".", 1)
    task_fn = getattr(importlib.import_module(module), name)
    outcomes = []
    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        if task["func"] == func:
            outcomes.append(task_fn(*task["args"]))
        row.delete()
    return outcomes
