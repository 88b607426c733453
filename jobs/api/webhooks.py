"""`/v1/webhook_endpoints` and `/v1/webhook_event_types`, as the official SDK's `client.webhooks` calls them,
plus each endpoint's delivery log and replay. Thin: notifications.webhooks does the work."""

from __future__ import annotations

import threading

from django.conf import settings
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.api import schema
from jobs.api.errors import ApiError, not_found
from jobs.api.params import MAX_PAGE, int_param
from jobs.api.ratelimit import RateLimitedAPIView
from jobs.presenters import unix_time
from notifications import selectors, webhooks
from notifications.events import EVENT_TYPES, WEBHOOK_EVENT_TYPES
from notifications.models import WebhookDelivery, WebhookEndpoint


def endpoint_object(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict:
    body = {
        "id": endpoint.public_id,
        "object": "webhook_endpoint",
        "created_at": unix_time(endpoint.created_at),
        "updated_at": unix_time(endpoint.updated_at),
        "name": endpoint.name,
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "signing_secret_hint": f"whsec_…{endpoint.secret[-4:]}",
        # Extensions.
        "status": "disabled" if endpoint.disabled_at else "enabled",
        "disabled_reason": endpoint.disabled_reason or None,
    }
    if with_secret:
        body["signing_secret"] = endpoint.secret
    return body


def delivery_object(delivery: WebhookDelivery) -> dict:
    return {
        "id": delivery.event_id,
        "object": "webhook_delivery",
        "event_type": delivery.event_type,
        "status": delivery.status,
        "attempts": [
            {
                "number": a.number,
                "started_at": unix_time(a.started_at),
                "status_code": a.status_code,
                "latency_ms": a.latency_ms,
                "response_excerpt": a.response_excerpt,
                # The owner's reason (generic: no address or port detail; staff see that in the admin).
                "error": "in progress" if webhooks.on_the_wire(a) else (a.error or None),
            }
            for a in delivery.attempt_log.all()
        ],
        "next_attempt_at": unix_time(delivery.next_attempt_at) if delivery.status == "pending" else None,
        "created_at": unix_time(delivery.created_at),
        "delivered_at": unix_time(delivery.delivered_at),
    }


def _endpoint(request: Request, endpoint_id: str) -> WebhookEndpoint:
    endpoint = selectors.webhook_endpoint(user_id=request.user.pk, public_id=endpoint_id)
    if endpoint is None:
        raise not_found("webhook endpoint")
    return endpoint


def _body(request: Request) -> dict:
    if not hasattr(request.data, "keys"):
        raise ApiError("The request body must be a JSON object.", code="invalid_body")
    return request.data


def _no_unknown(data: dict) -> None:
    unknown = sorted(set(data) - {"name", "url", "event_types"})
    if unknown:
        raise ApiError(f"Unknown parameter: '{unknown[0]}'.", param=unknown[0], code="unknown_parameter")


def _invalid(exc: webhooks.Invalid) -> ApiError:
    return ApiError(str(exc), param=exc.param, code="invalid_value")


def _page(rows: list, limit: int, present) -> Response:
    data = [present(r) for r in rows[:limit]]
    return Response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(rows) > limit,
        }
    )


class WebhookEndpointsView(RateLimitedAPIView):
    @schema.list_endpoints
    def get(self, request: Request) -> Response:
        limit = int_param(request, "limit", 20, low=1, high=MAX_PAGE)
        rows = selectors.webhook_endpoints_page(
            user_id=request.user.pk, after=request.query_params.get("after"), limit=limit
        )
        if rows is None:
            raise not_found("webhook endpoint", param="after")
        return _page(rows, limit, endpoint_object)

    @schema.create_endpoint
    def post(self, request: Request) -> Response:
        data = _body(request)
        _no_unknown(data)
        try:
            endpoint = webhooks.endpoint_create(
                user_id=request.user.pk, name=data.get("name"), url=data.get("url"), event_types=data.get("event_types")
            )
        except webhooks.Invalid as exc:
            raise _invalid(exc) from None
        return Response(endpoint_object(endpoint, with_secret=True), status=200)


class WebhookEndpointDetailView(RateLimitedAPIView):
    @schema.retrieve_endpoint
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(endpoint_object(_endpoint(request, endpoint_id)))

    @schema.update_endpoint
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint, data = _endpoint(request, endpoint_id), _body(request)
        _no_unknown(data)
        try:
            webhooks.endpoint_update(
                endpoint=endpoint, name=data.get("name"), url=data.get("url"), event_types=data.get("event_types")
            )
        except webhooks.Invalid as exc:
            raise _invalid(exc) from None
        return Response(endpoint_object(endpoint))

    @schema.delete_endpoint
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        webhooks.endpoint_delete(endpoint=endpoint)
        return Response({"id": endpoint.public_id, "object": "webhook_endpoint.deleted", "deleted": True})


