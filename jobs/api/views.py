"""Thin DRF views for /v1: parse, call a service or selector, present."""

from __future__ import annotations

import mimetypes

from django.conf import settings
from django.utils import timezone
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from jobs import accounts, selectors, services
from jobs.api import downloads, schema
from jobs.api.errors import ApiError, not_found
from jobs.api.params import MAX_PAGE, int_param
from jobs.api.ratelimit import RateLimitedAPIView, tier_of
from jobs.api.validation import parse_create
from jobs.catalog import CATALOG
from jobs.models import Job, State
from jobs.presenters import appeal_object, credit_entry, credit_summary, video_object
from notifications import emails
from notifications.selectors import notification_dict, notifications_after, read_state
from notifications.services import notifications_mark_read
from videogen import metrics


def _get_job(request: Request, video_id: str) -> Job:
    job = selectors.video_get(user_id=request.user.pk, public_id=video_id)
    if job is None:
        raise not_found()
    return job


MAX_POLL_AFTER_MS = 10_000


def poll_headers(job: Job, estimated_start_at=None) -> dict[str, str]:
    """The openai SDK's poll helpers read this to pace their polling. A job that will not start for a while
    is asked about less often (a quarter of its wait, at most 10 s), which also spares the user's rate limit."""
    if job.is_terminal:
        return {}
    after = settings.VIDEOGEN["POLL_AFTER_MS"]
    if estimated_start_at is not None:
        wait_ms = (estimated_start_at - timezone.now()).total_seconds() * 1000
        after = int(min(MAX_POLL_AFTER_MS, max(after, wait_ms / 4)))
    return {"openai-poll-after-ms": str(after)}


REFUSAL_TYPES = {429: "rate_limit_error", 402: "insufficient_quota", 503: "server_error"}


def refused(refusal) -> ApiError:
    """Admission said no: the status, code and Retry-After it chose, in the API's envelope."""
    return ApiError(
        refusal.message,
        code=refusal.code,
        status_code=refusal.status,
        type=REFUSAL_TYPES.get(refusal.status, "invalid_request_error"),
        headers={"Retry-After": str(refusal.retry_after), "retry-after-ms": str(refusal.retry_after * 1000)},
    )


class VideosView(RateLimitedAPIView):
    submit_methods = frozenset({"POST"})  # also counts against the tier's SUBMIT_RATE_PER_MINUTE

    def finalize_response(self, request: Request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if request.method == "POST":
            # After a refused key DRF's user is None (and asking for it again would authenticate again).
            user = getattr(request, "_user", None)
            tier = tier_of(user) if user is not None and user.is_authenticated else ""
            metrics.submission(tier, response.status_code)
        return response

    @schema.create_videos
    def post(self, request: Request) -> Response:
        submit = parse_create(request.data, request.FILES)
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 255:
            raise ApiError("'Idempotency-Key' must be at most 255 characters.", param="Idempotency-Key")
        try:
            job, created = services.job_submit(
                user_id=request.user.pk,
                request=submit,
                idempotency_key=key,
                retried=is_sdk_retry(request.headers.get("x-stainless-retry-count")),
            )
        except services.IdempotencyMismatch:
            raise ApiError(
                "This Idempotency-Key was already used with a different request body.",
                param="Idempotency-Key",
                code="idempotency_key_reused",
                status_code=422,
            ) from None
        except services.Refused as exc:
            raise refused(exc.refusal) from None
        except services.IdempotentVideoDeleted:
            raise ApiError(
                "This Idempotency-Key created a video that has since been deleted; use a new key.",
                param="Idempotency-Key",
                code="idempotent_video_deleted",
                status_code=409,
            ) from None
        headers = {"Idempotent-Replayed": "true"} if not created else {}
        return Response(video_object(job), status=201 if created else 200, headers=headers | poll_headers(job))

    @schema.list_videos
    def get(self, request: Request) -> Response:
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise ApiError("'order' must be 'asc' or 'desc'.", param="order")
        limit = int_param(request, "limit", 20, low=1, high=MAX_PAGE)
        after = request.query_params.get("after") or None
        page = selectors.video_list(user_id=request.user.pk, after=after, limit=limit, order=order)
        if page is None:
            raise not_found(param="after")
        rows, has_more = page
        data = [video_object(job, *selectors.queue_estimate(job)) for job in rows]
        return Response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": has_more,
            }
        )


