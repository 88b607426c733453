"""Load a diffusers Wan pipeline once per process and turn a job into video frames.

torch/diffusers/transformers are imported lazily so that importing this module
(e.g. for GenerationAborted) stays cheap and never touches CUDA.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

__all__ = ["GenerationAborted", "generate", "load_pipeline"]

# Wan: VAE downsamples 8x spatially and the transformer patches 2x2 -> 16 px;
# the VAE compresses time 4x after the first frame -> 4k+1 frames.
SIZE_MULTIPLE = 16
FRAME_STRIDE = 4
# What WanPipeline.__call__ uses; encode_prompt's own default (226) differs.
MAX_SEQUENCE_LENGTH = 512

_PIPELINES: dict[str, DiffusionPipeline] = {}
_VIDEO2VIDEO: weakref.WeakKeyDictionary[DiffusionPipeline, DiffusionPipeline] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class GenerationAborted(Exception):
    """Base class for exceptions an ``on_step`` callback raises to stop a generation.

    Any exception raised by ``on_step`` aborts at once (no VAE decode) and propagates
    out of :func:`generate`; the pipeline stays usable for the next job.
    """


def _quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def _load(path: Path) -> DiffusionPipeline:
    import torch
    from diffusers import DiffusionPipeline

    _quiet_libraries()
    # The same path a real model takes: the class comes from model_index.json. (diffusers needs
    # `accelerate` to load the Wan transformer, which keeps some modules in fp32.)
    pipe = DiffusionPipeline.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    # is_available() is only reached here, never at import, so a forking parent
    # that merely imports this module keeps a CUDA-free state.
    pipe.to("cuda" if torch.cuda.is_available() else "cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pipeline(path: str) -> DiffusionPipeline:
    """Return the pipeline saved at ``path``, loading it on first use in this process."""
    key = str(Path(path).resolve())
    with _LOCK:
        pipe = _PIPELINES.get(key)
        if pipe is None:
            pipe = _PIPELINES[key] = _load(Path(key))
        return pipe


def _video_to_video(pipe: DiffusionPipeline) -> DiffusionPipeline:
    """A WanVideoToVideoPipeline sharing ``pipe``'s modules (no extra memory)."""
    from diffusers import WanVideoToVideoPipeline

    with _LOCK:
        v2v = _VIDEO2VIDEO.get(pipe)
        if v2v is None:
            v2v = WanVideoToVideoPipeline(
                tokenizer=pipe.tokenizer,
                text_encoder=pipe.text_encoder,
                transformer=pipe.transformer,
                vae=pipe.vae,
                scheduler=pipe.scheduler,
            )
            v2v.set_progress_bar_config(disable=True)
            _VIDEO2VIDEO[pipe] = v2v
        return v2v


def _validate(
    prompt: str, width: int, height: int, num_frames: int, steps: int, reference: bool, strength: float
) -> None:
    if not isinstance(prompt, str):
        raise ValueError("prompt must be a string")
    for name, value in (("width", width), ("height", height)):
        if value <= 0 or value % SIZE_MULTIPLE:
            raise ValueError(f"{name} must be a positive multiple of {SIZE_MULTIPLE}, got {value}")
    if num_frames < 1 or (num_frames - 1) % FRAME_STRIDE:
        raise ValueError(f"num_frames must be {FRAME_STRIDE}k+1 (1, 5, 9, ...), got {num_frames}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if reference and not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")


def _still_video(image: Image.Image, width: int, height: int, num_frames: int) -> list[Image.Image]:
    # Center-crop to the target aspect ratio instead of letting the video processor stretch it.
    still = ImageOps.fit(ImageOps.exif_transpose(image).convert("RGB"), (width, height), Image.Resampling.LANCZOS)
    return [still] * num_frames


def generate(
    pipe: DiffusionPipeline,
    *,
    prompt: str,
    width: int,
    height: int,
    num_frames: int,
    steps: int,
    seed: int,
    guidance_scale: float = 5.0,
    negative_prompt: str | None = None,
    reference_image: Image.Image | None = None,
    strength: float = 0.7,
    on_step: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Generate a video and return it as uint8 frames of shape (num_frames, height, width, 3).

    With ``reference_image`` the image, repeated as a still video, is noised to
    ``strength`` and denoised (Wan video-to-video), so only about
    ``steps * strength`` steps run (at least one). ``on_step(done, total)`` is
    called after every denoising step; whatever it raises aborts the generation
    and propagates. Same inputs and seed give byte-identical frames on the same
    machine. Not thread-safe: run one generation at a time per pipeline.
    """
    import torch

    _validate(prompt, width, height, num_frames, steps, reference_image is not None, strength)

    def callback(p: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            on_step(step + 1, p.num_timesteps)
        return {}  # diffusers pops from the returned dict: None would crash

    do_cfg = guidance_scale > 1.0
    # A CPU generator gives the same noise whether the pipeline runs on CPU or GPU.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        # Encode through WanPipeline (which treats `ftfy` as optional) and hand the
        # embeddings to either pipeline: WanVideoToVideoPipeline's prompt cleaning
        # calls ftfy unconditionally and fails without it.
        prompt_embeds, negative_embeds = pipe.encode_prompt(
            prompt=prompt,
            negative_prompt=negative_prompt,
            do_classifier_free_guidance=do_cfg,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
            device=pipe._execution_device,
        )
        common: dict[str, Any] = {
            "prompt_embeds": prompt_embeds,
            "negative_prompt_embeds": negative_embeds if do_cfg else None,
            "height": height,
            "width": width,
            "num_inference_steps": steps,
            "guidance_scale": guidance_scale,
            "generator": generator,
            "output_type": "np",
            "callback_on_step_end": callback,
        }
        if reference_image is None:
            output = pipe(num_frames=num_frames, **common)
        else:
            # get_timesteps keeps int(steps * strength) steps; zero steps would crash.
            if int(steps * strength) < 1:
                strength = min(1.0, 1.5 / steps)
            output = _video_to_video(pipe)(
                video=_still_video(reference_image, width, height, num_frames), strength=strength, **common
            )

    frames = np.asarray(output.frames[0], dtype=np.float32)  # (F, H, W, 3) floats in [0, 1]
    return np.ascontiguousarray(np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8))
