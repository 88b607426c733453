"""The API's OpenAPI description (drf-spectacular): what /v1/openapi.json and /v1/docs serve.

The views parse and present by hand (jobs.api.validation, jobs.presenters); the serializers here only describe
those shapes for the schema, and the schemathesis run in tests/integration/test_openapi.py holds every response to them.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from jobs.api.validation import MAX_START_DEADLINE_SECONDS
from jobs.catalog import CATALOG
from notifications.events import WEBHOOK_EVENT_TYPES

PUBLIC_STATUSES = ["queued", "in_progress", "completed", "failed", "cancelled"]
ALL_SIZES = sorted({size for spec in CATALOG.values() for size in spec.sizes})
ALL_SECONDS = sorted({str(s) for spec in CATALOG.values() for s in spec.seconds}, key=int)


class BearerKey(OpenApiAuthenticationExtension):
    target_class = "jobs.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer vg-…`"}


class ErrorBody(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)


class Error(serializers.Serializer):
    error = ErrorBody()


class VideoError(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ContentCredentials(serializers.Serializer):
    standard = serializers.ChoiceField(["c2pa"])
    ai_generated = serializers.BooleanField(help_text="the manifest's digital source type is trainedAlgorithmicMedia")


class Video(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(["video"])
    model = serializers.CharField()
    status = serializers.ChoiceField(PUBLIC_STATUSES)
    progress = serializers.IntegerField(min_value=0, max_value=100)
    created_at = serializers.IntegerField()
    completed_at = serializers.IntegerField(allow_null=True)
    expires_at = serializers.IntegerField(allow_null=True)
    seconds = serializers.CharField()
    size = serializers.CharField()
    prompt = serializers.CharField(allow_blank=True)
    remixed_from_video_id = serializers.CharField(allow_null=True)
    error = VideoError(allow_null=True)
    queue_position = serializers.IntegerField(allow_null=True, help_text="extension: place in the queue")
    estimated_start_at = serializers.IntegerField(allow_null=True, help_text="extension")
    start_deadline_at = serializers.IntegerField(allow_null=True, help_text="extension")
    credits = serializers.IntegerField(help_text="extension: the price reserved or charged")
    attempt = serializers.IntegerField(help_text="extension: runner attempts so far")
    progress_estimated = serializers.BooleanField(
        help_text="extension: true while `progress` is estimated from observed timings (a remote server that "
        "reports no real progress)"
    )
    content_credentials = ContentCredentials(
        allow_null=True,
        help_text="extension: the completed video's file carries a signed C2PA manifest (AI-generated, the model "
        "and its version, the platform, the creation time); null otherwise",
    )


class VideoList(serializers.Serializer):
    object = serializers.ChoiceField(["list"])
    data = Video(many=True)
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()


class VideoDeleted(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(["video.deleted"])
    deleted = serializers.BooleanField()


class Appeal(serializers.Serializer):
    object = serializers.ChoiceField(choices=["video.appeal"])
    video_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["open", "approved", "rejected"])
    message = serializers.CharField(allow_blank=True)
    created_at = serializers.IntegerField()
    decided_at = serializers.IntegerField(allow_null=True)
    rerun_video_id = serializers.CharField(allow_null=True, help_text="the new video an approved appeal started")


class AppealRequest(serializers.Serializer):
    message = serializers.CharField(required=False, allow_blank=True, max_length=1000)


class Model(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(["model"])
    owned_by = serializers.CharField()
    sizes = serializers.ListField(child=serializers.CharField())
    seconds = serializers.ListField(child=serializers.CharField())
    default_size = serializers.CharField()
    default_seconds = serializers.CharField()


class ModelList(serializers.Serializer):
    object = serializers.ChoiceField(["list"])
    data = Model(many=True)


class Notification(serializers.Serializer):
    object = serializers.ChoiceField(["notification"])
    seq = serializers.IntegerField()
    event = serializers.CharField()
    created_at = serializers.IntegerField()
    data = serializers.DictField(help_text="the video object for video events")


class NotificationList(serializers.Serializer):
    object = serializers.ChoiceField(["list"])
    data = Notification(many=True)
    last_seq = serializers.IntegerField()
    has_more = serializers.BooleanField()
    read_seq = serializers.IntegerField(help_text="everything up to this seq is read")
    unread_count = serializers.IntegerField(help_text="unread outcomes (not every step of a video)")


class ReadState(serializers.Serializer):
    object = serializers.ChoiceField(["notification_read_state"])
    read_seq = serializers.IntegerField()
    unread_count = serializers.IntegerField()


class CreditEntry(serializers.Serializer):
    id = serializers.IntegerField()
    object = serializers.ChoiceField(["credit_entry"])
    kind = serializers.CharField()
    amount = serializers.IntegerField()
    allowance_amount = serializers.IntegerField()
    balance_after = serializers.IntegerField()
    video_id = serializers.CharField(allow_null=True)
    note = serializers.CharField(allow_blank=True)
    actor = serializers.CharField(allow_null=True)
    created_at = serializers.IntegerField()


class Credits(serializers.Serializer):
    object = serializers.ChoiceField(["credits"])
    tier = serializers.CharField()
    metered = serializers.BooleanField()
    balance = serializers.IntegerField()
    daily_allowance = serializers.IntegerField(allow_null=True)
    allowance_remaining = serializers.IntegerField(allow_null=True)
    available = serializers.IntegerField(allow_null=True)
    jobs_today = serializers.IntegerField()
    data = CreditEntry(many=True)
    has_more = serializers.BooleanField()
    last_id = serializers.IntegerField(allow_null=True)


_CREATE_PROPERTIES = {
    "prompt": {"type": "string", "minLength": 1, "description": "What the video shows."},
    "model": {"type": "string", "enum": sorted(CATALOG), "description": "GET /v1/models lists each model's options."},
    "seconds": {"type": "string", "enum": ALL_SECONDS, "description": "Clip length; per model, see /v1/models."},
    "size": {"type": "string", "enum": ALL_SIZES, "description": "WIDTHxHEIGHT; per model, see /v1/models."},
    "start_deadline_seconds": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_START_DEADLINE_SECONDS,
        "description": "extension: a job not started within this many seconds ends cancelled",
    },
}
CREATE_REQUEST = {
    "application/json": {
        "type": "object",
        "properties": {
            **_CREATE_PROPERTIES,
            "input_reference": {"type": "string", "description": "A reference image as a data: URL (PNG, JPEG, WebP)."},
        },
        "required": ["prompt"],
        "additionalProperties": False,
    },
    "multipart/form-data": {
        "type": "object",
        "properties": {
            **_CREATE_PROPERTIES,
            "input_reference": {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP"},
        },
        "required": ["prompt"],
        "additionalProperties": False,
    },
}

ERRORS = {
    code: OpenApiResponse(Error, description=description)
    for code, description in {
        400: "invalid request (the error names its `param`)",
        401: "no or an invalid API key",
        402: "not enough credits",
        404: "no such video (or not yours)",
        405: "method not allowed",
        409: "the video's state does not allow this",
        413: "body too large",
        415: "unsupported content type",
        416: "range not satisfiable",
        422: "Idempotency-Key reused with a different body",
        429: "rate, concurrency, queue or daily limit, or a moderation cooldown (with Retry-After)",
        503: "the tier's queue is too long now, or a store is briefly unavailable (with Retry-After)",
        504: "the answer did not come in time (the work goes on: its outcome shows where the message says)",
    }.items()
}


def errors(*codes: int) -> dict:
    return {code: ERRORS[code] for code in (400, 401, 405, 429, 503, *codes)}


EXAMPLE_VIDEO_ID = "video_6f1d2c3b4a5e6f708192a3b4"
_ID = OpenApiParameter(
    "video_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="a video's id",
    examples=[OpenApiExample("a video", value=EXAMPLE_VIDEO_ID)],
)

create_videos = extend_schema(
    operation_id="createVideo",
    summary="Create a video",
    description="JSON or multipart (the SDK sends multipart). Answers at once with the queued video.",
    request=CREATE_REQUEST,
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description="the same key and body return the same video; at most 255 characters",
        )
    ],
    responses={
        201: Video,
        200: OpenApiResponse(Video, description="an idempotent replay"),
        **errors(402, 413, 415, 422, 503),
    },
)
list_videos = extend_schema(
    operation_id="listVideos",
    summary="List your videos",
    description="Newest first by default; page with `after` = the previous page's `last_id`.",
    parameters=[
        OpenApiParameter("after", OpenApiTypes.STR, description="the last id of the previous page"),
        OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 100 (default 20)"),
        OpenApiParameter("order", OpenApiTypes.STR, enum=["asc", "desc"], description="by creation (default desc)"),
    ],
    responses={200: VideoList, **errors(404)},
)
retrieve_video = extend_schema(
    operation_id="retrieveVideo",
    parameters=[_ID],
    summary="A video's status",
    description="Poll this (or use the websocket); `openai-poll-after-ms` says when to ask again.",
    responses={200: Video, **errors(404)},
)
delete_video = extend_schema(
    operation_id="deleteVideo",
    parameters=[_ID],
    summary="Delete a finished video",
    description="Removes its files and erases its prompt at once; unfinished videos must be cancelled first.",
    responses={200: VideoDeleted, **errors(404, 409)},
)
cancel_video = extend_schema(
    operation_id="cancelVideo",
    parameters=[_ID],
    summary="Cancel an unfinished video",
    description=(
        "Any unfinished video; a running generation stops at its next heartbeat. On a remote generation server"
        " the cancel is sent on (DELETE); servers that cannot stop work already running (FastVideo, Aquiles-Image,"
        " SGLang Diffusion) may finish it, and the result is discarded: the video stays cancelled and is never"
        " charged."
    ),
    request=None,
    responses={200: Video, **errors(404, 409)},
)
appeal_video = extend_schema(
    operation_id="appealVideo",
    parameters=[_ID],
    summary="Appeal a moderation rejection",
    description=(
        "Once per video, for a video that failed with `moderation_blocked`. A moderator reviews it beside the "
        "original decision; if the appeal is approved, the same request runs again as a new video "
        "(`rerun_video_id`), and the rejected video stays failed."
    ),
    request=AppealRequest,
    responses={201: Appeal, **errors(400, 404, 409)},
)
get_appeal = extend_schema(
    operation_id="getVideoAppeal",
    parameters=[_ID],
    summary="A video's appeal and its outcome",
    responses={200: Appeal, **errors(404)},
)
video_content = extend_schema(
    operation_id="downloadVideoContent",
    summary="The finished clip or its thumbnail",
    description="From object storage: a redirect to a presigned URL. From local files: the bytes, with Range.",
    parameters=[
        _ID,
        OpenApiParameter("variant", OpenApiTypes.STR, enum=["video", "thumbnail"], description="default video"),
        OpenApiParameter("Range", OpenApiTypes.STR, OpenApiParameter.HEADER, description="bytes=START-END"),
    ],
    responses={
        (200, "video/mp4"): OpenApiTypes.BINARY,
        (200, "image/webp"): OpenApiTypes.BINARY,
        (206, "video/mp4"): OpenApiTypes.BINARY,
        (206, "image/webp"): OpenApiTypes.BINARY,
        302: OpenApiResponse(description="to a short-lived presigned URL (object storage)"),
        **errors(404, 416),
    },
)
list_models = extend_schema(
    operation_id="listModels",
    summary="Models and their options",
    description="Each model's sizes and clip lengths.",
    responses={200: ModelList, **errors()},
)
list_notifications = extend_schema(
    operation_id="listNotifications",
    summary="Your notification log, from a sequence number",
    description="What the websocket pushes, by `seq`: resume from the last one you have.",
    parameters=[
        OpenApiParameter("after_seq", OpenApiTypes.INT, description="the last seq you have (default 0)"),
        OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 100 (default 100)"),
    ],
    responses={200: NotificationList, **errors()},
)
get_credits = extend_schema(
    operation_id="getCredits",
    summary="Balance, today's allowance and the ledger",
    description="Credits are reserved at submission and settled once when a video ends.",
    parameters=[
        OpenApiParameter("after", OpenApiTypes.INT, description="the last id of the previous page"),
        OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 100 (default 20)"),
    ],
    responses={200: Credits, **errors()},
)


# --- webhooks ----------------------------------------------------------------------------------------------

EXAMPLE_ENDPOINT_ID = "we_6f1d2c3b4a5e6f708192a3b4"
_EP_ID = OpenApiParameter(
    "endpoint_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="a webhook endpoint's id",
    examples=[OpenApiExample("an endpoint", value=EXAMPLE_ENDPOINT_ID)],
)


class WebhookEndpoint(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(["webhook_endpoint"])
    created_at = serializers.IntegerField()
    updated_at = serializers.IntegerField(allow_null=True)
    name = serializers.CharField()
    url = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    signing_secret_hint = serializers.CharField()
    status = serializers.ChoiceField(["enabled", "disabled"], help_text="extension")
    disabled_reason = serializers.CharField(allow_null=True, help_text="extension")


class WebhookEndpointWithSecret(WebhookEndpoint):
    signing_secret = serializers.CharField(help_text="whsec_…: shown only on create and rotation")


class WebhookEndpointList(serializers.Serializer):
    object = serializers.ChoiceField(["list"])
    data = WebhookEndpoint(many=True)
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()


class WebhookEndpointDeleted(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(["webhook_endpoint.deleted"])
    deleted = serializers.BooleanField()


class WebhookTestResult(serializers.Serializer):
    object = serializers.ChoiceField(["webhook_endpoint.test"])
    webhook_endpoint_id = serializers.CharField()
    event_type = serializers.CharField()
    status_code = serializers.IntegerField(help_text="the receiver's answer; 0: none (refused, unreachable)")
    success = serializers.BooleanField()
    delivery_id = serializers.CharField(help_text="extension: the test in the endpoint's delivery log")


class WebhookEventTypeList(serializers.Serializer):
    object = serializers.ChoiceField(["list"])
    data = serializers.ListField(child=serializers.CharField())
    descriptions = serializers.DictField(child=serializers.CharField(), help_text="extension")


class WebhookAttempt(serializers.Serializer):
    number = serializers.IntegerField()
    started_at = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField()
    response_excerpt = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_null=True)


class WebhookDelivery(serializers.Serializer):
    id = serializers.CharField(help_text="the event's id: the webhook-id of every attempt")
    object = serializers.ChoiceField(["webhook_delivery"])
    event_type = serializers.CharField()
    status = serializers.ChoiceField(["pending", "delivered", "dead"])
    attempts = WebhookAttempt(many=True)
    next_attempt_at = serializers.IntegerField(allow_null=True)
    created_at = serializers.IntegerField()
    delivered_at = serializers.IntegerField(allow_null=True)


class WebhookDeliveryList(serializers.Serializer):
    object = serializers.ChoiceField(["list"])
    data = WebhookDelivery(many=True)
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()


_ENDPOINT_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "url": {"type": "string", "maxLength": 2000, "description": "http(s); private addresses are refused"},
    "event_types": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(WEBHOOK_EVENT_TYPES)}},
}
_PAGE = [
    OpenApiParameter("after", OpenApiTypes.STR, description="the last id of the previous page"),
    OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 100 (default 20)"),
]

list_endpoints = extend_schema(
    operation_id="listWebhookEndpoints",
    summary="Your webhook endpoints",
    description="Newest first, by cursor.",
    parameters=_PAGE,
    responses={200: WebhookEndpointList, **errors(404)},
)
create_endpoint = extend_schema(
    operation_id="createWebhookEndpoint",
    summary="Create a webhook endpoint",
    description="Its `signing_secret` is in this answer only (and after a rotation).",
    request={
        "application/json": {
            "type": "object",
            "properties": _ENDPOINT_FIELDS,
            "required": ["name", "url", "event_types"],
            "additionalProperties": False,
        }
    },
    responses={200: WebhookEndpointWithSecret, **errors()},
)
retrieve_endpoint = extend_schema(
    operation_id="retrieveWebhookEndpoint",
    summary="A webhook endpoint",
    description="Without its secret.",
    parameters=[_EP_ID],
    responses={200: WebhookEndpoint, **errors(404)},
)
update_endpoint = extend_schema(
    operation_id="updateWebhookEndpoint",
    summary="Change a webhook endpoint",
    description="Any of its name, URL and event types; a disabled endpoint is enabled again.",
    parameters=[_EP_ID],
    request={"application/json": {"type": "object", "properties": _ENDPOINT_FIELDS, "additionalProperties": False}},
    responses={200: WebhookEndpoint, **errors(404)},
)
delete_endpoint = extend_schema(
    operation_id="deleteWebhookEndpoint",
    summary="Delete a webhook endpoint",
    description="Its deliveries and their log go with it.",
    parameters=[_EP_ID],
    responses={200: WebhookEndpointDeleted, **errors(404)},
)
rotate_secret = extend_schema(
    operation_id="rotateWebhookSecret",
    summary="Rotate the signing secret",
    description="The old secret keeps signing (a second signature) for WEBHOOK_SECRET_GRACE_SECONDS.",
    parameters=[_EP_ID],
    request=None,
    responses={200: WebhookEndpointWithSecret, **errors(404)},
)
test_endpoint = extend_schema(
    operation_id="testWebhookEndpoint",
    summary="Send a sample event now",
    description=(
        "A delivery worker sends it; answers with the receiver's status code (0: no answer within the attempt "
        "deadline). The test is in the endpoint's delivery log. One test per user at a time (429 "
        "webhook_test_in_progress); 504 webhook_test_timeout when the answer does not come within "
        "WEBHOOK_TEST_WAIT_SECONDS."
    ),
    parameters=[_EP_ID],
    request={
        "application/json": {
            "type": "object",
            "properties": {"event_type": _ENDPOINT_FIELDS["event_types"]["items"]},
            "required": ["event_type"],
            "additionalProperties": False,
        }
    },
    responses={200: WebhookTestResult, **errors(404, 504)},
)
list_event_types = extend_schema(
    operation_id="listWebhookEventTypes",
    summary="Event types an endpoint can subscribe to",
    description="With a description of each.",
    responses={200: WebhookEventTypeList, **errors()},
)
list_deliveries = extend_schema(
    operation_id="listWebhookDeliveries",
    summary="An endpoint's deliveries and their attempts",
    description="Newest first: status, every attempt's status code, latency and response excerpt.",
    parameters=[_EP_ID, *_PAGE],
    responses={200: WebhookDeliveryList, **errors(404)},
)
replay_delivery = extend_schema(
    operation_id="replayWebhookDelivery",
    summary="Send a delivery again",
    description="The same event (same webhook-id), whatever became of it.",
    parameters=[
        _EP_ID,
        OpenApiParameter("event_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="the delivery's event id"),
    ],
    request=None,
    responses={200: WebhookDelivery, **errors(404, 409)},
)


_EMAILABLE = [
    "video.completed",
    "video.failed",
    "video.cancelled",
    "video.moderation_blocked",
    "video.held_for_review",
    "webhook_endpoint.disabled",
]


class NotificationPreferences(serializers.Serializer):
    object = serializers.ChoiceField(["notification_preferences"])
    email = serializers.DictField(child=serializers.BooleanField(), help_text="event type: emailed or not")


get_preferences = extend_schema(
    operation_id="getNotificationPreferences",
    summary="Which events you get by email",
    description="In-app notifications are always on; webhooks follow each endpoint's event types.",
    responses={200: NotificationPreferences, **errors()},
)
set_preferences = extend_schema(
    operation_id="setNotificationPreferences",
    summary="Choose which events you get by email",
    description="Only the event types given change.",
    request={
        "application/json": {
            "type": "object",
            "properties": {
                "email": {
                    "type": "object",
                    "properties": {event: {"type": "boolean"} for event in _EMAILABLE},
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        }
    },
    responses={200: NotificationPreferences, **errors()},
)

mark_read = extend_schema(
    operation_id="markNotificationsRead",
    summary="Mark notifications read",
    description="Everything up to `up_to_seq`; every open tab of the page hears of it.",
    request={
        "application/json": {
            "type": "object",
            "properties": {"up_to_seq": {"type": "integer", "minimum": 0}},
            "required": ["up_to_seq"],
            "additionalProperties": False,
        }
    },
    responses={200: ReadState, **errors()},
)