def is_sdk_retry(retry_count: str | bytes | None) -> bool:
    """The official SDKs retry a failed create without an Idempotency-Key, marking each retry only with
    x-stainless-retry-count (1, 2, ...): such a retry returns the video its first try made, if it made one."""
    try:
        return int(retry_count or 0) > 0
    except ValueError:
        return False


class VideoDetailView(RateLimitedAPIView):
    @schema.retrieve_video
    def get(self, request: Request, video_id: str) -> Response:
        job = _get_job(request, video_id)
        position, start = selectors.queue_estimate(job)
        return Response(video_object(job, position, start), headers=poll_headers(job, start))

    @schema.delete_video
    def delete(self, request: Request, video_id: str) -> Response:
        job = _get_job(request, video_id)
        try:
            services.job_delete(job_id=job.pk)
        except services.NotTerminal:
            raise ApiError(
                f"Video {job.public_id} is still {job.public_status}; cancel it first "
                f"(POST /v1/videos/{job.public_id}/cancel), then delete it.",
                code="video_not_finished",
                status_code=409,
            ) from None
        except Job.DoesNotExist:
            raise not_found() from None
        return Response({"id": job.public_id, "object": "video.deleted", "deleted": True})


class VideoCancelView(RateLimitedAPIView):
    @schema.cancel_video
    def post(self, request: Request, video_id: str) -> Response:
        job = _get_job(request, video_id)
        try:
            job = services.job_cancel(job_id=job.pk, actor=f"user:{request.user.pk}")
        except (services.TransitionError, services.LostJob):
            job.refresh_from_db()
            raise ApiError(
                f"Video {job.public_id} is already {job.public_status} and cannot be cancelled.",
                code="video_already_finished",
                status_code=409,
            ) from None
        return Response(video_object(job))


class VideoAppealView(RateLimitedAPIView):
    @schema.get_appeal
    def get(self, request: Request, video_id: str) -> Response:
        job = _get_job(request, video_id)
        review = job.reviews.filter(kind="appeal").select_related("job", "rerun").first()
        if review is None:
            raise ApiError(f"Video {job.public_id} has not been appealed.", code="appeal_not_found", status_code=404)
        return Response(appeal_object(review))

    @schema.appeal_video
    def post(self, request: Request, video_id: str) -> Response:
        job = _get_job(request, video_id)
        if not hasattr(request.data, "get"):
            raise ApiError("The body must be a JSON object or a form.", code="invalid_body")
        message = request.data.get("message", "")
        if not isinstance(message, str):
            raise ApiError("'message' must be a string.", param="message", code="invalid_type")
        if len(message) > 1000:
            raise ApiError("'message' is longer than 1000 characters.", param="message", code="invalid_value")
        try:
            review = services.appeal_create(job_id=job.pk, message=message)
        except services.AppealRefused as exc:
            raise ApiError(f"Video {job.public_id}: {exc}.", code="appeal_not_allowed", status_code=409) from None
        return Response(appeal_object(review), status=201)


VARIANTS = {"video": "video_key", "thumbnail": "thumbnail_key"}


