"""The job domain: the state machine (one transition table), jobs, their audit events, API keys, runners."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models


class State(models.TextChoices):
    PENDING = "pending"
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    REVIEWING = "reviewing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


S = State
TERMINAL: frozenset[str] = frozenset({S.SUCCEEDED, S.FAILED, S.REJECTED, S.CANCELLED})

# The one transition table. Nothing assigns Job.state except jobs.services.transitions.transition.
TRANSITIONS: dict[str, frozenset[str]] = {
    # -> failed: the stage itself could not run (moderation unavailable), which is not a block.
    S.PENDING: frozenset({S.QUEUED, S.REJECTED, S.FAILED, S.CANCELLED}),
    S.QUEUED: frozenset({S.DISPATCHED, S.CANCELLED}),
    # dispatched -> queued: the dispatch expired unclaimed (the reaper re-queues it).
    S.DISPATCHED: frozenset({S.RUNNING, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.REVIEWING, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.REVIEWING: frozenset({S.SUCCEEDED, S.REJECTED, S.FAILED, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}

# Internal state -> public OpenAI-compatible status.
PUBLIC_STATUS: dict[str, str] = {
    S.PENDING: "queued",
    S.QUEUED: "queued",
    S.DISPATCHED: "queued",
    S.RUNNING: "in_progress",
    S.REVIEWING: "in_progress",
    S.SUCCEEDED: "completed",
    S.FAILED: "failed",
    S.REJECTED: "failed",
    S.CANCELLED: "cancelled",
}


def is_terminal(state: str) -> bool:
    return state in TERMINAL


def can_transition(from_state: str, to_state: str) -> bool:
    return to_state in TRANSITIONS.get(from_state, frozenset())


class Tier(models.TextChoices):
    FREE = "free"
    PAID = "paid"
    INTERNAL = "internal"


class Account(models.Model):
    """Per-user platform settings (tier) and usage counters. Submission locks this row, so a user's concurrent
    submissions are checked against their caps and credits one at a time."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account")
    tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.FREE)
    # Credits granted or bought (the ledger's running balance); the tier's daily allowance is spent first.
    credit_balance = models.BigIntegerField(default=0)
    # Today's usage (UTC day): jobs submitted and allowance credits reserved.
    usage_day = models.DateField(null=True, blank=True)
    day_jobs = models.PositiveIntegerField(default=0)
    day_allowance_used = models.BigIntegerField(default=0)
    # New submissions are refused until then (429 moderation_cooldown): the input stage blocked too many of the
    # user's prompts lately (jobs.services.abuse). Here because submission reads this row anyway.
    moderation_cooldown_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.tier})"


