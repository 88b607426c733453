"""Every write of the job domain, split by role; each state change goes through
`transitions.transition`. Callers import this package: `from jobs import services; services.job_submit(...)`.

- transitions: the one place states change, fencing, retry/fail
- submission, admission, credits, costs: taking a job in
- stages: moderation stages; abuse: repeated blocks, flags, suspensions; actions: user and staff cancel/delete;
  retention: removing finished jobs' files
- runners: claim, heartbeat, complete, release; runner registration and drain
- dispatch, fairness, policy: who goes next, the reaper, deadlines, published queue positions
"""

from __future__ import annotations

from jobs.services.abuse import AccountActionError, account_reinstate, account_suspend, flag_resolve, record_block
from jobs.services.actions import NotTerminal, job_cancel, job_delete, job_requeue_stuck
from jobs.services.credits import InsufficientCredits
from jobs.services.dispatch import (
    DISPATCH_LOCK_KEY,
    dispatch_once,
    expire_deadlines,
    free_slots,
    live_slots,
    publish_queue_summary,
    reap_expired,
    resend_stalled_stages,
)
from jobs.services.retention import (
    RETENTION_BATCH,
    erase_expired_prompts,
    erase_prompts,
    purge_expired_files,
    purge_expired_rows,
    purge_job_files,
)
from jobs.services.retention import sweep as retention_sweep
from jobs.services.runners import (
    job_claim,
    job_complete,
    job_complete_and_claim_next,
    job_fail_attempt,
    job_heartbeat,
    job_holds_clip,
    job_release,
    runner_drain,
    runner_gone,
    runner_heartbeat,
    runner_is_draining,
    runner_withdraw,
    runners_forget_stale,
    runners_holding_jobs,
)
from jobs.services.stages import (
    STAGE_TASKS,
    AppealRefused,
    ReviewError,
    appeal_create,
    appeal_decide,
    apply_decisions,
    job_moderate_input,
    job_review_output,
    review_decide,
)
from jobs.services.submission import (
    IdempotencyMismatch,
    IdempotentVideoDeleted,
    Refused,
    SubmitRequest,
    job_submit,
    new_job,
    submission_steps,
)
from jobs.services.transitions import LostJob, TransitionError, db_now_plus, locked, transition

__all__ = [
    "DISPATCH_LOCK_KEY",
    "RETENTION_BATCH",
    "STAGE_TASKS",
    "AccountActionError",
    "AppealRefused",
    "IdempotencyMismatch",
    "IdempotentVideoDeleted",
    "InsufficientCredits",
    "LostJob",
    "NotTerminal",
    "Refused",
    "ReviewError",
    "SubmitRequest",
    "TransitionError",
    "account_reinstate",
    "account_suspend",
    "appeal_create",
    "appeal_decide",
    "apply_decisions",
    "db_now_plus",
    "dispatch_once",
    "erase_expired_prompts",
    "erase_prompts",
    "expire_deadlines",
    "flag_resolve",
    "free_slots",
    "job_cancel",
    "job_claim",
    "job_complete",
    "job_complete_and_claim_next",
    "job_delete",
    "job_fail_attempt",
    "job_heartbeat",
    "job_holds_clip",
    "job_moderate_input",
    "job_release",
    "job_requeue_stuck",
    "job_review_output",
    "job_submit",
    "live_slots",
    "locked",
    "new_job",
    "publish_queue_summary",
    "purge_expired_files",
    "purge_expired_rows",
    "purge_job_files",
    "reap_expired",
    "record_block",
    "resend_stalled_stages",
    "retention_sweep",
    "review_decide",
    "runner_drain",
    "runner_gone",
    "runner_heartbeat",
    "runner_is_draining",
    "runner_withdraw",
    "runners_forget_stale",
    "runners_holding_jobs",
    "submission_steps",
    "transition",
]
