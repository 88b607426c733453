"""The cpu stages around generation, and the moderators' verdicts on what they hold.

- input (pending): the prompt's text and the reference image -> queued | rejected | held (a block counts towards
  the user's moderation cooldown and flag: jobs.services.abuse);
- output (reviewing): frames sampled from the stored clip -> succeeded | rejected | held.

The classifiers run before the transition's transaction opens (they take tens of milliseconds, a model's first
load seconds). A held job stays in its stage's state with no stage message outstanding (so it is never re-sent
nor failed for want of a worker) and an open Review in the moderators' queue; a moderator's verdict moves it on
through the same transitions, recorded as a decision of the `moderator` stage under their name.
"""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.functions import Now

from jobs.models import Job, State
from jobs.presenters import appeal_object, video_object
from jobs.services import abuse
from jobs.services.transitions import locked, transition
from moderation import policy, screening
from moderation.models import ModerationDecision, Review, Stage
from notifications.services import notification_create
from videogen import metrics

S = State

# The cpu task that moves a job out of each waiting state.
STAGE_TASKS = {S.PENDING: "jobs.tasks.moderate_input", S.REVIEWING: "jobs.tasks.review_output"}
# What a verdict moves a job to, from each stage's state, and what the user is told was looked at.
PASSED = {S.PENDING: S.QUEUED, S.REVIEWING: S.SUCCEEDED}
WHAT = {S.PENDING: "prompt", S.REVIEWING: "generated video"}


class ReviewError(Exception):
    """A moderator's verdict that cannot be applied (the item is closed, the job has moved on)."""


def _record(job: Job, decision: policy.Decision, moderator=None) -> ModerationDecision:
    metrics.on_commit(metrics.MODERATION.labels(decision.stage, decision.action).inc)
    return ModerationDecision.objects.create(
        job_id=job.pk,
        stage=decision.stage,
        action=decision.action,
        category=decision.category,
        scores=decision.scores,
        policy=decision.policy,
        reasons=decision.reasons,
        moderator=moderator,
    )


def _passed_fields(state: str) -> dict[str, object]:
    return {"completed_at": Now(), "progress": 100} if state == S.REVIEWING else {}


def _reject(job: Job, decision: policy.Decision, actor: str) -> None:
    label = decision.label()
    transition(
        job,
        S.REJECTED,
        reason=f"{decision.stage} moderation blocked ({decision.category or 'policy'})",
        actor=actor,
        error_code="moderation_blocked",
        error_message=f"The {WHAT[job.state]} was blocked by the content policy: {label}.",
        completed_at=Now(),
    )


def apply_decisions(*, job_id: int, at: str, decisions: list[policy.Decision]) -> str | None:
    """Record the stage's decisions and act on the strictest: pass, reject, or hold for a moderator."""
    with transaction.atomic():
        job = locked(job_id)
        if job is None or job.state != at or job.reviews.filter(status=Review.Status.OPEN).exists():
            return None  # a duplicate message: the job moved on, or is held already
        records = [_record(job, decision) for decision in decisions]
        final = max(range(len(decisions)), key=lambda i: policy.SEVERITY[decisions[i].action])
        decision, record = decisions[final], records[final]
        if decision.action == policy.Action.ALLOW:
            transition(job, PASSED[at], reason=f"{at} moderation passed", actor="moderation", **_passed_fields(at))
        elif decision.action == policy.Action.BLOCK:
            _reject(job, decision, "moderation")
            if at == S.PENDING:  # a blocked prompt (or reference image) counts towards the user's cooldown
                abuse.record_block(user_id=job.user_id)
        else:
            # Held: no stage message is outstanding any more, so the job is never re-sent nor failed for one.
            Job.objects.filter(pk=job.pk).update(stage_enqueued_at=None)
            Review.objects.create(job_id=job.pk, kind=Review.Kind.HOLD, decision=record, stage=decision.stage)
            notification_create(
                user_id=job.user_id,
                job_id=job.pk,
                event="video.held_for_review",
                payload=video_object(job),
                attempt=job.attempt,
            )
        return job.state


