"""The hottest routes, served on the event loop: a status read by a bearer key (`GET /v1/videos/{id}`) and a
plain submission (`POST /v1/videos`, JSON or the SDK's multipart form, no image, no Idempotency-Key).

Under Django each request pays the thread handoff of the WSGI bridge, the middleware stack and DRF's dispatch:
several times what a status read itself costs (docs/decisions/serving.md). Here the same pieces run without them: the
key from this process's memory (or its compiled lookup), the rate limiter's plan and verdict
(jobs.api.ratelimit) counted in one Redis round trip, then for a read the selector's compiled read
(jobs.selectors) and Django's ETag and 304, for a submission Django's own parsers and validation
(jobs.api.validation) and the submission's transaction (jobs.services.submission's steps, on the async pool of
videogen.aiodb), and in both the presenter, DRF's JSON renderer and the headers Django's middleware adds, read
off that middleware. So both paths answer alike (tests/integration/test_hot_routes.py and test_hot_create.py
compare them).

Anything else goes to Django untouched, a body already read included: other routes and methods, the browser's
session, a malformed Authorization header, a Host Django would refuse, plain HTTP where HTTPS is required, a
submission this path does not take whole (an invalid one among them: Django answers its 400). Only the
production profile (Postgres and Redis) serves from here.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import re
import time
import weakref
from typing import Any

import psycopg
import redis
import redis.asyncio as aredis
from django.conf import settings
from django.core.files import uploadhandler
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.http.request import split_domain_port, validate_host
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.cache import quote_etag
from django.utils.http import parse_etags, parse_header_parameters
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer

from jobs import selectors, services
from jobs.accounts import hash_key
from jobs.api import auth, ratelimit
from jobs.api.errors import ApiError, envelope, json_500, not_found, unavailable
from jobs.api.parsers import BoundedJSONParser
from jobs.api.validation import parse_create
from jobs.api.views import VideoDetailView, VideosView, is_sdk_retry, poll_headers, refused
from jobs.models import State
from jobs.presenters import video_object
from jobs.services import SubmitRequest
from videogen import aiodb, metrics
from videogen.conditional import KEPT_ON_304

log = logging.getLogger(__name__)

READ = re.compile(r"/v1/videos/(video_[0-9a-f]{24})")
CREATE = "/v1/videos"
_render = JSONRenderer().render


def _allowed(view_class) -> str:
    """DRF's Allow header for a view, as the Django path sends it (setup() adds HEAD beside GET)."""
    view = view_class()
    view.setup(HttpRequest())
    return ", ".join(view.allowed_methods)


ALLOW = _allowed(VideoDetailView)
ALLOW_CREATE = _allowed(VideosView)
# Each loop's Redis client, through the rate limiter's script (a client belongs to the loop it was made on).
_scripts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)


def enabled() -> bool:
    """Postgres and Redis (the production profile), unless WEB_HOT_ROUTES turns it off."""
    return (
        settings.WEB_HOT_ROUTES
        and connections["default"].vendor == "postgresql"
        and ratelimit.redis_location() is not None
    )


class _ProbeRequest(HttpRequest):
    def __init__(self, scheme: str) -> None:
        super().__init__()
        self._scheme = scheme

    def _get_scheme(self) -> str:
        return self._scheme


def _middleware_headers(scheme: str, middlewares: tuple) -> list[tuple[bytes, bytes]]:
    """The headers Django's middleware add to an API answer (the settings decide which), read off them."""
    response = HttpResponse()
    before = set(response.headers)
    request = _ProbeRequest(scheme)
    for middleware in middlewares:
        response = middleware(HttpResponse).process_response(request, response)  # get_response is never called
    return [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers.items()
        if name not in before
    ]


class HotRoutes:
    """ASGI: serve the hot route here, hand everything else to `fallback` (Django)."""

    def __init__(self, fallback) -> None:
        self.fallback = fallback
        self.on = enabled()
        # Security headers on every answer; X-Frame-Options too, except on a 304 (Django's conditional GET
        # builds the 304 after the clickjacking middleware has run, and the security middleware after).
        self.added = {
            (scheme, not_modified): _middleware_headers(
                scheme, (SecurityMiddleware,) if not_modified else (XFrameOptionsMiddleware, SecurityMiddleware)
            )
            for scheme in ("http", "https")
            for not_modified in (False, True)
        }

    async def __call__(self, scope, receive, send) -> None:
        if self.on and scope["type"] == "http" and not scope.get("query_string"):
            method, path = scope["method"], scope["path"]
            match = READ.fullmatch(path) if method == "GET" else None
            if match is not None or (method == "POST" and path == CREATE):
                headers = dict(scope["headers"])  # last one wins, as in Django's META
                raw = _bearer(headers)
                scheme = _scheme(scope, headers)
                if (
                    raw is not None
                    and _host_allowed(headers)
                    and (scheme == "https" or not settings.SECURE_SSL_REDIRECT)
                ):
                    if match is not None:
                        answer = await _guarded(read(raw, match.group(1), headers.get(b"if-none-match")))
                        await _send(send, answer, self.added[scheme, answer.status == 304])
                        return
                    if _plain_create(headers):
                        body = await _body(receive)
                        if body is None:
                            return  # the client went away mid-body: nobody to answer
                        submit = _parse_create(headers, body)
                        if submit is not None:
                            retried = is_sdk_retry(headers.get(b"x-stainless-retry-count"))
                            answer = await _guarded(create(raw, submit, retried))
                            await _send(send, answer, self.added[scheme, False])
                            return
                        receive = _replay(body, receive)
        await self.fallback(scope, receive, send)


