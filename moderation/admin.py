"""The moderators' queue in the admin: held jobs and appeals, each shown with its frames (or reference image),
the classifiers' scores, the prompt and the user's history, decided with Approve or Reject through the same
services as everything else (jobs.services: review_decide, appeal_decide), which record the moderator's name.

Members of the `Moderators` group (moderation.apps creates it) may view and decide reviews and view decisions,
and nothing else in the admin.
"""

from __future__ import annotations

import base64
import io
from collections import Counter

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from moderation.models import ModerationDecision, Review

HISTORY = 10  # the user's latest videos shown beside an item
PREVIEW_PX = 256


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
