"""Account writes: users, tiers and API keys (used by management commands and the admin)."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from jobs.models import Account, ApiKey, Tier

KEY_PREFIX = "vg-"


def tier_limits(tier: str) -> dict[str, float]:
    """A tier's policy fields (settings.VIDEOGEN_TIERS); an unknown tier gets free's."""
    tiers = settings.VIDEOGEN_TIERS
    return tiers.get(tier) or tiers[Tier.FREE]


def hash_key(raw: str) -> str:
    # A key is 32 random bytes, so a fast hash is enough (no dictionary to guard against).
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def ensure_user(*, username: str, tier: str | None = None, password: str | None = None):
    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username)
        if password is not None:
            user.set_password(password)
            user.save(update_fields=["password"])
        elif created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        account, _ = Account.objects.get_or_create(user=user, defaults={"tier": tier or Tier.FREE})
        if tier and account.tier != tier:
            account.tier = tier
            account.save(update_fields=["tier"])
    return user, created


def issue_key(key: ApiKey) -> str:
    """Give an unsaved ApiKey a fresh secret (only its hash and prefix are kept); returns the raw key, which
    is shown once."""
    raw = generate_key()
    key.prefix, key.key_hash = raw[:10], hash_key(raw)
    return raw


def api_key_create(*, user_id: int, name: str = "") -> str:
    key = ApiKey(user_id=user_id, name=name)
    raw = issue_key(key)
    key.save()
    return raw


def account_for(*, user_id: int) -> Account:
    account, _ = Account.objects.get_or_create(user_id=user_id)
    return account
