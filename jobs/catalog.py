"""The public model catalogue: what each model accepts. The API validates against it before anything is stored.

The runner side (gpu_runner.registry) maps the same names to weights on disk; the domain core never
imports torch or diffusers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class ModelSpec:
    name: str
    sizes: tuple[str, ...]
    seconds: tuple[int, ...]
    fps: int
    default_size: str
    default_seconds: int
    supports_reference: bool = True
    # Price: credits per megapixel-second of video asked for (at least 1 credit a job).
    credits_per_megapixel_second: float = 100.0

    def frames_for(self, seconds: int) -> int:
        # Wan generates 4k+1 frames: one key frame, then fps frames per second.
        return seconds * self.fps + 1

    def price(self, *, width: int, height: int, seconds: int) -> int:
        return max(1, math.ceil(width * height * seconds / 1e6 * self.credits_per_megapixel_second))


# Wan rounds height and width down to multiples of 16 and frames to 4k+1; every size and duration listed
# here already satisfies that, so the clip is exactly what was asked for.
CATALOG: dict[str, ModelSpec] = {
    "wan-tiny": ModelSpec(
        name="wan-tiny",
        sizes=("128x128", "256x144", "144x256", "256x256", "832x480", "480x832"),
        seconds=(4, 8, 12),
        fps=4,
        default_size="128x128",
        default_seconds=4,
    ),
    # The same tiny Wan weights in a second configuration (4 steps, no classifier-free guidance): about a
    # quarter of the GPU time, priced at half. Runners may serve either or both (RUNNER_MODELS).
    "wan-tiny-turbo": ModelSpec(
        name="wan-tiny-turbo",
        sizes=("128x128", "256x144", "144x256", "256x256"),
        seconds=(4, 8),
        fps=4,
        default_size="128x128",
        default_seconds=4,
        credits_per_megapixel_second=50.0,
    ),
}


def _learn_remote_models() -> None:
    """Models that only remote pools serve join the catalogue with the sizes and durations their pool lists."""
    from jobs import backends

    for pool in backends.pools().values():
        for model in pool.models.values():
            if model.name in CATALOG:
                continue
            if not model.sizes or not model.seconds:
                raise backends.PoolConfigError(
                    f"pool {pool.name!r}: model {model.name!r} is not in the catalogue: list its sizes and seconds"
                )
            CATALOG[model.name] = ModelSpec(
                name=model.name,
                sizes=model.sizes,
                seconds=model.seconds,
                fps=24,  # the server's own; only local generation reads it
                default_size=model.sizes[0],
                default_seconds=model.seconds[0],
                supports_reference=pool.dialect.create_as == "multipart",
            )


_learn_remote_models()


def default_model() -> str:
    return settings.VIDEOGEN["DEFAULT_MODEL"]


def get_spec(name: str) -> ModelSpec | None:
    return CATALOG.get(name)
