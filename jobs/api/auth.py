"""Bearer API keys: DRF authentication for /v1 and an ASGI middleware for the websocket."""

from __future__ import annotations

import logging
import math
import time

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_delete
from rest_framework import authentication, exceptions

from jobs.accounts import hash_key
from jobs.models import Account, ApiKey
from jobs.prepared import Prepared

# key hash -> (monotonic expiry, wall-clock time of the lookup, user or None). Per process; bounded, and
# emptied whole when full.
_known: dict[str, tuple[float, float, object]] = {}
KNOWN_MAX = 100_000
# When a key's answer changes (revoked, deleted, its user deactivated, its tier changed) a marker with the time
# of the change is left in Redis for longer than any process remembers the key. The rate limiter reads the
# request's marker in its round trip, so a remembered answer older than its marker is looked up again at once.
CHANGED_KEY = "credentials:changed:{}"
# Lookups this close after a change are looked up again too: clocks of different hosts differ a little.
CLOCK_SKEW_SECONDS = 5.0

log = logging.getLogger(__name__)


# One compiled query (jobs.prepared): a live key's active user and their account's tier.
_key_user = Prepared(
    ApiKey,
    lambda key_hash: ApiKey.objects.filter(
        key_hash=key_hash, revoked_at__isnull=True, user__is_active=True
    ).values_list("user_id", "user__account__id", "user__account__tier")[:1],
)


def _lookup(key_hash: str):
    return user_from_rows(_key_user.fetch(key_hash=key_hash))


def key_user_statement(key_hash: str):
    """The key's lookup as a statement and what turns its rows into the user (for the event loop's driver)."""
    return _key_user.statement(key_hash=key_hash)


def user_from_rows(rows: list[tuple]):
    if not rows:
        return None
    user_id, account_id, tier = rows[0]
    # The user as the API needs it (pk, is_active, account.tier); any other field loads on first access.
    user = get_user_model().from_db("default", ["id", "is_active"], [user_id, True])
    account = None
    if account_id is not None:
        account = Account.from_db("default", ["id", "user_id", "tier"], [account_id, user_id, tier])
    # Known absent too (a user made outside ensure_user): user.account raises at once rather than query.
    user._meta.get_field("account").set_cached_value(user, account)
    return user


class KeyAuth:
    """request.auth for a bearer key: its hash, and when this process looked it up if it was remembered."""

    def __init__(self, key_hash: str, remembered_since: float | None) -> None:
        self.key_hash = key_hash
        self.remembered_since = remembered_since


def _fresh_lookup(key_hash: str):
    user = _lookup(key_hash)
    remember(key_hash, user)
    return user


def _user_for_hash(key_hash: str) -> tuple[object, float | None]:
    """(user or None, when the remembered answer was looked up, or None if it was looked up now).

    Answers are remembered for API_KEY_CACHE_SECONDS in each process, so a client's requests after its first
    cost no query for their key. A change is seen at the next request where the rate limiter runs (see
    changed_since), and within API_KEY_CACHE_SECONDS everywhere else (the websocket, unlimited tiers, no Redis).
    """
    hit = remembered(key_hash)
    if hit is not None:
        return hit
    user = _lookup(key_hash)
    remember(key_hash, user)
    return user, None


def remembered(key_hash: str) -> tuple[object, float] | None:
    """(user or None, when it was looked up) if this process remembers the key's answer."""
    hit = _known.get(key_hash)
    if hit is not None and hit[0] > time.monotonic():
        return hit[2], hit[1]
    return None


def remember(key_hash: str, user) -> None:
    ttl = settings.API_KEY_CACHE_SECONDS
    if ttl > 0:
        if len(_known) >= KNOWN_MAX:
            _known.clear()
        _known[key_hash] = (time.monotonic() + ttl, time.time(), user)


def forget_keys() -> None:
    _known.clear()


def changed_since(request, marker: bytes | None) -> None:
    """The request's key marker as Redis answered it: if the key changed after this process looked it up, the
    key is looked up again now (401 if it no longer works; its user, with their current tier, otherwise)."""
    auth = request.auth
    if not isinstance(auth, KeyAuth) or not stale(auth, marker):
        return
    _known.pop(auth.key_hash, None)
    user, _ = _user_for_hash(auth.key_hash)
    if user is None:
        raise exceptions.AuthenticationFailed("Incorrect API key provided.")
    request.user = user
    request.auth = KeyAuth(auth.key_hash, None)


def stale(key: KeyAuth, marker: bytes | None) -> bool:
    """The key's answer was remembered from before its latest change (its marker): look it up again."""
    if key.remembered_since is None or marker is None:
        return False
    return float(marker) + CLOCK_SKEW_SECONDS >= key.remembered_since