class ApiKey(models.Model):
    """A bearer key; only its SHA-256 is stored, the prefix helps people tell keys apart."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


def new_public_id() -> str:
    return "video_" + secrets.token_hex(12)


class Job(models.Model):
    # No field-level indexes here: each would duplicate one in Meta (and a unique or indexed CharField also gets
    # a LIKE index on Postgres). Unique public ids are a constraint below; (user, id) serves the user FK.
    public_id = models.CharField(max_length=40, default=new_public_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs", db_index=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)

    # What was asked for.
    model = models.CharField(max_length=64)
    prompt = models.TextField()
    seconds = models.PositiveSmallIntegerField()
    width = models.PositiveSmallIntegerField()
    height = models.PositiveSmallIntegerField()
    seed = models.BigIntegerField()
    reference_key = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    # The X-Request-ID of the submission: its tasks, runners and transitions log it (videogen.logcontext). A
    # database default too, so bulk loads that name their columns (benchmarks, backfills) need not know it.
    request_id = models.CharField(max_length=128, blank=True, default="", db_default="")

    # Execution: attempt is the fencing token, incremented by every claim.
    attempt = models.PositiveIntegerField(default=0)
    runner_id = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    # Outcome.
    video_key = models.CharField(max_length=255, blank=True)
    thumbnail_key = models.CharField(max_length=255, blank=True)
    # The stored clip carries our signed content credentials (C2PA: AI-generated, model, platform, time).
    video_signed = models.BooleanField(default=False, db_default=False)  # bulk loads name their columns
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    # Scheduling: the tier the job was admitted under, its estimated GPU-seconds and price, its
    # virtual start tag inside the tier (fair queuing by service received), when it first waited for a GPU,
    # the runner queue it was handed to, and an optional time-to-start deadline.
    tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.FREE)
    cost = models.FloatField(default=0.0)
    credits = models.PositiveIntegerField(default=0)
    vtag = models.FloatField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    queue = models.CharField(max_length=200, blank=True)
    start_deadline_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    # When a cpu stage (moderation) was last asked to handle this job: lost messages are re-sent after a while.
    stage_enqueued_at = models.DateTimeField(null=True, blank=True)
    stage_sends = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # When the job's stored files were removed (jobs.services.retention); its keys are blank from then on.
    files_purged_at = models.DateTimeField(null=True, blank=True)
    # When its prompt and every copy of it were erased (its owner's DELETE, or PROMPT_RETENTION_SECONDS).
    prompt_erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # A user's own list in either order, cursor = pk (jobs.selectors pages on (user, id) row values).
            models.Index(fields=["user", "id"], name="job_user_id_idx"),
            # The dispatcher's scan of runnable work, and the reaper's of leases: dispatched and running jobs
            # are as many as the GPU slots, so it filters their leases in the rows. No index holds
            # lease_expires_at or progress, so a heartbeat is a HOT update (no index writes; fillfactor 80).
            models.Index(fields=["state", "not_before", "id"], name="job_state_nb_idx"),
            models.Index(fields=["state", "stage_enqueued_at"], name="job_state_stage_idx"),
            # The scheduler's snapshot: the lowest virtual tags and the oldest waits per (tier, model), read
            # by index whatever the length of the queue.
            models.Index(
                fields=["tier", "model", "vtag", "id"], name="job_queued_vtag_idx", condition=models.Q(state="queued")
            ),
            models.Index(
                fields=["tier", "model", "queued_at", "id"],
                name="job_queued_age_idx",
                condition=models.Q(state="queued"),
            ),
            # Caps: a user's unfinished jobs, counted without reading their history.
            models.Index(
                fields=["user", "state"],
                name="job_user_unfinished_idx",
                condition=models.Q(state__in=["pending", "queued", "dispatched", "running", "reviewing"]),
            ),
            models.Index(
                fields=["start_deadline_at"],
                name="job_waiting_deadline_idx",
                condition=models.Q(state__in=["pending", "queued"], start_deadline_at__isnull=False),
            ),
            # Retention: finished jobs whose prompt is still kept, oldest end first.
            models.Index(
                fields=["completed_at"],
                name="job_prompt_due_idx",
                condition=models.Q(
                    state__in=["succeeded", "failed", "rejected", "cancelled"], prompt_erased_at__isnull=True
                ),
            ),
            # Retention: finished jobs whose files are still stored, oldest end first per state.
            models.Index(
                fields=["state", "completed_at"],
                name="job_files_due_idx",
                condition=models.Q(
                    state__in=["succeeded", "failed", "rejected", "cancelled"], files_purged_at__isnull=True
                ),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="job_public_id_uniq"),
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="job_user_idempotency_key_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} [{self.state}]"

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def expires_at(self):
        """When a finished clip's files stop being served (None until it succeeded)."""
        if self.state != State.SUCCEEDED or self.completed_at is None:
            return None
        return self.completed_at + timedelta(seconds=settings.VIDEOGEN["VIDEO_RETENTION_SECONDS"])

    @property
    def public_status(self) -> str:
        return PUBLIC_STATUS[self.state]

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.state)


