"""Serving stored clips. From object storage: a redirect to a short-lived presigned URL, so the bytes never pass
through the web process. From the local file store: whole files or one byte range (browsers seek with Range;
Safari needs it to play)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from storages.backends.s3 import S3Storage

from jobs.api.errors import ApiError, envelope

RANGE = re.compile(r"bytes=(\d*)-(\d*)")
CHUNK = 64 * 1024


def _chunks(fh, remaining: int) -> Iterator[bytes]:
    with fh:
        while remaining > 0:
            data = fh.read(min(CHUNK, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data


def presigned_redirect(key: str, *, content_type: str, filename: str) -> HttpResponseRedirect | None:
    """302 to the object itself, signed for STORAGE_URL_SECONDS (the client sends its Range there); None when the
    files are on the local file store."""
    if not isinstance(default_storage, S3Storage):
        return None
    disposition = f'inline; filename="{filename}"'
    parameters = {"ResponseContentType": content_type, "ResponseContentDisposition": disposition}
    url = default_storage.url(key, parameters=parameters, expire=settings.STORAGE_URL_SECONDS)
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "private, no-store"  # the URL expires; never let a cache hand it out later
    return response


def serve(key: str, *, content_type: str, filename: str, range_header: str | None):
    redirect = presigned_redirect(key, content_type=content_type, filename=filename)
    if redirect is not None:
        return redirect
    try:
        size = default_storage.size(key)
    except (FileNotFoundError, OSError):
        raise _gone() from None
    wanted = _byte_range(range_header, size)
    if wanted == "unsatisfiable":  # answered before the file is opened: nothing to leak
        message = f"Requested range not satisfiable (the content is {size} bytes)."
        response = JsonResponse(
            envelope(message, type="invalid_request_error", code="range_not_satisfiable"), status=416
        )
        response["Content-Range"] = f"bytes */{size}"
        return response
    try:
        fh = default_storage.open(key, "rb")
    except (FileNotFoundError, OSError):
        raise _gone() from None
    if wanted is None:
        response = FileResponse(fh, content_type=content_type)
        response["Content-Length"] = str(size)
    else:
        start, end = wanted
        fh.seek(start)
        response = StreamingHttpResponse(_chunks(fh, end - start + 1), status=206, content_type=content_type)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


def _gone() -> ApiError:
    return ApiError("The stored content is no longer available.", code="content_gone", status_code=404)


def _position(digits: str) -> int:
    # Any number longer than this is past the end of any file; int() of thousands of digits would raise.
    return int(digits) if len(digits) <= 18 else 10**18


def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) byte of a single `bytes=` range; None for the whole file (no header, or one this server
    does not serve: several ranges, other units); "unsatisfiable" for a range that starts past the end."""
    match = RANGE.fullmatch((header or "").strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # "bytes=-N": the last N bytes
        start, end = max(0, size - _position(last)), size - 1
    else:
        start, end = _position(first), min(_position(last) if last else size - 1, size - 1)
    if start >= size or start > end:
        return "unsatisfiable"
    return start, end
