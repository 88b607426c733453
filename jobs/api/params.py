"""Query parameters shared by the API's views: one error for a bad one, naming it."""

from __future__ import annotations

from rest_framework.request import Request

from jobs.api.errors import ApiError

MAX_PAGE = 100


def int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"'{name}' must be an integer.", param=name, code="invalid_type") from None
    if not low <= value <= high:
        raise ApiError(f"'{name}' must be between {low} and {high}.", param=name, code="invalid_value")
    return value
