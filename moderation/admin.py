"""The moderators' queue in the admin: held jobs and appeals, each shown with its frames (or reference image),
the classifiers' scores, the prompt and the user's history, decided with Approve or Reject through the same
services as everything else (jobs.services: review_decide, appeal_decide), which record the moderator's name.

Abuse flags (users whose prompts were blocked repeatedly: jobs.services.abuse) are listed beside the queue with
the user's blocked prompts. From a flag, or from a review's page, a moderator suspends the submitting account
or lifts its suspension (account_suspend, account_reinstate: the reason and their name are kept as an
AccountAction), and resolves the flag (flag_resolve).

Members of the `Moderators` group (moderation.apps creates it) may view and decide reviews, view decisions, view
and resolve flags and suspend accounts, and nothing else in the admin.
"""

from __future__ import annotations

import base64
import io
from collections import Counter

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from moderation.models import AbuseFlag, AccountAction, Action, ModerationDecision, Review

HISTORY = 10  # the user's latest videos shown beside an item
FLAG_HISTORY = 25  # the user's latest blocked prompts shown on a flag
PREVIEW_PX = 256
# Suspending an account is a moderator's right (the Moderators group holds it), not every staff member's.
SUSPEND_PERMISSION = "moderation.suspend_account"


@admin.register(ModerationDecision)
class ModerationDecisionAdmin(admin.ModelAdmin):
    list_display = ("job", "stage", "action", "category", "policy", "moderator", "created_at")
    list_filter = ("stage", "action", "category", "policy")
    search_fields = ("job__public_id",)
    list_select_related = ("job", "moderator")
    readonly_fields = (
        "job",
        "stage",
        "action",
        "category",
        "scores",
        "policy",
        "reasons",
        "moderator",
        "created_at",
    )

    def has_add_permission(self, request) -> bool:
        return False  # written by the stages and the moderators' verdicts only

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class OpenFirst(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("decided", "Decided or withdrawn"), ("all", "All")]

    def queryset(self, request, queryset):
        value = self.value() or "open"
        if value == "open":
            return queryset.filter(status=Review.Status.OPEN)
        if value == "decided":
            return queryset.exclude(status=Review.Status.OPEN)
        return queryset

    def choices(self, changelist):
        current = self.value() or "open"
        for value, label in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "video", "stage", "category", "owner", "status", "moderator")
    list_filter = (OpenFirst, "kind", "stage")
    list_select_related = ("job", "job__user", "decision", "moderator")
    search_fields = ("job__public_id", "job__user__username")
    ordering = ("created_at", "id")
    show_full_result_count = False

    @admin.display(description="video")
    def video(self, obj: Review) -> str:
        return obj.job.public_id

    @admin.display(description="user")
    def owner(self, obj: Review) -> str:
        return obj.job.user.get_username()

    @admin.display(description="category")
    def category(self, obj: Review) -> str:
        return obj.decision.category if obj.decision else ""

    def has_add_permission(self, request) -> bool:
        return False  # the stages and the users' appeals open items

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the queue is an audit trail too

    def change_view(self, request, object_id, form_url="", extra_context=None):
        review = self.get_object(request, object_id)
        if review is None or not self.has_view_permission(request, review):
            raise PermissionDenied
        if request.method == "POST":
            if "account" in request.POST:
                return _account_action(self, request, user_id=review.job.user_id, review_id=review.pk)
            return self._decide(request, review)
        job = review.job
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{review.get_kind_display()} of {job.public_id}",
            "review": review,
            "job": job,
            "decisions": [_decision_row(d) for d in job.moderation_decisions.select_related("moderator")],
            "images": _images(review),
            "history": _history(job),
            "can_decide": review.status == Review.Status.OPEN and self.has_change_permission(request, review),
            **_account_context(request, job.user),
        }
        return TemplateResponse(request, "admin/moderation/review/detail.html", context)

    def _decide(self, request, review: Review):
        from jobs import services  # jobs imports moderation: the services are looked up when used

        if not self.has_change_permission(request, review):
            raise PermissionDenied
        verdict = request.POST.get("verdict")
        if verdict not in ("approve", "reject"):
            self.message_user(request, "Choose Approve or Reject.", messages.ERROR)
            return HttpResponseRedirect(request.path)
        decide = services.review_decide if review.kind == Review.Kind.HOLD else services.appeal_decide
        note = request.POST.get("note", "")[:1000]
        try:
            done = decide(review_id=review.pk, moderator=request.user, approve=verdict == "approve", note=note)
        except services.ReviewError as exc:
            self.message_user(request, f"Not decided: {exc}.", messages.ERROR)
            return HttpResponseRedirect(request.path)
        rerun = f"; it runs again as {done.rerun.public_id}" if done.rerun_id else ""
        self.message_user(request, f"{review.job.public_id}: {done.status}{rerun}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:moderation_review_changelist"))


