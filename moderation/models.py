"""Decision records and the human review queue.

Every moderation stage leaves a ModerationDecision, whatever its action: the stage, the per-category scores, the
policy version, the action and the category that decided. A held job or an appeal opens a Review, the
moderators' queue in the admin; a moderator's verdict closes it and is itself recorded as a decision of the
`moderator` stage, with the moderator's name. A user whose prompts are blocked repeatedly is slowed down and
flagged (AbuseFlag, beside the queue); a moderator may suspend the account (AccountAction keeps who and why).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Stage(models.TextChoices):
    INPUT_TEXT = "input_text"  # the prompt
    INPUT_IMAGE = "input_image"  # the reference image
    OUTPUT_FRAMES = "output_frames"  # frames sampled from the generated video
    MODERATOR = "moderator"  # a person's verdict on a held job or an appeal


class Action(models.TextChoices):
    ALLOW = "allow"
    HOLD = "hold"
    BLOCK = "block"


class ModerationDecision(models.Model):
    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="moderation_decisions")
    stage = models.CharField(max_length=16, choices=Stage.choices)
    action = models.CharField(max_length=8, choices=Action.choices)
    category = models.CharField(max_length=64, blank=True)  # the category that decided; empty when allowed
    scores = models.JSONField(default=dict)  # category -> score in [0, 1]
    policy = models.CharField(max_length=64)
    reasons = models.JSONField(default=list)
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.stage}: {self.action} ({self.policy})"


class Review(models.Model):
    """An item of the moderators' queue: a job the policy held, or a rejection its owner appealed."""

    class Kind(models.TextChoices):
        HOLD = "hold"
        APPEAL = "appeal"

    class Status(models.TextChoices):
        OPEN = "open"
        APPROVED = "approved"
        REJECTED = "rejected"
        # The held job ended or moved on without a verdict (cancelled, expired): nothing is left to decide.
        WITHDRAWN = "withdrawn"

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="reviews")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # The decision that held the job, or the rejection appealed: shown beside the item.
    decision = models.ForeignKey(ModerationDecision, null=True, on_delete=models.SET_NULL, related_name="+")
    stage = models.CharField(max_length=16, choices=Stage.choices)  # where the held job waits
    message = models.CharField(max_length=1000, blank=True)  # the user's words, for an appeal
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=1000, blank=True)
    # An approved appeal runs the request again as a new video, approved in advance at the appealed stage.
    rerun = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # A job is appealed at most once, and waits in the queue at most once at a time.
            models.UniqueConstraint(fields=["job"], condition=Q(kind="appeal"), name="review_one_appeal_per_job"),
            models.UniqueConstraint(fields=["job"], condition=Q(status="open"), name="review_one_open_per_job"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="review_queue_idx")]

    def __str__(self) -> str:
        return f"{self.kind} of {self.job_id} ({self.status})"


# --- abuse: repeated blocks, flags, suspensions (jobs.services.abuse) -------------------------------------------


class RecentBlocks(models.Model):
    """The times (epoch seconds) of a user's latest input-stage blocks within the abuse window, at most
    MODERATION_ABUSE_BLOCKS of them: counting them is one small row, never a count over the user's jobs."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="recent_blocks"
    )
    times = models.JSONField(default=list)

    class Meta:
        verbose_name = "recent blocks"
        verbose_name_plural = "recent blocks"

    def __str__(self) -> str:
        return f"{len(self.times)} recent blocks of {self.user_id}"


class AbuseFlag(models.Model):
    """A user whose prompts were blocked MODERATION_ABUSE_BLOCKS times within the window, shown to moderators with
    their history. One open flag per user: a later trigger updates it; a moderator resolves it."""

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="abuse_flags")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    triggers = models.PositiveIntegerField(default=1)  # times the threshold was reached while this flag was open
    blocks = models.PositiveIntegerField(default=0)  # blocks within the window at the latest trigger
    created_at = models.DateTimeField(auto_now_add=True)
    last_triggered_at = models.DateTimeField()
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=1000, blank=True)  # the moderator's, on resolving

    class Meta:
        ordering = ["-last_triggered_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user"], condition=Q(status="open"), name="abuseflag_one_open_per_user")
        ]
        indexes = [models.Index(fields=["status", "last_triggered_at"], name="abuseflag_queue_idx")]
        # Suspending an account (is_active=False: its keys and streams stop) is a moderator's right, not staff's.
        permissions = [("suspend_account", "Can suspend and reinstate a user's account")]

    def __str__(self) -> str:
        return f"flag of {self.user_id} ({self.status})"


class AccountAction(models.Model):
    """The audit trail of suspensions: who suspended or reinstated which account, why, and from where."""

    class Kind(models.TextChoices):
        SUSPEND = "suspend"
        REINSTATE = "reinstate"

    # (user, -id) below serves the user FK too.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_actions", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    moderator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=1000)
    flag = models.ForeignKey(AbuseFlag, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions")
    review = models.ForeignKey(Review, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["user", "-id"], name="accountaction_user_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.user_id}"