def job_moderate_input(*, job_id: int) -> str | None:
    """pending -> queued | rejected, or held. Idempotent: a duplicate message finds the job moved on."""
    job = Job.objects.filter(pk=job_id, state=S.PENDING).first()
    if job is None:
        return None
    approval = _approved_on_appeal(job)
    if approval is not None:  # a moderator has read this request already and allowed it
        allowed = policy.Decision(
            action=policy.Action.ALLOW, stage=Stage.INPUT_TEXT, policy=approval.policy, reasons=approval.reasons
        )
        return apply_decisions(job_id=job_id, at=S.PENDING, decisions=[allowed])
    text = screening.text_findings(job.prompt)
    decisions = [text.decision()]
    if job.reference_key:
        try:
            with default_storage.open(job.reference_key, "rb") as fh:
                image = fh.read()
        except OSError as exc:
            decisions.append(policy.decide(Stage.INPUT_IMAGE, {}, failures=[f"reference image unreadable: {exc}"]))
        else:
            decisions.append(screening.check_reference(image, text.strictest))
    return apply_decisions(job_id=job_id, at=S.PENDING, decisions=decisions)


def job_review_output(*, job_id: int) -> str | None:
    """reviewing -> succeeded | rejected, or held, after the policy has looked at frames of the stored clip."""
    job = Job.objects.filter(pk=job_id, state=S.REVIEWING).first()
    if job is None:
        return None
    with default_storage.open(job.video_key, "rb") as fh:
        decision, _ = screening.check_video(fh.read())
    if decision.action == policy.Action.BLOCK and _approved_on_appeal(job) is not None:
        # The request was approved on appeal: what the classifiers would block, a person looks at again.
        decision = policy.Decision(**{**decision.__dict__, "action": policy.Action.HOLD})
    return apply_decisions(job_id=job_id, at=S.REVIEWING, decisions=[decision])


def _approved_on_appeal(job: Job) -> ModerationDecision | None:
    return job.moderation_decisions.filter(stage=Stage.MODERATOR, action=policy.Action.ALLOW).first()


def review_decide(*, review_id: int, moderator, approve: bool, note: str = "") -> Review:
    """A moderator's verdict on a held job: approve moves it on as a pass would, reject ends it `rejected`.

    Recorded as a `moderator` decision with their name, beside the classifiers' decisions."""
    with transaction.atomic():
        review = Review.objects.select_for_update().filter(pk=review_id).first()
        if review is not None and review.status == Review.Status.WITHDRAWN:
            raise ReviewError("this item was withdrawn: the video was cancelled or has moved on")
        if review is None or review.status != Review.Status.OPEN:
            raise ReviewError("this item has been decided already")
        job = locked(review.job_id)
        if review.kind != Review.Kind.HOLD:
            raise ReviewError("appeals are decided with appeal_decide")
        if job is None or job.state not in PASSED:
            raise ReviewError("the job is no longer held (it was cancelled or has moved on)")
        held = review.decision
        decision = policy.Decision(
            action=policy.Action.ALLOW if approve else policy.Action.BLOCK,
            stage=Stage.MODERATOR,
            policy=held.policy if held else policy.load().version,
            category="" if approve else (held.category if held else ""),
            reasons=[f"{moderator.get_username()}: {note}" if note else moderator.get_username()],
        )
        _record(job, decision, moderator=moderator)
        actor = f"moderator:{moderator.get_username()}"
        if approve:
            at = job.state
            transition(job, PASSED[at], reason=f"{at} approved by a moderator", actor=actor, **_passed_fields(at))
        else:
            _reject(job, decision, actor)
        review.status = Review.Status.APPROVED if approve else Review.Status.REJECTED
        review.moderator, review.note, review.decided_at = moderator, note, Now()
        review.save(update_fields=["status", "moderator", "note", "decided_at"])
        return review