def _decision_row(decision: ModerationDecision) -> dict:
    top = sorted(decision.scores.items(), key=lambda kv: -kv[1])[:4]
    return {
        "decision": decision,
        "scores": ", ".join(f"{name} {score:.2f}" for name, score in top),
        "who": decision.moderator.get_username() if decision.moderator else "classifiers",
    }


def _jpeg_uri(frame) -> str:
    from PIL import Image

    img = Image.fromarray(frame)
    img.thumbnail((PREVIEW_PX, PREVIEW_PX))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def _images(review: Review) -> list[dict]:
    """What the classifiers looked at: the frames sampled from the video, or the reference image."""
    from moderation import screening

    job = review.job
    shown = []
    try:
        if job.video_key:
            with default_storage.open(job.video_key, "rb") as fh:
                # The frames the output stage looked at, decoded alone and at preview size (caps as there).
                sample = screening.sample_video(fh.read(), side=PREVIEW_PX)
            for i, frame in zip(sample.indices, sample.frames, strict=True):
                shown.append({"label": f"frame {i + 1} of {sample.total}", "uri": _jpeg_uri(frame)})
        if job.reference_key:
            with default_storage.open(job.reference_key, "rb") as fh:
                shown.append({"label": "reference image", "uri": _jpeg_uri(screening.decode_image(fh.read()))})
    except Exception as exc:  # an undecodable clip is a reason to hold, and must still be decidable
        shown.append({"label": f"could not be shown: {type(exc).__name__}: {exc}", "uri": ""})
    return shown


def _history(job) -> dict:
    from jobs.models import Job

    mine = Job.objects.filter(user_id=job.user_id)
    states = Counter(mine.values_list("state", flat=True))
    return {
        "states": sorted(states.items()),
        "blocked": ModerationDecision.objects.filter(job__user_id=job.user_id, action="block").count(),
        "appeals": Review.objects.filter(job__user_id=job.user_id, kind=Review.Kind.APPEAL).count(),
        "latest": mine.exclude(pk=job.pk).order_by("-id").only("public_id", "prompt", "state", "created_at")[:HISTORY],
        "joined": job.user.date_joined.date(),
    }


# --- abuse flags and suspensions --------------------------------------------------------------------------------


def _account_context(request, owner) -> dict:
    """The submitting account beside a review or a flag: active or suspended, its open flag, the latest
    suspensions, and whether this moderator may suspend it or lift its suspension."""
    return {
        "owner": owner,
        "open_flag": AbuseFlag.objects.filter(user_id=owner.pk, status=AbuseFlag.Status.OPEN).first(),
        "account_actions": AccountAction.objects.filter(user_id=owner.pk).select_related("moderator")[:HISTORY],
        "can_suspend": request.user.has_perm(SUSPEND_PERMISSION),
    }


def _account_action(model_admin: admin.ModelAdmin, request, *, user_id: int, review_id=None, flag_id=None):
    """Suspend the account or lift its suspension (POST `account`, `reason`), then back to the same page."""
    from jobs import services  # jobs imports moderation: the services are looked up when used

    if not request.user.has_perm(SUSPEND_PERMISSION):
        raise PermissionDenied
    what = request.POST.get("account")
    if what not in ("suspend", "reinstate"):
        model_admin.message_user(request, "Choose Suspend or Lift the suspension.", messages.ERROR)
        return HttpResponseRedirect(request.path)
    act = services.account_suspend if what == "suspend" else services.account_reinstate
    try:
        done = act(
            user_id=user_id,
            moderator=request.user,
            reason=request.POST.get("reason", ""),
            review_id=review_id,
            flag_id=flag_id,
        )
    except services.AccountActionError as exc:
        model_admin.message_user(request, f"Not done: {exc}.", messages.ERROR)
        return HttpResponseRedirect(request.path)
    model_admin.log_change(request, done.user, f"{done.kind}: {done.reason}")  # in the user's admin history too
    outcome = (
        "suspended: their API keys and live streams stop now, and they cannot sign in"
        if what == "suspend"
        else "active again"
    )
    model_admin.message_user(request, f"{done.user.get_username()}: {outcome}.", messages.SUCCESS)
    return HttpResponseRedirect(request.path)


class OpenFlagsFirst(OpenFirst):
    def lookups(self, request, model_admin):
        return [("open", "Open"), ("decided", "Resolved"), ("all", "All")]


