"""`POST /internal/backends/{pool}/webhook`: a remote pool tells us one of its jobs changed.

Only a hint (polling is the truth, gpu_runner.remote): a verified webhook moves that remote job's next poll to
now, once per event id. Verification per dialect: Standard Webhooks with the pool's `webhook_secret` (videogen
peers; a timestamp more than 5 minutes off is refused, so a captured delivery cannot be replayed later), or, for
servers that sign nothing, the secret as a `token` query parameter (replays then change nothing but a poll).
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from jobs import backends
from jobs.api.errors import envelope
from jobs.services import remote as remote_services

MAX_BODY_BYTES = 64 * 1024
# Standard Webhooks' tolerance (the library's): older event ids can be forgotten, their replays fail anyway.
TOLERANCE_SECONDS = 300


def _error(status: int, message: str, code: str) -> JsonResponse:
    return JsonResponse(envelope(message, type="invalid_request_error", code=code), status=status)


@csrf_exempt
@require_POST
def remote_webhook(request: HttpRequest, pool: str) -> JsonResponse:
    config = backends.get(pool)
    if config is None or not config.webhook_secret:
        return _error(404, f"No remote pool {pool!r} takes webhooks here.", "not_found")
    if int(request.headers.get("Content-Length") or 0) > MAX_BODY_BYTES:
        return _error(413, f"A webhook body is at most {MAX_BODY_BYTES} bytes.", "body_too_large")
    body = request.body[: MAX_BODY_BYTES + 1]
    if len(body) > MAX_BODY_BYTES:
        return _error(413, f"A webhook body is at most {MAX_BODY_BYTES} bytes.", "body_too_large")
    event_id = ""
    if config.dialect.webhooks == "standard":
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            Webhook(config.webhook_secret).verify(body, headers)
        except WebhookVerificationError as exc:
            return _error(401, f"The webhook's signature does not verify: {exc}.", "invalid_signature")
        except ValueError:  # verified, then parsed by the library
            return _error(400, "The webhook body is not JSON.", "invalid_json")
        event_id = headers.get("webhook-id", "")
    elif not constant_time_compare(request.GET.get("token", ""), config.webhook_secret):
        return _error(401, "The webhook's token is missing or wrong.", "invalid_signature")
    try:
        payload = json.loads(body)
    except ValueError:
        return _error(400, "The webhook body is not JSON.", "invalid_json")
    if not isinstance(payload, dict):
        return _error(400, "The webhook body must be a JSON object.", "invalid_body")
    data = payload.get("data")
    remote_id = data.get("id") if isinstance(data, dict) else payload.get("id")
    if not isinstance(remote_id, str) or not remote_id or len(remote_id) > 200:
        return _error(400, "The webhook names no video id (data.id or id).", "invalid_body")
    if not event_id:  # unsigned servers send no event id: one hint per (video, status)
        event_id = f"{remote_id}:{str(payload.get('status') or payload.get('type') or '')[:40]}"
    result = remote_services.remote_hint(pool=pool, event_id=event_id, remote_id=remote_id)
    return JsonResponse({"received": True, "result": result})
