"""Where each catalogue model's weights live and how to run it. The runner side of jobs.catalog."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from jobs.catalog import CATALOG


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    steps: int
    guidance_scale: float
    # Built by `manage.py build_default_model` (a tiny random Wan); real models are downloaded by the operator.
    builtin: bool = False


def _overrides() -> dict[str, str]:
    # MODEL_PATHS="wan-tiny=/models/wan-tiny,other=/models/other"
    pairs = (item.split("=", 1) for item in settings.VIDEOGEN_MODEL_PATHS if "=" in item)
    return {name.strip(): path.strip() for name, path in pairs}


def entries() -> dict[str, ModelEntry]:
    base = Path(settings.VIDEOGEN["MODELS_DIR"])
    overrides = _overrides()
    known = {
        "wan-tiny": ModelEntry(
            "wan-tiny",
            Path(overrides.get("wan-tiny", base / "wan-tiny")),
            steps=8,
            guidance_scale=5.0,
            builtin="wan-tiny" not in overrides,
        ),
        "wan-tiny-turbo": ModelEntry(
            "wan-tiny-turbo",
            Path(overrides.get("wan-tiny-turbo", overrides.get("wan-tiny", base / "wan-tiny"))),
            steps=4,
            guidance_scale=1.0,
            builtin="wan-tiny" not in overrides and "wan-tiny-turbo" not in overrides,
        ),
    }
    return {name: entry for name, entry in known.items() if name in CATALOG}


def served() -> dict[str, ModelEntry]:
    """The models this runner offers: RUNNER_MODELS (comma separated), or every model it knows."""
    wanted = set(settings.RUNNER_MODELS)
    return {name: entry for name, entry in entries().items() if not wanted or name in wanted}


def get(name: str) -> ModelEntry:
    return entries()[name]