async def _guarded(answering) -> Answer:
    """An unexpected error is logged and answered as Django answers one (jobs.api.errors.json_500)."""
    try:
        return await answering
    except Exception:
        log.exception("the event loop's route failed")
        return Answer(500, _SERVER_ERROR, {})


_SERVER_ERROR = json_500(None).content
# A plain submission's body is a prompt and a few fields (PROMPT_MAX_CHARS, 4 bytes a character at most); a
# larger one carries an image: Django's to read, off the event loop.
HOT_BODY_MAX = 64 * 1024


def _plain_create(headers: dict[bytes, bytes]) -> bool:
    """A create this path can take whole: no Idempotency-Key (its lookup and its race are Django's), a body
    of a known, small length as JSON or a form."""
    try:
        length = int(headers.get(b"content-length", b""))
    except ValueError:
        return False
    media = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    return (
        b"idempotency-key" not in headers
        and 0 < length <= HOT_BODY_MAX
        and media in (b"application/json", b"multipart/form-data")
    )


async def _body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    """The body once more, for Django."""
    delivered = False

    async def replay():
        nonlocal delivered
        if delivered:
            return await receive()  # http.disconnect, whenever it comes
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _parse_create(headers: dict[bytes, bytes], body: bytes) -> SubmitRequest | None:
    """The request as Django's parsers and validation read it; None for anything Django should answer itself:
    a body they refuse, an invalid request (its 400 comes with Django's rate-limit accounting), a reference
    image (stored before the job is written) or a start deadline (set on the database's clock)."""
    if b"input_reference" in body or b"start_deadline_seconds" in body or b"filename=" in body:
        return None  # plainly Django's: not parsed here first (the checks below catch an escaped name too)
    content_type = headers[b"content-type"].decode("latin-1")
    media, params = parse_header_parameters(content_type)
    try:
        if media == "application/json":
            if params.get("charset", "utf-8").lower().replace("-", "") != "utf8":
                return None
            data, files = BoundedJSONParser().parse(io.BytesIO(body), content_type, {}), {}
        else:
            meta = {"CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body))}
            handlers = [uploadhandler.load_handler(path, None) for path in settings.FILE_UPLOAD_HANDLERS]
            data, files = MultiPartParser(meta, io.BytesIO(body), handlers, settings.DEFAULT_CHARSET).parse()
        if files or not hasattr(data, "keys") or "input_reference" in data or "start_deadline_seconds" in data:
            return None
        return parse_create(data, files)
    except (ParseError, MultiPartParserError, ApiError, ValueError, UnicodeDecodeError):
        return None


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    # As jobs.api.auth.ApiKeyAuthentication reads it; anything else (none, malformed) is Django's to answer.
    value = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, raw = value.partition(" ")
    return raw.strip() if scheme.lower() == "bearer" and raw.strip() else None


def _scheme(scope, headers: dict[bytes, bytes]) -> str:
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if proxy:
        name = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode()
        forwarded = headers.get(name)
        if forwarded is not None:
            return "https" if forwarded.decode("latin-1").split(",", 1)[0].strip() == proxy[1] else "http"
    return scope.get("scheme", "http")


def _host_allowed(headers: dict[bytes, bytes]) -> bool:
    domain, _ = split_domain_port(headers.get(b"host", b"").decode("latin-1"))
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


class Answer:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status, self.body, self.headers = status, body, headers


def _error(exc: ApiError, headers: dict[str, str] | None = None) -> Answer:
    body = _render(envelope(exc.message, type=exc.type, param=exc.param, code=exc.code))
    return Answer(exc.status_code, body, {**(headers or {}), **exc.headers})


def _unauthorized() -> Answer:
    answer = _error(ApiError("Incorrect API key provided.", code="invalid_api_key", status_code=401))
    answer.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return answer


async def read(raw_key: str, public_id: str, if_none_match: bytes | None) -> Answer:
    try:
        answer = await _read(hash_key(raw_key), public_id)
    except UNAVAILABLE as exc:
        # As jobs.api.errors answers it on the Django path: nothing was written, a retry will do.
        log.warning("GET /v1/videos/%s: a store is unavailable (%s: %s)", public_id, type(exc).__name__, exc)
        answer = _error(unavailable())
    # Django's conditional GET: an ETag on every answer, 304 for a 2xx the client already has.
    etag = quote_etag(hashlib.md5(answer.body, usedforsecurity=False).hexdigest())
    if 200 <= answer.status < 300 and if_none_match is not None and _matches(etag, if_none_match):
        kept = {name: value for name, value in answer.headers.items() if name.lower().startswith(KEPT_ON_304)}
        return Answer(304, b"", {"ETag": etag, **kept})
    answer.headers["ETag"] = etag
    answer.headers["Allow"] = ALLOW
    return answer


def _matches(etag: str, if_none_match: bytes) -> bool:
    etags = parse_etags(if_none_match.decode("latin-1"))
    return "*" in etags or etag.strip("W/") in (tag.strip("W/") for tag in etags)


async def _user(key_hash: str) -> tuple[Any, float | None]:
    hit = auth.remembered(key_hash)
    if hit is not None:
        return hit
    user = auth.user_from_rows(await aiodb.fetch(auth.key_user_statement(key_hash)))
    auth.remember(key_hash, user)
    return user, None


async def _admit(key_hash: str, submit: bool) -> tuple[Any, dict[str, str]] | Answer:
    """The key's user and the rate limiter's headers, or the 401 or 429 to answer with (as DRF's
    authentication and throttle answer them)."""
    user, since = await _user(key_hash)
    if user is None:
        return _unauthorized()
    headers: dict[str, str] = {}
    if not ratelimit.bypassed():
        key = auth.KeyAuth(key_hash, since)
        plan = ratelimit.plan_count(user, key, submit, time.time())
        counted = await _count(plan) if plan is not None else None
        if counted is not None:
            counts, marker = counted
            if auth.stale(key, marker):
                auth.forget(key_hash)
                user, _ = await _user(key_hash)
                if user is None:
                    return _unauthorized()
            try:
                headers = ratelimit.judge(plan, counts, user, submit)
            except ApiError as exc:
                return _error(exc)
    return user, headers


async def _read(key_hash: str, public_id: str) -> Answer:
    admitted = await _admit(key_hash, False)
    if isinstance(admitted, Answer):
        return admitted
    user, headers = admitted
    job = await aiodb.fetch(selectors.video_get_statement(user_id=user.pk, public_id=public_id))
    if job is None:
        return _error(not_found(), headers)
    published = None
    if job.state == State.QUEUED and job.vtag is not None:
        # Read once and handed on: the per-process cache may expire between a check and a later use, and a miss
        # there would read through Django's connection on the event loop.
        published = selectors.summary_cached(job.model) or selectors.summary_remember(
            job.model, await aiodb.fetch(selectors.summary_statement(job.model))
        )
    position, start = selectors.queue_estimate(job, published)
    headers |= poll_headers(job, start)
    return Answer(200, _render(video_object(job, position, start)), headers)


async def create(raw_key: str, submit: SubmitRequest, retried: bool) -> Answer:
    try:
        answer = await _create(hash_key(raw_key), submit, retried)
    except UNAVAILABLE as exc:
        # As on the Django path: the transaction rolled back (or never began), a retry will do.
        log.warning("POST /v1/videos: a store is unavailable (%s: %s)", type(exc).__name__, exc)
        answer = _error(unavailable())
    answer.headers["Allow"] = ALLOW_CREATE
    return answer


async def _create(key_hash: str, submit: SubmitRequest, retried: bool) -> Answer:
    admitted = await _admit(key_hash, True)
    if isinstance(admitted, Answer):
        metrics.submission("", admitted.status)
        return admitted
    user, headers = admitted
    answer = await _create_admitted(user, headers, submit, retried)
    metrics.submission(ratelimit.tier_of(user), answer.status)
    return answer


async def _create_admitted(user, headers: dict[str, str], submit: SubmitRequest, retried: bool) -> Answer:
    job = services.new_job(user_id=user.pk, request=submit, idempotency_key=None)
    try:
        job, created = await aiodb.transact(
            services.submission_steps(job, user_id=user.pk, request=submit, retried=retried)
        )
    except services.Refused as exc:
        return _error(refused(exc.refusal), headers)
    if not created:
        headers["Idempotent-Replayed"] = "true"
    elif job.credits:
        metrics.CREDITS.labels("reserve").inc(job.credits)
    return Answer(201 if created else 200, _render(video_object(job)), headers | poll_headers(job))


async def _count(plan: ratelimit.Plan) -> tuple[list[int], bytes | None] | None:
    """The plan's counters in one round trip; None (and the limiter off for a moment) if Redis fails."""
    location, prefix = ratelimit.redis_location()
    loop = asyncio.get_running_loop()  # a client belongs to the loop it was made on
    script = _scripts.get(loop)
    if script is None:
        client = aredis.Redis.from_url(location, **ratelimit.REDIS_TIMEOUTS)
        script = _scripts[loop] = client.register_script(ratelimit.COUNT_SCRIPT)
    try:
        replies = await script(**ratelimit.count_call(prefix, plan.keys, plan.marker))
        return ratelimit.count_replies(replies, plan.keys, plan.marker)
    except (redis.RedisError, OSError) as exc:
        ratelimit.cache_failed("default", exc)
        return None


async def _send(send, answer: Answer, added: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"content-type", b"application/json")] if answer.status != 304 else []
    headers += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers.items()]
    headers += added
    if answer.status != 304:
        headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
