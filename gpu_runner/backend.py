"""The diffusers backend: resident pipelines, one generation at a time per worker. With GPU_BACKEND=simulated
the worker runs the SIMULATED generation instead (gpu_runner.simulated; load and fault runs only)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from gpu_runner import registry
from jobs.catalog import get_spec
from videogen import provenance

if TYPE_CHECKING:
    from jobs.models import Job  # the claimed job, as jobs.services.job_claim returns it


def _pipeline(model: str):
    from gpu_runner.pipeline import load_pipeline

    entry = registry.get(model)
    if entry.builtin:
        from gpu_runner.tiny_model import build_tiny_wan

        build_tiny_wan(entry.path)  # returns at once when a complete model is already there
    return load_pipeline(str(entry.path))  # cached per process, behind a lock (warming may race a first job)


def _simulated() -> bool:
    return settings.GPU_BACKEND == "simulated"


def warm(model: str) -> None:
    if not _simulated():
        _pipeline(model)


# The built-in tiny model's version as its videos' content credentials name it (random weights, fixed seeds).
TINY_VERSION = "builtin-tiny-random"


def generation(job: Job) -> provenance.Generation:
    """What the clip's content credentials say made it: the model, its version, and now."""
    if _simulated():
        version = "simulated"
    else:
        entry = registry.get(job.model)
        version = TINY_VERSION if entry.builtin else entry.path.resolve().name
    return provenance.Generation(
        model=job.model, model_version=provenance.model_version(job.model, version), created_at=timezone.now()
    )


def generate(job: Job, on_step: Callable[[int, int], None]) -> tuple[np.ndarray, int]:
    """Frames (F, H, W, 3) uint8 and the clip's fps."""
    if _simulated():
        from gpu_runner.simulated import simulated_generate

        return simulated_generate(job, on_step)
    from gpu_runner.pipeline import generate as run_pipeline

    spec = get_spec(job.model)
    if spec is None:
        raise ValueError(f"model {job.model!r} is not in the catalogue")
    entry = registry.get(job.model)
    reference = None
    if job.reference_key:
        with default_storage.open(job.reference_key, "rb") as fh:
            reference = Image.open(io.BytesIO(fh.read())).convert("RGB")
    frames = run_pipeline(
        _pipeline(job.model),
        prompt=job.prompt,
        width=job.width,
        height=job.height,
        num_frames=spec.frames_for(job.seconds),
        steps=entry.steps,
        seed=job.seed,
        guidance_scale=entry.guidance_scale,
        reference_image=reference,
        on_step=on_step,
    )
    return frames, spec.fps
