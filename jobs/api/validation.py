"""Validation of a create request against the model catalogue. Every failure names its `param`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from PIL import Image, UnidentifiedImageError

from jobs.api.errors import ApiError
from jobs.catalog import CATALOG, default_model, get_spec
from jobs.services import SubmitRequest

CREATE_FIELDS = frozenset({"prompt", "model", "seconds", "size", "input_reference", "start_deadline_seconds"})


REFERENCE_FORMATS = ("PNG", "JPEG", "WEBP")


def _bad(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(message, param=param, code=code)


def _single(data, name: str):
    # Multipart bodies arrive as QueryDicts: take the value, not the list.
    if hasattr(data, "getlist"):
        values = data.getlist(name)
        return values[-1] if values else None
    return data.get(name)


def parse_create(data, files) -> SubmitRequest:
    if not hasattr(data, "keys"):
        raise ApiError("The request body must be a JSON object.", code="invalid_body")
    unknown = sorted(set(data.keys()) - CREATE_FIELDS) + sorted(set(files.keys()) - {"input_reference"})
    if unknown:
        raise _bad(f"Unknown parameter: '{unknown[0]}'.", unknown[0], "unknown_parameter")

    prompt = _single(data, "prompt")
    if prompt is None:
        raise _bad("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    if not isinstance(prompt, str):
        raise _bad("'prompt' must be a string.", "prompt", "invalid_type")
    prompt = prompt.strip()
    if not prompt:
        raise _bad("'prompt' must not be empty.", "prompt", "empty_prompt")
    if "\x00" in prompt:
        raise _bad("'prompt' must not contain NUL characters.", "prompt", "invalid_value")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape
        raise _bad("'prompt' is not valid Unicode text.", "prompt", "invalid_value") from None
    limit = settings.VIDEOGEN["PROMPT_MAX_CHARS"]
    if len(prompt) > limit:
        raise _bad(f"'prompt' is too long: {len(prompt)} characters, at most {limit}.", "prompt", "prompt_too_long")

    model = _single(data, "model") or default_model()
    spec = get_spec(model) if isinstance(model, str) else None
    if spec is None:
        raise _bad(
            f"Unknown model {model!r}. Supported models: {', '.join(sorted(CATALOG))}.",
            "model",
            "model_not_found",
        )

    raw_seconds = _single(data, "seconds")
    if raw_seconds in (None, ""):
        seconds = spec.default_seconds
    else:
        try:
            if isinstance(raw_seconds, bool | float):
                raise ValueError
            seconds = int(str(raw_seconds).strip())
        except ValueError:
            seconds = None
        if seconds not in spec.seconds:
            supported = ", ".join(f"'{s}'" for s in spec.seconds)
            raise _bad(
                f"'seconds' {raw_seconds!r} is not supported by {spec.name}; supported: {supported}.",
                "seconds",
                "unsupported_seconds",
            )

    size = _single(data, "size") or spec.default_size
    if not isinstance(size, str) or size not in spec.sizes:
        raise _bad(
            f"'size' {size!r} is not supported by {spec.name}; supported: {', '.join(spec.sizes)} "
            "(width x height; Wan needs multiples of 16, so other sizes would be silently cropped).",
            "size",
            "unsupported_size",
        )
    width, height = (int(part) for part in size.split("x"))

    deadline = _start_deadline(_single(data, "start_deadline_seconds"))
    reference_png = _reference(data, files, width, height, spec.supports_reference, spec.name)
    fingerprint = {
        "prompt": prompt,
        "model": model,
        "seconds": seconds,
        "size": size,
        "input_reference": hashlib.sha256(reference_png).hexdigest() if reference_png else None,
    }
    if deadline is not None:
        fingerprint["start_deadline_seconds"] = deadline
    request_hash = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
    return SubmitRequest(
        prompt=prompt,
        model=model,
        seconds=seconds,
        width=width,
        height=height,
        reference_png=reference_png,
        request_hash=request_hash,
        start_deadline_seconds=deadline,
    )


MAX_START_DEADLINE_SECONDS = 7 * 24 * 3600


def _start_deadline(raw) -> int | None:
    """Optional time-to-start deadline, in seconds from now: a job not started by then ends cancelled."""
    if raw in (None, ""):
        return None
    try:
        if isinstance(raw, bool | float):
            raise ValueError
        value = int(str(raw).strip())
    except ValueError:
        raise _bad("'start_deadline_seconds' must be an integer.", "start_deadline_seconds", "invalid_type") from None
    if not 1 <= value <= MAX_START_DEADLINE_SECONDS:
        raise _bad(
            f"'start_deadline_seconds' must be between 1 and {MAX_START_DEADLINE_SECONDS}.", "start_deadline_seconds"
        )
    return value


def _reference_bytes(data, files) -> bytes | None:
    upload = files.get("input_reference")
    max_bytes = settings.VIDEOGEN["REFERENCE_MAX_BYTES"]
    if isinstance(upload, UploadedFile):
        if upload.size > max_bytes:
            raise _bad(
                f"'input_reference' is too large: at most {max_bytes} bytes.",
                "input_reference",
                "file_too_large",
            )
        return upload.read()
    value = _single(data, "input_reference")
    if value in (None, ""):
        return None
    image_url = value.get("image_url") if isinstance(value, dict) else None
    if isinstance(value, dict) and value.get("file_id"):
        raise _bad(
            "'input_reference.file_id' is not supported here; upload the image or send a data URL.",
            "input_reference",
            "unsupported_reference",
        )
    if not isinstance(image_url, str) or not image_url.startswith("data:image/") or ";base64," not in image_url:
        raise _bad(
            "'input_reference' must be an uploaded image file or {'image_url': 'data:image/...;base64,...'} "
            "(remote URLs are not fetched).",
            "input_reference",
            "invalid_reference",
        )
    encoded = image_url.split(";base64,", 1)[1]
    if len(encoded) > max_bytes * 4 // 3 + 4:
        raise _bad(f"'input_reference' is too large: at most {max_bytes} bytes.", "input_reference", "file_too_large")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("'input_reference' data URL is not valid base64.", "input_reference", "invalid_reference") from None


def _reference(data, files, width: int, height: int, supported: bool, model: str) -> bytes | None:
    raw = _reference_bytes(data, files)
    if raw is None:
        return None
    if not supported:
        raise _bad(f"{model} does not take an input_reference.", "input_reference", "unsupported_reference")
    try:
        # Only these decoders ever see the bytes: Pillow would otherwise try every format it knows (BMP, TIFF,
        # ICO, PPM, and EPS through Ghostscript) on whatever a client uploads.
        with Image.open(io.BytesIO(raw), formats=REFERENCE_FORMATS) as probe:
            probe.verify()  # checks the file's structure without decoding it all
        with Image.open(io.BytesIO(raw), formats=REFERENCE_FORMATS) as image:
            if image.size != (width, height):
                raise _bad(
                    f"'input_reference' is {image.size[0]}x{image.size[1]} but the requested size is "
                    f"{width}x{height}; the reference image must match 'size'.",
                    "input_reference",
                    "reference_size_mismatch",
                )
            out = io.BytesIO()
            image.convert("RGB").save(out, format="PNG")
            return out.getvalue()
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _bad(
            "'input_reference' is not a readable image (PNG, JPEG or WebP).",
            "input_reference",
            "invalid_image",
        ) from None