def forget(key_hash: str) -> None:
    _known.pop(key_hash, None)


def credential_live(*, user_id: int, key_hash: str | None) -> bool:
    """Whether a live stream's credential still works, read now (never remembered): its key is live and its
    user active, or for a browser's session, its user is still active."""
    if key_hash is not None:
        rows = _key_user.fetch(key_hash=key_hash)
        return bool(rows) and rows[0][0] == user_id
    return get_user_model().objects.filter(pk=user_id, is_active=True).exists()


def credentials_changed(key_hashes: list[str], *, user_ids: tuple[int, ...] = ()) -> None:
    """These keys' answers changed: once the transaction commits, this process forgets them and their markers
    are left in Redis for every other web process. Without Redis (the embedded profile runs one process)
    forgetting here is all there is. The open event streams of `user_ids` (a key revoked or deleted, a user
    deactivated) are told too, in every web process, and close if their credential no longer works."""

    def tell_streams() -> None:
        from notifications.services import push_credentials_changed

        for user_id in user_ids:
            push_credentials_changed(user_id=user_id)

    if user_ids:
        transaction.on_commit(tell_streams)
    if not key_hashes:
        return

    def mark() -> None:
        for key_hash in key_hashes:
            _known.pop(key_hash, None)
        from jobs.api.ratelimit import redis_client  # the limiter owns the per-process client

        found = redis_client()
        if found is None:
            return
        client, prefix = found
        ttl = math.ceil(settings.API_KEY_CACHE_SECONDS + 2 * CLOCK_SKEW_SECONDS)
        try:
            pipe = client.pipeline(transaction=False)
            for key_hash in key_hashes:
                pipe.set(f"{prefix}:{CHANGED_KEY.format(key_hash)}", repr(time.time()), ex=ttl)
            pipe.execute()
        except Exception as exc:  # other processes then see it within API_KEY_CACHE_SECONDS
            log.warning("key changes not published (%s: %s)", type(exc).__name__, exc)

    transaction.on_commit(mark)


def _user_keys(user_id: int) -> list[str]:
    return list(ApiKey.objects.filter(user_id=user_id).values_list("key_hash", flat=True))


def _on_key_changed(sender, instance: ApiKey, created: bool = False, **kwargs) -> None:
    if not created:  # a new key was never looked up
        credentials_changed([instance.key_hash], user_ids=(instance.user_id,))


def _on_user_changed(sender, instance, created: bool = False, update_fields=None, **kwargs) -> None:
    if not created and (update_fields is None or "is_active" in update_fields):  # not a login's last_login
        credentials_changed(_user_keys(instance.pk), user_ids=() if instance.is_active else (instance.pk,))


def _on_user_deleted(sender, instance, **kwargs) -> None:
    # pre_delete: the keys are still there to be named
    credentials_changed(_user_keys(instance.pk), user_ids=(instance.pk,))


def _on_account_changed(sender, instance: Account, created: bool = False, update_fields=None, **kwargs) -> None:
    if not created and (update_fields is None or "tier" in update_fields):  # not the credit counters
        credentials_changed(_user_keys(instance.user_id))


def connect_signals() -> None:
    """What changes a key's answer (called from jobs.apps.ready)."""
    user_model = get_user_model()
    post_save.connect(_on_key_changed, sender=ApiKey, dispatch_uid="keycache-key-saved")
    post_delete.connect(_on_key_changed, sender=ApiKey, dispatch_uid="keycache-key-deleted")
    post_save.connect(_on_user_changed, sender=user_model, dispatch_uid="keycache-user-saved")
    pre_delete.connect(_on_user_deleted, sender=user_model, dispatch_uid="keycache-user-deleted")
    post_save.connect(_on_account_changed, sender=Account, dispatch_uid="keycache-account-saved")


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer YOUR_KEY'.")
        key_hash = hash_key(raw.strip())
        user, remembered_since = _user_for_hash(key_hash)
        if user is None:
            raise exceptions.AuthenticationFailed("Incorrect API key provided.")
        return user, KeyAuth(key_hash, remembered_since)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class ApiKeyAuthMiddleware:
    """Live streams: non-browser clients authenticate with `Authorization: Bearer KEY` (browsers use the session).

    The key is looked up now, not remembered (a stream opens rarely, and a key revoked a moment ago in another
    process must not open one), and its hash stays in the scope: the stream checks it again on each resync."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization", b"").decode("latin-1")
        if raw.lower().startswith("bearer "):
            key_hash = hash_key(raw[7:].strip())
            user = await database_sync_to_async(_fresh_lookup)(key_hash)
            if user is not None:
                scope = dict(scope, user=user, api_key_hash=key_hash)
        return await self.inner(scope, receive, send)
