"""The OpenAI error envelope for every API failure: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import logging

import redis
from django import db
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

log = logging.getLogger(__name__)

# A store that is down or a connection cut: transient, answered 503 with Retry-After (never a 500).
UNAVAILABLE = (db.OperationalError, db.InterfaceError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class ApiError(exceptions.APIException):
    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int = 400,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.type = message, param, code, type
        self.status_code = status_code
        self.headers = headers or {}


def body_too_large() -> ApiError:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return ApiError(f"The request body is too large: at most {limit} bytes.", code="body_too_large", status_code=413)


def envelope(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def unavailable() -> ApiError:
    """A store went away under the request (a restart, a failover, a terminated connection): nothing was
    committed, and a retry a moment later will do. The SDK retries a 503 by itself."""
    return ApiError(
        "The service is briefly unavailable; please retry.",
        type="server_error",
        code="unavailable",
        status_code=503,
        headers={"Retry-After": "1", "retry-after-ms": "1000"},
    )


def not_found(what: str = "video", param: str | None = None) -> ApiError:
    return ApiError(f"No {what} found with that id.", param=param, code="not_found", status_code=404)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    # Imported here: rest_framework.views resolves the parser classes, and our parser imports this module.
    from rest_framework.views import set_rollback

    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        body = envelope(exc.message, type=exc.type, param=exc.param, code=exc.code)
        code, headers = exc.status_code, exc.headers
    elif isinstance(exc, RequestDataTooBig):
        return exception_handler(body_too_large(), context)
    elif isinstance(exc, SuspiciousOperation):
        body, code = envelope("The request was malformed.", type="invalid_request_error", code="invalid_body"), 400
    elif isinstance(exc, Http404):
        body, code = envelope("Not found.", type="invalid_request_error", code="not_found"), 404
    elif isinstance(exc, exceptions.ParseError):
        body = envelope(
            f"Could not parse the request body: {exc.detail}",
            type="invalid_request_error",
            code="invalid_body",
        )
        code = 400
    elif isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        body = envelope(
            str(exc.detail)
            if isinstance(exc, exceptions.AuthenticationFailed)
            else "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            type="invalid_request_error",
            code="invalid_api_key",
        )
        code = 401
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    elif isinstance(exc, exceptions.PermissionDenied):
        body, code = envelope(str(exc.detail), type="invalid_request_error", code="permission_denied"), 403
    elif isinstance(exc, exceptions.MethodNotAllowed):
        body, code = envelope(str(exc.detail), type="invalid_request_error", code="method_not_allowed"), 405
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        body = envelope(
            f"{exc.detail} Send application/json or multipart/form-data.",
            type="invalid_request_error",
            code="unsupported_media_type",
        )
        code = 415
    elif isinstance(exc, exceptions.Throttled):
        body, code = envelope(str(exc.detail), type="rate_limit_error", code="rate_limited"), 429
    elif isinstance(exc, exceptions.APIException):
        body = envelope(str(exc.detail), type="invalid_request_error", code=exc.default_code)
        code = exc.status_code
    elif isinstance(exc, UNAVAILABLE):
        log.warning(
            "%s %s: a store is unavailable (%s: %s)",
            context["request"].method,
            context["request"].path,
            type(exc).__name__,
            exc,
        )
        return exception_handler(unavailable(), context)
    else:
        return None  # unexpected: Django's 500 handler answers (also in the envelope, see videogen.urls)
    set_rollback()
    return Response(body, status=code, headers=headers)


def json_404(request, exception=None) -> JsonResponse:
    message = f"Unknown endpoint: {request.method} {request.path}."
    return JsonResponse(envelope(message, type="invalid_request_error", code="not_found"), status=404)


def json_500(request) -> JsonResponse:
    return JsonResponse(
        envelope("The server had an error while processing your request.", type="server_error"),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