class JobEvent(models.Model):
    """Append-only audit row written by every transition, in the transition's transaction."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    reason = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=200)
    attempt = models.PositiveIntegerField()
    # The request that caused it: the job's submission, or a later one (a cancel, a moderator's verdict).
    request_id = models.CharField(max_length=128, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        # The operations sampler counts the last minute's completions, failures and claims (jobs.ops).
        indexes = [models.Index(fields=["to_state", "created_at"], name="jobevent_to_created_idx")]

    def __str__(self) -> str:
        return f"{self.from_state or '∅'} → {self.to_state} ({self.reason})"


class Runner(models.Model):
    """A GPU slot provider (one django-q2 gpu worker). Capacity counts only runners seen within the TTL.

    Work is addressed to the runner's own broker queue (its gpu cluster), so a busy runner never holds a job
    meant for an idle one. A draining runner finishes what it has and is handed nothing new.
    """

    name = models.CharField(max_length=200, unique=True)
    queue = models.CharField(max_length=200, default="gpu")
    host = models.CharField(max_length=200, blank=True)
    pool = models.CharField(max_length=100, default="default")
    version = models.CharField(max_length=100, blank=True)
    slots = models.PositiveSmallIntegerField(default=1)
    model_names = models.JSONField(default=list)
    draining = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    # Not indexed: a fleet is at most thousands of rows, and the heartbeat that sets it stays a HOT update.
    last_seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name


class CreditEntry(models.Model):
    """The credits ledger: append-only. Reserve at admission, then exactly one settlement per job (charge on
    success, release otherwise), enforced by the database; grants and adjustments name the staff member."""

    class Kind(models.TextChoices):
        GRANT = "grant"
        ADJUST = "adjust"
        RESERVE = "reserve"
        CHARGE = "charge"
        RELEASE = "release"

    # No index of its own: credit_user_id_idx (user, -id) starts with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_entries", db_index=False
    )
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="credit_entries")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # Signed change of the user's balance (grants, adjustments, and the balance part of a reserve/release).
    amount = models.BigIntegerField()
    # The part of a reserve/release that came out of (or went back to) the daily allowance.
    allowance_amount = models.BigIntegerField(default=0)
    balance_after = models.BigIntegerField()
    actor = models.CharField(max_length=200)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "credit entry"
        verbose_name_plural = "credit entries"
        indexes = [models.Index(fields=["user", "-id"], name="credit_user_id_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["job"], condition=models.Q(kind="reserve"), name="credit_one_reserve_per_job"
            ),
            models.UniqueConstraint(
                fields=["job"],
                condition=models.Q(kind__in=["charge", "release"]),
                name="credit_one_settlement_per_job",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+} ({self.user})"


class SchedFlow(models.Model):
    """A user's fair-queuing counter: the virtual finish tag of their last queued job (GPU-seconds)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE)
    finish = models.FloatField(default=0.0)

    class Meta:
        verbose_name = "scheduling flow"
        verbose_name_plural = "scheduling flows"

    def __str__(self) -> str:
        return f"{self.user_id}: {self.finish:.1f}"


class SchedTier(models.Model):
    """Per tier: weighted service received (GPU-seconds / weight) and the tier's virtual clock (the highest
    start tag dispatched), both advanced by the dispatcher."""

    tier = models.CharField(max_length=8, primary_key=True, choices=Tier.choices)
    vtime = models.FloatField(default=0.0)
    vclock = models.FloatField(default=0.0)

    class Meta:
        verbose_name = "scheduling tier"
        verbose_name_plural = "scheduling tiers"

    def __str__(self) -> str:
        return f"{self.tier}: served {self.vtime:.1f}, clock {self.vclock:.1f}"


class ShapeCost(models.Model):
    """Observed GPU-seconds per (model, size, seconds): the cost model learns from every finished run."""

    model = models.CharField(max_length=64)
    width = models.PositiveSmallIntegerField()
    height = models.PositiveSmallIntegerField()
    seconds = models.PositiveSmallIntegerField()
    mean_seconds = models.FloatField()
    # Exponentially weighted variance around the mean (same rate): with the mean, the p99 estimate behind the
    # stuck-job view (jobs.selectors.stuck_jobs).
    var_seconds2 = models.FloatField(default=0.0)
    samples = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "width", "height", "seconds"], name="shape_cost_uniq")]

    def __str__(self) -> str:
        return f"{self.model} {self.width}x{self.height} {self.seconds}s: {self.mean_seconds:.2f}s"


