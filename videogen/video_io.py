"""MP4 (H.264) and WebP encoding of generated frames, plus decoding/probing for checks.

There is no system ffmpeg: everything goes through the binary shipped by
imageio-ffmpeg (``imageio_ffmpeg.get_ffmpeg_exe()``).
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
from PIL import Image

__all__ = ["Sample", "decode_mp4", "encode_mp4", "make_thumbnail", "probe_mp4", "sample_indices", "sample_mp4"]

# imageio quality 6 -> libx264 -crf 20: visually clean, modest size.
_QUALITY = 6
_THUMBNAIL_QUALITY = 80


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"expected frames of shape (F, H, W, 3) with F >= 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    return frames


def encode_mp4(frames: np.ndarray, fps: int) -> bytes:
    """Encode uint8 frames (F, H, W, 3) as a web-playable MP4: H.264, yuv420p, moov atom first."""
    frames = _check_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    with tempfile.TemporaryDirectory(prefix="videogen-enc-") as tmp:
        path = Path(tmp) / "video.mp4"
        writer = imageio.get_writer(
            path,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            quality=_QUALITY,
            # faststart moves the moov atom to the front so browsers can play while downloading.
            ffmpeg_params=["-movflags", "+faststart"],
            # yuv420p needs even dimensions: even sizes pass untouched, odd ones are
            # scaled up by one pixel instead of making ffmpeg fail.
            macro_block_size=2,
            ffmpeg_log_level="error",
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
        data = path.read_bytes() if path.exists() else b""
    if not data:
        raise RuntimeError("ffmpeg produced an empty MP4")
    return data


def make_thumbnail(frame: np.ndarray) -> bytes:
    """Encode one uint8 (H, W, 3) frame as WebP."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame of shape (H, W, 3), got {frame.dtype} {frame.shape}")
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buffer, format="WEBP", quality=_THUMBNAIL_QUALITY)
    return buffer.getvalue()