class WebhookRotateSecretView(RateLimitedAPIView):
    @schema.rotate_secret
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = webhooks.endpoint_rotate_secret(endpoint=_endpoint(request, endpoint_id))
        return Response(endpoint_object(endpoint, with_secret=True))


# Requests of this process waiting for a test's answer: the rest of its threads stay free for everyone else.
_test_waiters = threading.BoundedSemaphore(max(1, settings.WEB_THREADS - 1))


class WebhookTestView(RateLimitedAPIView):
    """The SDK's `client.webhooks.test` expects the answer in its response: the send runs on a delivery worker
    (never in this thread: a slow receiver would hold it) and this request waits for it, boundedly."""

    @schema.test_endpoint
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint, data = _endpoint(request, endpoint_id), _body(request)
        event_type = data.get("event_type")
        if event_type not in WEBHOOK_EVENT_TYPES:
            raise ApiError(
                "'event_type' must be one of GET /v1/webhook_event_types.", param="event_type", code="invalid_value"
            )
        no_retry = {"x-should-retry": "false"}  # the SDK's retry would only meet the same bound
        if not _test_waiters.acquire(blocking=False):
            raise ApiError(
                "Too many webhook tests are waiting on this server; try again in a moment.",
                type="server_error",
                code="webhook_tests_busy",
                status_code=503,
                headers={"Retry-After": "1"},
            )
        try:
            try:
                delivery = webhooks.test_start(endpoint=endpoint, event_type=event_type)
            except webhooks.Busy:
                raise ApiError(
                    f"At most {settings.WEBHOOKS['MAX_TESTS_PER_USER']} webhook test(s) of yours can run at once; "
                    "try again when the running one has ended.",
                    code="webhook_test_in_progress",
                    status_code=429,
                    type="rate_limit_error",
                    headers=no_retry,
                ) from None
            wait = settings.WEBHOOKS["TEST_WAIT_SECONDS"]
            attempt = webhooks.test_outcome(delivery, wait=wait)
        finally:
            _test_waiters.release()
        if attempt is None:
            raise ApiError(
                f"The test was not answered within {wait:g} seconds; its outcome will show in "
                f"GET /v1/webhook_endpoints/{endpoint.public_id}/deliveries (delivery {delivery.event_id}).",
                type="server_error",
                code="webhook_test_timeout",
                status_code=504,
                headers=no_retry,
            )
        code = attempt.status_code
        return Response(
            {
                "object": "webhook_endpoint.test",
                "webhook_endpoint_id": endpoint.public_id,
                "event_type": event_type,
                "status_code": code or 0,
                "success": code is not None and 200 <= code < 300,
                "delivery_id": delivery.event_id,
            }
        )


class WebhookEventTypesView(RateLimitedAPIView):
    @schema.list_event_types
    def get(self, request: Request) -> Response:
        return Response(
            {
                "object": "list",
                "data": list(WEBHOOK_EVENT_TYPES),
                "descriptions": {name: EVENT_TYPES[name] for name in WEBHOOK_EVENT_TYPES},
            }
        )


class WebhookDeliveriesView(RateLimitedAPIView):
    """An endpoint's deliveries, newest first, each with every attempt (status, latency, response excerpt)."""

    @schema.list_deliveries
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint, limit = _endpoint(request, endpoint_id), int_param(request, "limit", 20, low=1, high=MAX_PAGE)
        rows = selectors.webhook_deliveries_page(
            endpoint=endpoint, after=request.query_params.get("after"), limit=limit
        )
        if rows is None:
            raise not_found("delivery", param="after")
        return _page(rows, limit, delivery_object)


class WebhookReplayView(RateLimitedAPIView):
    @schema.replay_delivery
    def post(self, request: Request, endpoint_id: str, event_id: str) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        delivery = selectors.webhook_delivery(endpoint=endpoint, event_id=event_id)
        if delivery is None:
            raise not_found("delivery")
        if endpoint.disabled_at is not None:
            raise ApiError(
                "This endpoint is disabled; update it (POST /v1/webhook_endpoints/{id}) to enable it again.",
                code="endpoint_disabled",
                status_code=409,
            )
        return Response(delivery_object(webhooks.replay(delivery=delivery)))
