"""Bearer API keys: DRF authentication for /v1 and an ASGI middleware for the websocket."""

from __future__ import annotations

import time

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework import authentication, exceptions

from jobs.accounts import hash_key
from jobs.models import Account, ApiKey
from jobs.prepared import Prepared

# key hash -> (monotonic expiry, user or None). Per process; bounded, and emptied whole when full.
_known: dict[str, tuple[float, object]] = {}
KNOWN_MAX = 100_000


# One compiled query (jobs.prepared): a live key's active user and their account's tier.
_key_user = Prepared(
    ApiKey,
    lambda key_hash: ApiKey.objects.filter(
        key_hash=key_hash, revoked_at__isnull=True, user__is_active=True
    ).values_list("user_id", "user__account__id", "user__account__tier")[:1],
)


def _lookup(key_hash: str):
    rows = _key_user.fetch(key_hash=key_hash)
    if not rows:
        return None
    user_id, account_id, tier = rows[0]
    # The user as the API needs it (pk, is_active, account.tier); any other field loads on first access.
    user = get_user_model().from_db("default", ["id", "is_active"], [user_id, True])
    if account_id is not None:
        user.account = Account.from_db("default", ["id", "user_id", "tier"], [account_id, user_id, tier])
    return user


def user_for_key(raw: str):
    """The active user a live key belongs to, or None.

    Answers are remembered for API_KEY_CACHE_SECONDS in each process, so a client's requests after its first
    cost no query for their key; a revoked key, a deactivated user or a changed tier is seen within that time.
    """
    key_hash = hash_key(raw)
    ttl = settings.API_KEY_CACHE_SECONDS
    now = time.monotonic()
    hit = _known.get(key_hash)
    if hit is not None and hit[0] > now:
        return hit[1]
    user = _lookup(key_hash)
    if ttl > 0:
        if len(_known) >= KNOWN_MAX:
            _known.clear()
        _known[key_hash] = (now + ttl, user)
    return user


def forget_keys() -> None:
    _known.clear()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer YOUR_KEY'.")
        user = user_for_key(raw.strip())
        if user is None:
            raise exceptions.AuthenticationFailed("Incorrect API key provided.")
        return user, None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class ApiKeyAuthMiddleware:
    """Websockets: non-browser clients authenticate with `Authorization: Bearer KEY` (browsers use the session)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization", b"").decode("latin-1")
        if raw.lower().startswith("bearer "):
            user = await database_sync_to_async(user_for_key)(raw[7:].strip())
            if user is not None:
                scope = dict(scope, user=user)
        return await self.inner(scope, receive, send)