def decode_mp4(data: bytes, max_frames: int | None = None) -> np.ndarray:
    """Decode an MP4 to uint8 RGB frames of shape (F, H, W, 3), at most ``max_frames`` of them."""
    with tempfile.TemporaryDirectory(prefix="videogen-dec-") as tmp:
        path = Path(tmp) / "video.mp4"
        path.write_bytes(data)
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        try:
            meta: dict[str, Any] = next(reader)
            width, height = meta["size"]
            frames = []
            for raw in reader:
                if max_frames is not None and len(frames) >= max_frames:
                    break
                frames.append(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
        finally:
            reader.close()  # stops ffmpeg if we broke off early
    if not frames:
        return np.zeros((0, height, width, 3), dtype=np.uint8)
    return np.stack(frames)


def sample_indices(count: int, wanted: int) -> list[int]:
    """The first, the last, and evenly spaced frames between them."""
    if count <= 0 or wanted <= 0:
        return []
    return sorted({round(i) for i in np.linspace(0, count - 1, min(wanted, count))})


@dataclass(frozen=True)
class Sample:
    total: int  # frames in the clip
    indices: list[int]  # which of them `frames` are
    frames: np.ndarray  # (len(indices), H, W, 3) uint8, scaled down


_FRAME_COUNT_RE = re.compile(r"frame=\s*(\d+)")


def sample_mp4(
    data: bytes, wanted: int, *, max_side: int, max_frames: int, max_pixels: int, timeout: float = 120.0
) -> Sample:
    """`wanted` frames of an MP4 (sample_indices), each scaled down to at most `max_side` pixels on its longer side.

    Only those frames reach memory, whatever the clip's length or size. ffmpeg still decodes every frame on the way
    (H.264 frames refer to each other), so the clip is measured first without decoding it (its stream header and
    its packets) and refused with ValueError when it has over `max_frames` frames or over `max_pixels` pixels a
    frame: what a clip may cost is bounded before any of it is decoded."""
    with tempfile.TemporaryDirectory(prefix="videogen-sample-") as tmp:
        path = Path(tmp) / "video.mp4"
        path.write_bytes(data)
        exe = imageio_ffmpeg.get_ffmpeg_exe()
        # Stream copy to nowhere: the header's size and one "frame=" per packet, nothing decoded.
        measured = subprocess.run(
            [exe, "-hide_banner", "-noautorotate", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
        stream = _STREAM_RE.search(measured.stderr)
        counts = _FRAME_COUNT_RE.findall(measured.stderr)
        if measured.returncode != 0 or stream is None or not counts:
            raise ValueError(f"no video stream found: {measured.stderr.strip()[-300:]}")
        width, height, total = int(stream["w"]), int(stream["h"]), int(counts[-1])
        if width * height > max_pixels:
            raise ValueError(f"the clip is {width}x{height}: over {max_pixels} pixels a frame")
        if total > max_frames:
            raise ValueError(f"the clip has {total} frames: over {max_frames}")
        indices = sample_indices(total, wanted)
        scale = min(1.0, max_side / max(width, height, 1))
        out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
        if not indices:
            return Sample(total, [], np.zeros((0, out_h, out_w, 3), dtype=np.uint8))
        picked = "+".join(f"eq(n\\,{i})" for i in indices)
        source = [exe, "-v", "error", "-noautorotate", "-i", str(path), "-map", "0:v:0"]
        only = ["-vf", f"select='{picked}',scale={out_w}:{out_h}", "-fps_mode", "passthrough"]
        raw = ["-frames:v", str(len(indices)), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        decoded = subprocess.run(
            [*source, *only, *raw],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    if decoded.returncode != 0:
        raise ValueError(f"the clip could not be decoded: {decoded.stderr.decode(errors='replace').strip()[-300:]}")
    size = out_w * out_h * 3
    got = len(decoded.stdout) // size
    if got == 0:
        raise ValueError("the clip has no decodable frame")
    frames = np.frombuffer(decoded.stdout[: got * size], dtype=np.uint8).reshape(got, out_h, out_w, 3)
    return Sample(total, indices[:got], frames)


def _top_level_boxes(data: bytes) -> list[str]:
    """Types of the top-level ISO-BMFF boxes, in file order."""
    boxes: list[str] = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:  # 64-bit size follows the type
            if offset + 16 > len(data):
                break
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        elif size == 0:  # box runs to the end of the file
            size = len(data) - offset
        if size < 8:
            break  # corrupt; stop rather than loop forever
        boxes.append(kind.decode("latin-1"))
        offset += size
    return boxes


_STREAM_RE = re.compile(
    r"Stream #\d+:\d+.*?: Video: (?P<codec>\w+)[^,]*, (?P<pix_fmt>\w+)[^\n]*?, (?P<w>\d+)x(?P<h>\d+)"
)
_FPS_RE = re.compile(r"(?P<fps>\d+(?:\.\d+)?) fps")


def probe_mp4(data: bytes) -> dict[str, Any]:
    """Describe an MP4: codec, width, height, frames, fps, pix_fmt, faststart."""
    boxes = _top_level_boxes(data)
    faststart = "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")

    with tempfile.TemporaryDirectory(prefix="videogen-probe-") as tmp:
        path = Path(tmp) / "video.mp4"
        path.write_bytes(data)
        # ffmpeg with only an input prints the stream info to stderr and exits 1.
        stderr = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        ).stderr
        match = _STREAM_RE.search(stderr)
        if match is None:
            raise ValueError(f"no video stream found: {stderr.strip()[-500:]}")
        # Count by decoding: exact, and the header's nb_frames is not printed by ffmpeg -i.
        frames, _seconds = imageio_ffmpeg.count_frames_and_secs(str(path))

    line = stderr[match.start() : stderr.find("\n", match.start())]
    fps_match = _FPS_RE.search(line)
    fps = float(fps_match["fps"]) if fps_match else 0.0
    return {
        "codec": match["codec"],
        "width": int(match["w"]),
        "height": int(match["h"]),
        "frames": frames,
        "fps": int(fps) if fps.is_integer() else fps,
        "pix_fmt": match["pix_fmt"],
        "faststart": faststart,
    }
