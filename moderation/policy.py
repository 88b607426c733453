"""The moderation policy hook. For now a small rules policy; classifiers plug in behind the same calls.

Pure functions: no database, no side effects, so a stage can run them outside any transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

POLICY_NAME = "rules-v1"

# Whole-word, case-insensitive. Deliberately short: a later issue brings real classifiers.
DEFAULT_BLOCKED_TERMS = (
    "child sexual",
    "csam",
    "beheading",
    "terrorist propaganda",
    "bomb making",
    "nazi propaganda",
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: list[str] = field(default_factory=list)
    policy: str = POLICY_NAME


def _blocked_terms() -> tuple[str, ...]:
    extra = tuple(getattr(settings, "MODERATION_BLOCKED_TERMS", ()))
    return DEFAULT_BLOCKED_TERMS + extra


def check_prompt(prompt: str) -> Decision:
    text = " ".join(prompt.lower().split())
    hits = [t for t in _blocked_terms() if re.search(rf"\b{re.escape(t.lower())}\b", text)]
    return Decision(allowed=not hits, reasons=[f"blocked term: {t}" for t in hits])


def check_video(data: bytes, sample: int = 8) -> Decision:
    """Output stage: decode up to `sample` frames of the stored clip and pass them to the frame hook."""
    from videogen.video_io import decode_mp4

    try:
        frames = decode_mp4(data, max_frames=sample)
    except Exception as exc:  # an undecodable clip must not be published
        return Decision(allowed=False, reasons=[f"clip could not be decoded: {exc}"])
    return check_frames(list(frames))


def check_frames(frames: Sequence[np.ndarray]) -> Decision:
    """Output hook: sees decoded frames of the generated clip. The rules policy has no image rules."""
    if len(frames) == 0:
        return Decision(allowed=False, reasons=["no frames to review"])
    return Decision(allowed=True)
