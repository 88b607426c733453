"""The cost model: a job's estimated GPU-seconds, learned from observed run times per (model, size, seconds).

A shape never seen is priced by a prior proportional to the pixels and frames it generates; every finished
run moves the shape's mean towards what it took (an exponentially weighted mean). A submission reads its
shape's estimate within its own transaction's reads (`learned_statement`, then `remember`) unless this process
read it lately (`cached`).
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Now

from jobs.catalog import get_spec
from jobs.models import ShapeCost
from jobs.prepared import Prepared

_CACHE_SECONDS = 30.0
_cache: dict[tuple[str, int, int, int], tuple[float, float | None]] = {}


def prior(model: str, width: int, height: int, seconds: int) -> float:
    cfg = settings.VIDEOGEN
    spec = get_spec(model)
    frames = spec.frames_for(seconds) if spec else seconds * 16
    return (
        cfg["COST_PRIOR_BASE_SECONDS"] + cfg["COST_PRIOR_SECONDS_PER_MEGAPIXEL_FRAME"] * width * height * frames / 1e6
    )


Shape = tuple[str, int, int, int]  # model, width, height, seconds

_learned = Prepared(
    ShapeCost,
    lambda model, width, height, seconds: ShapeCost.objects.filter(
        model=model, width=width, height=height, seconds=seconds, samples__gt=0
    ).values_list("mean_seconds")[:1],
)


def cached(shape: Shape) -> float | None:
    """The shape's estimate if this process read it lately (None: read it, with learned_statement)."""
    hit = _cache.get(shape)
    if hit is None or hit[0] < time.monotonic():
        return None
    return hit[1] if hit[1] is not None else prior(*shape)


def learned_statement(shape: Shape):
    """The shape's learned mean, as a statement for any driver; its rows go to remember()."""
    model, width, height, seconds = shape
    return _learned.statement(model=model, width=width, height=height, seconds=seconds)


def remember(shape: Shape, rows: list[tuple]) -> float:
    learned = rows[0][0] if rows else None
    _cache[shape] = (time.monotonic() + _CACHE_SECONDS, learned)
    return learned if learned is not None else prior(*shape)


def observe(*, model: str, width: int, height: int, seconds: int, took: float) -> None:
    """Fold one observed run into the shape's mean (first sample: taken as is). One UPDATE: it runs inside the
    runner's completion transaction, between one job and the next on the GPU."""
    rate = settings.VIDEOGEN["COST_LEARNING_RATE"]
    shape = ShapeCost.objects.filter(model=model, width=width, height=height, seconds=seconds)
    moved = {
        "mean_seconds": F("mean_seconds") + rate * (took - F("mean_seconds")),
        # West's exponentially weighted variance; F() reads the old mean, as the formula wants.
        "var_seconds2": (1 - rate)
        * (F("var_seconds2") + rate * (took - F("mean_seconds")) * (took - F("mean_seconds"))),
        "samples": F("samples") + 1,
        "updated_at": Now(),
    }
    if not shape.update(**moved):
        try:
            with transaction.atomic():
                ShapeCost.objects.create(
                    model=model, width=width, height=height, seconds=seconds, mean_seconds=took, samples=1
                )
        except IntegrityError:  # a concurrent first sample won: fold this one in
            shape.update(**moved)
    _cache.pop((model, width, height, seconds), None)


def forget_cache() -> None:
    _cache.clear()