class QueueSummary(models.Model):
    """What the dispatcher publishes for one model each pass: capacity, per-tier backlog and checkpoints of
    the queue in tag order. Status reads and admission compute positions and ETAs from it, never the queue."""

    model = models.CharField(max_length=64, primary_key=True)
    data = models.JSONField(default=dict)
    published_at = models.DateTimeField()

    class Meta:
        verbose_name = "queue summary"
        verbose_name_plural = "queue summaries"

    def __str__(self) -> str:
        return f"{self.model} @ {self.published_at}"


class RemoteJob(models.Model):
    """A job on a remote generation server (jobs.backends), held like a runner's claim.

    Written before the remote create (an intent with our Idempotency-Key), completed with the server's id once it
    answers, both fenced on the job's (id, attempt, state). The remote id is a lease: the attempt holding it is
    the only one that may complete the job from it. A crash between the create and the record leaves the intent
    `creating`; `manage.py remote_worker` reconciles it on start (see gpu_runner.remote).
    """

    class Phase(models.TextChoices):
        CREATING = "creating"  # intent written; the create may or may not have reached the server
        ACTIVE = "active"  # the server's id recorded: polled until it ends
        DONE = "done"  # its result taken, or its failure recorded
        LOST = "lost"  # the server forgot it (404), or it was stuck past its bound: our job was retried
        ABANDONED = "abandoned"  # our job moved on (cancelled, retried elsewhere): cancelled there if it can be
        UNKNOWN = "unknown"  # created or not, nobody can tell (a crash mid-create on a server without idempotency)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="remote_jobs")
    attempt = models.PositiveIntegerField()  # the attempt holding it (moves when a later attempt adopts it)
    pool = models.CharField(max_length=100)
    idempotency_key = models.CharField(max_length=100, unique=True)
    remote_id = models.CharField(max_length=200, blank=True)
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.CREATING)
    remote_status = models.CharField(max_length=64, blank=True)
    remote_progress = models.PositiveSmallIntegerField(null=True, blank=True)
    detail = models.TextField(blank=True)  # the server's error and our reasons, for staff
    created_at = models.DateTimeField(auto_now_add=True)
    recorded_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)  # a webhook sets it to now (a hint)
    polled_at = models.DateTimeField(null=True, blank=True)
    polls = models.PositiveIntegerField(default=0)
    hints = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["pool", "next_poll_at"],
                name="remotejob_live_idx",
                condition=models.Q(phase__in=["creating", "active"]),
            ),
            models.Index(fields=["pool", "remote_id"], name="remotejob_remote_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.pool}:{self.remote_id or self.idempotency_key} ({self.phase})"


class RemoteWebhookEvent(models.Model):
    """A webhook already taken from a pool: a duplicate delivery (same event id) changes nothing."""

    pool = models.CharField(max_length=100)
    event_id = models.CharField(max_length=200)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "event_id"], name="remote_webhook_event_uniq")]
        indexes = [models.Index(fields=["received_at"], name="remote_webhook_received_idx")]

    def __str__(self) -> str:
        return f"{self.pool}:{self.event_id}"


class RoleHeartbeat(models.Model):
    """A dispatcher or cpu-worker process saying it is alive (runners heartbeat through Runner). Read by
    `manage.py check_liveness ROLE`, a supervisor's or orchestrator's liveness probe."""

    role = models.CharField(max_length=20)
    name = models.CharField(max_length=200, unique=True)  # host:pid
    host = models.CharField(max_length=200)
    last_seen_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["role", "host"], name="roleheartbeat_role_host_idx")]

    def __str__(self) -> str:
        return f"{self.role} {self.name}"


class StuckJob(Job):
    """The admin's view of running jobs far past their shape's p99 (jobs.stuck), with a fenced requeue."""

    class Meta:
        proxy = True
        verbose_name = "stuck job"


class OpsSample(models.Model):
    """What the system looked like at one moment, for the admin's operations page (jobs.ops): written by the
    dispatcher every OPS_SAMPLE_SECONDS, kept OPS_SAMPLE_KEEP_HOURS."""

    at = models.DateTimeField(unique=True)
    data = models.JSONField(default=dict)

    class Meta:
        verbose_name = "operations dashboard"
        verbose_name_plural = "operations dashboard"

    def __str__(self) -> str:
        return f"sample at {self.at}"
