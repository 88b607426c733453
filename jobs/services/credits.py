"""The credits ledger: reserve at admission, settle exactly once when the job ends, grant and adjust by staff.

Each user's tier gives a daily allowance that is spent first; the rest comes from their balance (grants,
adjustments). A reservation remembers how much it took from each, so a release gives back exactly that.
The database enforces one reservation and one settlement per job (CreditEntry's constraints), so a retried,
requeued, reaped or duplicated job can never be charged twice.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from jobs.models import Account, CreditEntry, Job, State
from videogen import metrics

K = CreditEntry.Kind


class InsufficientCredits(Exception):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"needs {needed} credits, {available} available")
        self.needed, self.available = needed, available


def today() -> dt.date:
    return timezone.now().date()


def roll_day(account: Account) -> None:
    """A new UTC day starts with a fresh allowance and job count (the caller saves the account)."""
    if account.usage_day != today():
        account.usage_day = today()
        account.day_jobs = 0
        account.day_allowance_used = 0


def allowance_left(account: Account, daily_allowance: int) -> int:
    used = account.day_allowance_used if account.usage_day == today() else 0
    return max(0, daily_allowance - used)


def reserve(*, account: Account, job: Job, daily_allowance: int) -> CreditEntry:
    """Hold the job's price: from today's allowance first, then the balance. The account row is locked and
    rolled to today by the caller, who saves it and the returned (unsaved) ledger row."""
    price = job.credits
    from_allowance = min(price, allowance_left(account, daily_allowance))
    from_balance = price - from_allowance
    if from_balance > max(account.credit_balance, 0):
        raise InsufficientCredits(price, from_allowance + max(account.credit_balance, 0))
    account.day_allowance_used += from_allowance
    account.credit_balance -= from_balance
    return CreditEntry(
        user_id=account.user_id,
        job_id=job.pk,
        kind=K.RESERVE,
        amount=-from_balance,
        allowance_amount=-from_allowance,
        balance_after=account.credit_balance,
        actor=f"user:{account.user_id}",
        note=f"{price} credits held for {job.public_id}",
    )


def settle(job: Job) -> None:
    """The job ended: charge its reservation on success, release it otherwise. Inside the terminal transition."""
    # A job reaches a terminal state once (the transition table); the ledger's constraint refuses a second
    # settlement should anything try.
    held = CreditEntry.objects.filter(job_id=job.pk, kind=K.RESERVE).first()
    if held is None:
        return
    account = Account.objects.select_for_update().get(user_id=job.user_id)
    if job.state == State.SUCCEEDED:
        kind, amount, allowance, note = K.CHARGE, 0, 0, f"{job.credits} credits charged for {job.public_id}"
    else:
        amount, allowance = -held.amount, -held.allowance_amount
        # Allowance only comes back on the day it was taken from: yesterday's allowance is gone anyway.
        if held.created_at.date() != today() or account.usage_day != today():
            allowance = 0
        account.credit_balance += amount
        account.day_allowance_used = max(0, account.day_allowance_used - allowance)
        account.save(update_fields=["credit_balance", "day_allowance_used"])
        kind, note = K.RELEASE, f"{job.credits} credits released: {job.public_id} {job.state}"
    CreditEntry.objects.create(
        user_id=job.user_id,
        job_id=job.pk,
        kind=kind,
        amount=amount,
        allowance_amount=allowance,
        balance_after=account.credit_balance,
        actor="system",
        note=note,
    )
    metrics.on_commit(lambda: metrics.CREDITS.labels(kind).inc(job.credits))


def grant(*, user_id: int, amount: int, actor: str, note: str = "", kind: str = K.GRANT) -> CreditEntry:
    """Support staff add (or, with a negative adjustment, remove) credits; audited with their name."""
    with transaction.atomic():
        account, _ = Account.objects.get_or_create(user_id=user_id)
        account = Account.objects.select_for_update().get(pk=account.pk)
        account.credit_balance += amount
        account.save(update_fields=["credit_balance"])
        return CreditEntry.objects.create(
            user_id=user_id,
            kind=kind,
            amount=amount,
            balance_after=account.credit_balance,
            actor=actor,
            note=note[:500],
        )
