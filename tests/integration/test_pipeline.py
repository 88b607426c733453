"""The real diffusers Wan pipeline on a tiny random model: no Django, no database, CPU only."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpu_runner.pipeline import GenerationAborted, generate, load_pipeline
from gpu_runner.tiny_model import build_tiny_wan
from videogen.video_io import decode_mp4, encode_mp4, make_thumbnail, probe_mp4

pytestmark = pytest.mark.pipeline

SIZE, FRAMES, STEPS = 128, 17, 4


class Stop(GenerationAborted):
    pass


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan")


@pytest.fixture(scope="module")
def pipe(model_dir: Path):
    return load_pipeline(str(model_dir))


def _generate(pipe, **overrides) -> np.ndarray:
    args = {
        "prompt": "a red fox running through snow",
        "width": SIZE,
        "height": SIZE,
        "num_frames": FRAMES,
        "steps": STEPS,
        "seed": 1234,
    }
    return generate(pipe, **(args | overrides))


@pytest.fixture(scope="module")
def frames(pipe) -> np.ndarray:
    return _generate(pipe)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_is_deterministic_and_complete(model_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_wan(tmp_path / "again")
    first, second = _tree(model_dir), _tree(again)
    weights = [name for name in first if name.endswith(".safetensors")]
    assert len(weights) == 3  # text_encoder, transformer, vae
    assert "tokenizer/tokenizer.json" in first
    assert first == second


def test_build_is_idempotent_and_race_safe(model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "shared"
    errors: list[BaseException] = []

    def build() -> None:
        try:
            build_tiny_wan(target)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]  # no temp dirs left behind
    assert _tree(target) == _tree(model_dir)
    mtime = (target / "model_index.json").stat().st_mtime_ns
    assert build_tiny_wan(target) == target.absolute()
    assert (target / "model_index.json").stat().st_mtime_ns == mtime


def test_load_pipeline_is_cached(model_dir: Path, pipe) -> None:
    assert load_pipeline(str(model_dir)) is pipe
    assert load_pipeline(str(model_dir / ".")) is pipe


def test_tokenizer_round_trips_through_save(model_dir: Path, pipe) -> None:
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(model_dir / "tokenizer")
    assert len(reloaded) == pipe.text_encoder.config.vocab_size == 192
    for text in ["a red fox", "", "café 日本 🎥", "x" * 2000]:
        assert reloaded(text).input_ids == pipe.tokenizer(text).input_ids
    assert pipe.tokenizer("日本").input_ids[-2] == pipe.tokenizer.unk_token_id


def test_generate_shape_and_determinism(pipe, frames: np.ndarray) -> None:
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert frames.dtype == np.uint8
    assert frames.std() > 0
    assert np.array_equal(_generate(pipe), frames)
    assert not np.array_equal(_generate(pipe, seed=1235), frames)


def test_on_step_reports_progress(pipe) -> None:
    calls: list[tuple[int, int]] = []
    _generate(pipe, width=32, height=32, num_frames=5, on_step=lambda i, n: calls.append((i, n)))
    assert calls == [(i, STEPS) for i in range(1, STEPS + 1)]


@pytest.mark.parametrize("error", [Stop, RuntimeError])
def test_raising_from_on_step_aborts_and_pipeline_recovers(pipe, frames: np.ndarray, error) -> None:
    calls: list[tuple[int, int]] = []

    def on_step(done: int, total: int) -> None:
        calls.append((done, total))
        raise error("cancelled")

    started = time.monotonic()
    with pytest.raises(error, match="cancelled"):
        _generate(pipe, steps=200, on_step=on_step)
    assert calls == [(1, 200)]
    assert time.monotonic() - started < 10  # one step, not 200
    # Still usable, and the aborted run left no scheduler state behind.
    assert np.array_equal(_generate(pipe), frames)


def test_reference_image_conditions_the_video(pipe, frames: np.ndarray) -> None:
    gradient = np.linspace(0, 255, 200, dtype=np.uint8)
    wide = Image.fromarray(np.stack([np.tile(gradient, (100, 1))] * 3, axis=-1))  # 200x100, not square
    flat = Image.new("RGB", (64, 64), (10, 200, 30))
    calls: list[tuple[int, int]] = []

    out = _generate(pipe, reference_image=wide, strength=0.5, on_step=lambda i, n: calls.append((i, n)))
    assert out.shape == (FRAMES, SIZE, SIZE, 3) and out.dtype == np.uint8
    assert calls == [(1, 2), (2, 2)]  # int(4 * 0.5) steps
    assert np.array_equal(_generate(pipe, reference_image=wide, strength=0.5), out)
    assert not np.array_equal(_generate(pipe, reference_image=flat, strength=0.5), out)
    assert not np.array_equal(out, frames)
    # Text-to-video still works and is unchanged after sharing the scheduler with video-to-video.
    assert np.array_equal(_generate(pipe), frames)

    tiny_strength = _generate(pipe, width=48, height=32, num_frames=5, reference_image=flat, strength=0.01)
    assert tiny_strength.shape == (5, 32, 48, 3)


@pytest.mark.parametrize(
    "overrides",
    [{"width": 120}, {"height": 100}, {"num_frames": 16}, {"num_frames": 0}, {"steps": 0}],
)
def test_generate_rejects_invalid_sizes(pipe, overrides: dict) -> None:
    with pytest.raises(ValueError):
        _generate(pipe, **overrides)


def test_generate_rejects_invalid_strength(pipe) -> None:
    with pytest.raises(ValueError):
        _generate(pipe, reference_image=Image.new("RGB", (8, 8)), strength=0)


@pytest.mark.parametrize("prompt", ["", "ça va? 日本語のプロンプト 🎥", "a very long prompt " * 106])
def test_unusual_prompts_generate(pipe, prompt: str) -> None:
    out = _generate(pipe, prompt=prompt, width=32, height=32, num_frames=5, steps=2, negative_prompt="blurry")
    assert out.shape == (5, 32, 32, 3)


def test_encode_mp4_is_web_playable_and_round_trips(frames: np.ndarray) -> None:
    data = encode_mp4(frames, fps=16)
    assert probe_mp4(data) == {
        "codec": "h264",
        "width": SIZE,
        "height": SIZE,
        "frames": FRAMES,
        "fps": 16,
        "pix_fmt": "yuv420p",
        "faststart": True,
    }
    decoded = decode_mp4(data)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert decode_mp4(data, max_frames=3).shape == (3, SIZE, SIZE, 3)


def test_encode_mp4_handles_odd_sizes_and_rejects_bad_input() -> None:
    data = encode_mp4(np.full((5, 33, 47, 3), 128, dtype=np.uint8), fps=8)
    info = probe_mp4(data)
    assert (info["width"], info["height"], info["frames"]) == (48, 34, 5)  # padded to even for yuv420p
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((0, 16, 16, 3), dtype=np.uint8), fps=8)
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((2, 16, 16, 3), dtype=np.float32), fps=8)


def test_probe_detects_moov_after_mdat(frames: np.ndarray, tmp_path: Path) -> None:
    import imageio.v2 as imageio

    # Without +faststart ffmpeg writes the moov atom at the end (what export_to_video does).
    path = tmp_path / "slow.mp4"
    with imageio.get_writer(path, format="FFMPEG", fps=8, codec="libx264", macro_block_size=1) as writer:
        for frame in frames[:5]:
            writer.append_data(frame)
    info = probe_mp4(path.read_bytes())
    assert info["faststart"] is False
    assert (info["codec"], info["frames"], info["fps"]) == ("h264", 5, 8)


def test_thumbnail_is_webp(frames: np.ndarray) -> None:
    data = make_thumbnail(frames[0])
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "WEBP"
        assert image.size == (SIZE, SIZE)