@admin.register(AbuseFlag)
class AbuseFlagAdmin(admin.ModelAdmin):
    """Users whose prompts were blocked repeatedly, open first: each shown with its blocked prompts, resolved with
    a note, and where called for the account suspended, through jobs.services."""

    list_display = ("last_triggered_at", "owner", "status", "triggers", "blocks", "account", "resolved_by")
    list_filter = (OpenFlagsFirst,)
    list_select_related = ("user", "resolved_by")
    search_fields = ("user__username",)
    ordering = ("-last_triggered_at", "-id")
    show_full_result_count = False

    @admin.display(description="user")
    def owner(self, obj: AbuseFlag) -> str:
        return obj.user.get_username()

    @admin.display(description="account")
    def account(self, obj: AbuseFlag) -> str:
        return "active" if obj.user.is_active else "suspended"

    def has_add_permission(self, request) -> bool:
        return False  # the input stage raises flags

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # an audit trail too

    def change_view(self, request, object_id, form_url="", extra_context=None):
        flag = self.get_object(request, object_id)
        if flag is None or not self.has_view_permission(request, flag):
            raise PermissionDenied
        if request.method == "POST":
            if "account" in request.POST:
                return _account_action(self, request, user_id=flag.user_id, flag_id=flag.pk)
            return self._resolve(request, flag)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Repeated blocks: {flag.user.get_username()}",
            "flag": flag,
            "cooldown_until": _cooldown_until(flag.user_id),
            "blocked": _blocked_history(request, flag.user_id),
            "window": settings.MODERATION_ABUSE_WINDOW_SECONDS,
            "can_resolve": flag.status == AbuseFlag.Status.OPEN and self.has_change_permission(request, flag),
            **_account_context(request, flag.user),
        }
        return TemplateResponse(request, "admin/moderation/abuseflag/detail.html", context)

    def _resolve(self, request, flag: AbuseFlag):
        from jobs import services

        if not self.has_change_permission(request, flag):
            raise PermissionDenied
        if request.POST.get("flag") != "resolve":
            self.message_user(request, "Choose Resolve.", messages.ERROR)
            return HttpResponseRedirect(request.path)
        try:
            services.flag_resolve(flag_id=flag.pk, moderator=request.user, note=request.POST.get("note", ""))
        except services.AccountActionError as exc:
            self.message_user(request, f"Not resolved: {exc}.", messages.ERROR)
            return HttpResponseRedirect(request.path)
        self.message_user(request, f"{flag.user.get_username()}: flag resolved.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:moderation_abuseflag_changelist"))


def _cooldown_until(user_id: int):
    from jobs.models import Account

    until = Account.objects.filter(user_id=user_id).values_list("moderation_cooldown_until", flat=True).first()
    return until if until is not None and until > timezone.now() else None


def _blocked_history(request, user_id: int) -> list[dict]:
    """The user's latest blocked prompts, newest first, each with links to its decision, its review (if it has
    one) and, for staff who may see jobs, the job."""
    decisions = list(
        ModerationDecision.objects.filter(job__user_id=user_id, action=Action.BLOCK)
        .select_related("job", "moderator")
        .order_by("-id")[:FLAG_HISTORY]
    )
    reviews: dict[int, int] = {}
    for job_id, review_id in Review.objects.filter(job_id__in={d.job_id for d in decisions}).values_list(
        "job_id", "pk"
    ):
        reviews.setdefault(job_id, review_id)
    may_see_jobs = request.user.has_perm("jobs.view_job")
    return [
        {
            "decision": d,
            "job": d.job,
            "who": d.moderator.get_username() if d.moderator else "classifiers",
            "decision_url": reverse("admin:moderation_moderationdecision_change", args=[d.pk]),
            "review_url": reverse("admin:moderation_review_change", args=[reviews[d.job_id]])
            if d.job_id in reviews
            else "",
            "job_url": reverse("admin:jobs_job_change", args=[d.job_id]) if may_see_jobs else "",
        }
        for d in decisions
    ]


@admin.register(AccountAction)
class AccountActionAdmin(admin.ModelAdmin):
    """Suspensions and reinstatements: who, when, why, from which flag or review (written by the services)."""

    list_display = ("created_at", "user", "kind", "moderator", "reason", "flag", "review")
    list_filter = ("kind",)
    list_select_related = ("user", "moderator", "flag", "review")
    search_fields = ("user__username", "moderator__username")
    readonly_fields = ("user", "kind", "moderator", "reason", "flag", "review", "created_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
