"""Abuse: a user whose prompts the input stage blocks repeatedly is slowed down and flagged to the moderators, who
resolve flags and suspend (or reinstate) accounts.

- record_block, in the input stage's transaction when it blocks a prompt: the user's recent block times (one
  small row, moderation.RecentBlocks) and admission.count_block decide. At the threshold the account's
  moderation_cooldown_until is set (submission reads it from the account row it locks anyway: 429
  moderation_cooldown) and the user's open AbuseFlag is made, or updated if one is open.
- account_suspend / account_reinstate: the user's is_active, whose change already stops their API keys and live
  streams in every web process (jobs.api.auth's signals); recorded as an AccountAction with who and why.
- flag_resolve: the moderator's note; the cooldown ends and the count of blocks starts again.

Locks are taken in one order, the account's row first (as submission and credit settlement take it), then the
recent blocks, then the flag, so two of these never wait on each other.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from jobs.models import Account
from jobs.services import admission
from moderation.models import AbuseFlag, AccountAction, RecentBlocks

log = logging.getLogger(__name__)


class AccountActionError(Exception):
    """A moderator's action on an account or a flag that cannot be applied (its message says why)."""


def _lock_account(user_id: int) -> None:
    Account.objects.select_for_update().get_or_create(user_id=user_id)


def record_block(*, user_id: int) -> AbuseFlag | None:
    """The input stage blocked one of the user's prompts (call inside its transaction). Returns the user's open
    flag if this block reached the threshold: they are slowed down until the cooldown ends."""
    now = timezone.now()
    _lock_account(user_id)
    recent, _ = RecentBlocks.objects.select_for_update().get_or_create(user_id=user_id)
    recent.times, triggered = admission.count_block(
        recent.times,
        at=now.timestamp(),
        blocks=settings.MODERATION_ABUSE_BLOCKS,
        window=settings.MODERATION_ABUSE_WINDOW_SECONDS,
    )
    recent.save(update_fields=["times"])
    if not triggered:
        return None
    until = now + dt.timedelta(seconds=settings.MODERATION_ABUSE_COOLDOWN_SECONDS)
    # An update, not save(): no signal (a tier change's) fires, and the usage counters are not written back.
    Account.objects.filter(user_id=user_id).update(moderation_cooldown_until=until)
    flag = AbuseFlag.objects.select_for_update().filter(user_id=user_id, status=AbuseFlag.Status.OPEN).first()
    if flag is None:
        flag = AbuseFlag.objects.create(user_id=user_id, blocks=len(recent.times), last_triggered_at=now)
    else:
        flag.triggers += 1
        flag.blocks, flag.last_triggered_at = len(recent.times), now
        flag.save(update_fields=["triggers", "blocks", "last_triggered_at"])
    log.warning(
        "moderation: user %s had %d prompts blocked within %ss: submissions paused until %s (flag %s)",
        user_id,
        len(recent.times),
        settings.MODERATION_ABUSE_WINDOW_SECONDS,
        until.isoformat(),
        flag.pk,
    )
    return flag


def flag_resolve(*, flag_id: int, moderator, note: str = "") -> AbuseFlag:
    """A moderator has looked at the flag: it is closed with their note, the user's cooldown ends and their
    blocks are counted from zero again (suspending, if called for, is its own action)."""
    flag = AbuseFlag.objects.filter(pk=flag_id).first()
    if flag is None:
        raise AccountActionError("this flag does not exist")
    with transaction.atomic():
        _lock_account(flag.user_id)
        RecentBlocks.objects.filter(user_id=flag.user_id).update(times=[])
        flag = AbuseFlag.objects.select_for_update().get(pk=flag_id)
        if flag.status != AbuseFlag.Status.OPEN:
            raise AccountActionError("this flag has been resolved already")
        Account.objects.filter(user_id=flag.user_id).update(moderation_cooldown_until=None)
        flag.status, flag.resolved_by, flag.resolved_at, flag.note = (
            AbuseFlag.Status.RESOLVED,
            moderator,
            Now(),
            note[:1000],
        )
        flag.save(update_fields=["status", "resolved_by", "resolved_at", "note"])
    flag.refresh_from_db(fields=["resolved_at"])
    return flag


def _within_reach(moderator, user) -> None:
    if moderator.pk == user.pk:
        raise AccountActionError("you cannot suspend or reinstate your own account")
    if (user.is_staff or user.is_superuser) and not moderator.is_superuser:
        # A moderator must not be able to lock other staff out (or let them back in): a superuser's decision.
        raise AccountActionError("only a superuser may suspend or reinstate a staff account")


def _set_active(*, user_id: int, moderator, reason: str, active: bool, review_id=None, flag_id=None) -> AccountAction:
    reason = reason.strip()[:1000]
    if not reason:
        raise AccountActionError("give a reason: it is kept with the action")
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().filter(pk=user_id).first()
        if user is None:
            raise AccountActionError("this user no longer exists")
        _within_reach(moderator, user)
        if user.is_active == active:
            raise AccountActionError("the account is active already" if active else "the account is suspended already")
        user.is_active = active
        # update_fields names is_active: jobs.api.auth forgets the user's keys everywhere once this commits, and
        # a suspension closes their open streams.
        user.save(update_fields=["is_active"])
        if flag_id is None:
            flag_id = (
                AbuseFlag.objects.filter(user_id=user_id, status=AbuseFlag.Status.OPEN)
                .values_list("pk", flat=True)
                .first()
            )
        action = AccountAction.objects.create(
            user_id=user_id,
            kind=AccountAction.Kind.REINSTATE if active else AccountAction.Kind.SUSPEND,
            moderator=moderator,
            reason=reason,
            flag_id=flag_id,
            review_id=review_id,
        )
    log.warning("moderation: %s %s user %s: %s", moderator.get_username(), action.kind, user_id, reason)
    return action


def account_suspend(*, user_id: int, moderator, reason: str, review_id=None, flag_id=None) -> AccountAction:
    """Suspend the user's account (is_active=False): their API keys and live streams stop at once, they cannot
    sign in; what they had submitted already is kept. Recorded with the moderator and the reason."""
    return _set_active(
        user_id=user_id, moderator=moderator, reason=reason, active=False, review_id=review_id, flag_id=flag_id
    )


def account_reinstate(*, user_id: int, moderator, reason: str, review_id=None, flag_id=None) -> AccountAction:
    """Lift a suspension: the account is active again (its keys work again unless revoked)."""
    return _set_active(
        user_id=user_id, moderator=moderator, reason=reason, active=True, review_id=review_id, flag_id=flag_id
    )