class AnyAccept(BaseContentNegotiation):
    """Binary downloads are sent whatever Accept says (the SDK asks for application/binary); errors stay JSON."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class VideoContentView(RateLimitedAPIView):
    content_negotiation_class = AnyAccept

    @schema.video_content
    def get(self, request: Request, video_id: str):
        variant = request.query_params.get("variant", "video")
        if variant not in VARIANTS:
            raise ApiError("'variant' must be one of: video, thumbnail.", param="variant", code="invalid_value")
        job = _get_job(request, video_id)
        if job.state != State.SUCCEEDED:
            raise ApiError(
                f"Video {job.public_id} is {job.public_status}; content is available once it is completed.",
                code="video_not_ready",
                status_code=404,
            )
        if job.expires_at < timezone.now() or job.files_purged_at is not None:
            raise ApiError(f"Video {job.public_id} has expired.", code="video_expired", status_code=404)
        key = getattr(job, VARIANTS[variant])
        return downloads.serve(
            key,
            content_type=mimetypes.guess_type(key)[0] or "application/octet-stream",
            filename=f"{job.public_id}.{key.rsplit('.', 1)[-1]}",
            range_header=request.headers.get("Range"),
        )


class ModelsView(RateLimitedAPIView):
    @schema.list_models
    def get(self, request: Request) -> Response:
        data = [
            {
                "id": spec.name,
                "object": "model",
                "owned_by": "videogen",
                "sizes": list(spec.sizes),
                "seconds": [str(s) for s in spec.seconds],
                "default_size": spec.default_size,
                "default_seconds": str(spec.default_seconds),
            }
            for spec in CATALOG.values()
        ]
        return Response({"object": "list", "data": data})


class NotificationsView(RateLimitedAPIView):
    @schema.list_notifications
    def get(self, request: Request) -> Response:
        after_seq = int_param(request, "after_seq", 0, low=0, high=2**62)
        limit = int_param(request, "limit", 100, low=1, high=MAX_PAGE)
        rows = notifications_after(user_id=request.user.pk, after_seq=after_seq, limit=limit + 1)
        data = [notification_dict(n) for n in rows[:limit]]
        read_seq, unread = read_state(user_id=request.user.pk)
        return Response(
            {
                "object": "list",
                "data": data,
                "last_seq": data[-1]["seq"] if data else after_seq,
                "has_more": len(rows) > limit,
                "read_seq": read_seq,
                "unread_count": unread,
            }
        )


class NotificationsReadView(RateLimitedAPIView):
    """POST /v1/notifications/read {"up_to_seq": N}: the notification centre's "mark read", for every tab."""

    @schema.mark_read
    def post(self, request: Request) -> Response:
        data = request.data if hasattr(request.data, "keys") else {}
        raw = data.get("up_to_seq")
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise ApiError("'up_to_seq' must be a notification seq (an integer >= 0).", param="up_to_seq")
        notifications_mark_read(user_id=request.user.pk, up_to_seq=raw)
        read_seq, unread = read_state(user_id=request.user.pk)
        return Response({"object": "notification_read_state", "read_seq": read_seq, "unread_count": unread})


class CreditsView(RateLimitedAPIView):
    """GET /v1/credits: balance, today's allowance and usage, and the ledger (newest first, cursor `after`)."""

    @schema.get_credits
    def get(self, request: Request) -> Response:
        limit = int_param(request, "limit", 20, low=1, high=MAX_PAGE)
        after = int_param(request, "after", 0, low=0, high=2**62) or None
        account = accounts.account_for(user_id=request.user.pk)
        rows, has_more = selectors.credit_history(user_id=request.user.pk, after=after, limit=limit)
        body = credit_summary(account)
        body["data"] = [credit_entry(e) for e in rows]
        body["has_more"] = has_more
        body["last_id"] = rows[-1].pk if rows else None
        return Response(body)


class NotificationPreferencesView(RateLimitedAPIView):
    """Which events reach the user by email (in-app is always on; webhooks follow each endpoint's event_types)."""

    @schema.get_preferences
    def get(self, request: Request) -> Response:
        return Response({"object": "notification_preferences", "email": emails.preferences(request.user.pk)})

    @schema.set_preferences
    def post(self, request: Request) -> Response:
        data = request.data if hasattr(request.data, "keys") else None
        if data is None or set(data) - {"email"} or not isinstance(data.get("email", {}), dict):
            raise ApiError('The body must be {"email": {"<event type>": true | false, ...}}.', code="invalid_body")
        choices = data.get("email", {})
        for event, enabled in choices.items():
            if event not in emails.EMAILABLE:
                raise ApiError(f"Event type {event!r} cannot be emailed.", param="email", code="invalid_value")
            if not isinstance(enabled, bool):
                raise ApiError(f"'{event}' must be true or false.", param="email", code="invalid_type")
        prefs = emails.set_preferences(user_id=request.user.pk, choices=choices)
        return Response({"object": "notification_preferences", "email": prefs})