# --- appeals ------------------------------------------------------------------------------------------------------


class AppealRefused(Exception):
    """The video cannot be appealed: not a moderation rejection, or appealed already."""


def appeal_create(*, job_id: int, message: str = "") -> Review:
    """The owner's one appeal of a moderation rejection: it joins the moderators' queue beside the decision."""
    with transaction.atomic():
        job = locked(job_id)
        if job is None or job.state != S.REJECTED or job.error_code != "moderation_blocked":
            raise AppealRefused("only a video rejected by moderation can be appealed")
        if job.prompt_erased_at is not None:
            raise AppealRefused(
                "this video's prompt has been erased (deleted or past its retention): nothing to review"
            )
        if Review.objects.filter(job_id=job.pk, kind=Review.Kind.APPEAL).exists():
            raise AppealRefused("this video has been appealed already: a video is appealed once")
        blocked = job.moderation_decisions.filter(action=policy.Action.BLOCK).order_by("-id").first()
        return Review.objects.create(
            job_id=job.pk,
            kind=Review.Kind.APPEAL,
            decision=blocked,
            stage=blocked.stage if blocked else Stage.INPUT_TEXT,
            message=message[:1000],
        )


def appeal_decide(*, review_id: int, moderator, approve: bool, note: str = "") -> Review:
    """A moderator's verdict on an appeal. The rejected video stays rejected (a job ends once); approving runs
    the same request again as a new video of the same user, through the same submission (caps and credits
    apply), approved in advance by this moderator: its input stage passes, and what its output stage would
    block is held for a person instead. Idempotent per appeal (the new video's Idempotency-Key is the appeal's)."""
    with transaction.atomic():
        review = Review.objects.select_for_update().filter(pk=review_id).first()
        if review is None or review.status != Review.Status.OPEN:
            raise ReviewError("this item has been decided already")
        if review.kind != Review.Kind.APPEAL:
            raise ReviewError("held jobs are decided with review_decide")
        job = Job.objects.get(pk=review.job_id)
        who = moderator.get_username()
        reasons = [f"appeal {'approved' if approve else 'rejected'} by {who}" + (f": {note}" if note else "")]
        verdict = policy.Decision(
            action=policy.Action.ALLOW if approve else policy.Action.BLOCK,
            stage=Stage.MODERATOR,
            policy=review.decision.policy if review.decision else policy.load().version,
            category="" if approve or review.decision is None else review.decision.category,
            reasons=reasons,
        )
        _record(job, verdict, moderator=moderator)
        if approve:
            review.rerun = _rerun(job, review, verdict, moderator)
        review.status = Review.Status.APPROVED if approve else Review.Status.REJECTED
        review.moderator, review.note, review.decided_at = moderator, note, Now()
        review.save(update_fields=["status", "moderator", "note", "decided_at", "rerun"])
        review.refresh_from_db()  # decided_at from the database's clock, for the notification
        notification_create(
            user_id=job.user_id, job_id=job.pk, event="video.appeal_decided", payload=appeal_object(review)
        )
        return review


def _rerun(job: Job, review: Review, verdict: policy.Decision, moderator) -> Job:
    from jobs.services.submission import Refused, SubmitRequest, job_submit  # submission imports this module

    reference = None
    if job.reference_key:
        try:
            with default_storage.open(job.reference_key, "rb") as fh:
                reference = fh.read()
        except OSError:
            raise ReviewError("the reference image of this video is gone (expired): it cannot run again") from None
    request = SubmitRequest(
        prompt=job.prompt,
        model=job.model,
        seconds=job.seconds,
        width=job.width,
        height=job.height,
        reference_png=reference,
        request_hash=job.request_hash,
    )
    try:
        rerun, _ = job_submit(user_id=job.user_id, request=request, idempotency_key=f"appeal-{review.pk}")
    except Refused as exc:
        raise ReviewError(f"the user cannot start a video now ({exc}); try again later") from None
    _record(rerun, verdict, moderator=moderator)
    return rerun
