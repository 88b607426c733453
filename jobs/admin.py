from __future__ import annotations

import threading
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote, unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from jobs import services
from jobs.accounts import issue_key
from jobs.models import Account, ApiKey, CreditEntry, Job, JobEvent, OpsSample, RemoteJob, Runner, StuckJob
from jobs.services import credits
from jobs.services.transitions import cfg
from jobs.stuck import Stuck, stuck_jobs
from moderation.models import ModerationDecision


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "from_state", "to_state", "reason", "actor", "attempt")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ModerationDecisionInline(admin.TabularInline):
    model = ModerationDecision
    extra = 0
    can_delete = False
    fields = ("created_at", "stage", "action", "policy", "reasons")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ViewOnlyAdmin(admin.ModelAdmin):
    """Rows written only through services (or append-only): no add, change or delete form."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class RemoteJobInline(admin.TabularInline):
    model = RemoteJob
    extra = 0
    can_delete = False
    fields = ("created_at", "attempt", "pool", "remote_id", "phase", "remote_status", "polls", "hints", "detail")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RemoteJob)
class RemoteJobAdmin(ViewOnlyAdmin):
    """Jobs on remote generation servers: `unknown` ones may have made a remote job nobody can see (a create cut
    off on a server without idempotency), `lost` ones were forgotten there or stuck, and retried here."""

    list_display = ("idempotency_key", "pool", "remote_id", "phase", "remote_status", "attempt", "polls", "hints",
                    "created_at", "finished_at")  # fmt: skip
    list_filter = ("phase", "pool")
    search_fields = ("remote_id", "idempotency_key", "job__public_id")
    readonly_fields = tuple(f.name for f in RemoteJob._meta.fields)
    show_full_result_count = False


_request_local = threading.local()


@admin.register(OpsSample)
class OperationsAdmin(ViewOnlyAdmin):
    """The operations page: plots of the last hours (queue depth per tier, throughput, wait p95, busy slots,
    failures), drawn from the samples the dispatcher takes (jobs.ops)."""

    def changelist_view(self, request, extra_context=None):
        from django.template.response import TemplateResponse

        from jobs import ops

        try:
            hours = min(48.0, max(0.1, float(request.GET.get("hours", 6))))
        except ValueError:
            hours = 6.0
        charts, samples = ops.charts(hours)
        context = {
            **self.admin_site.each_context(request),
            "title": "Operations",
            "opts": self.model._meta,
            "charts": charts,
            "samples": samples,
            "hours": hours,
            "width": ops.WIDTH,
            "height": ops.HEIGHT,
            "pad": ops.PAD,
            "every": settings.VIDEOGEN["OPS_SAMPLE_SECONDS"],
        }
        return TemplateResponse(request, "admin/jobs/operations.html", context)


@admin.register(StuckJob)
class StuckJobAdmin(ViewOnlyAdmin):
    """Running jobs far past their shape's estimated p99 (jobs.stuck), with who has them: runner, host, pool,
    version, last heartbeat, progress and attempts. Requeueing goes through the fenced service: the runner that
    has the job can no longer complete, charge or notify."""

    list_display = ("public_id", "user", "model", "size", "attempt", "progress", "running_for", "p99", "runner_id",
                    "host", "pool", "version", "last_heartbeat")  # fmt: skip
    actions = ("requeue",)
    list_select_related = ("user",)

    def get_queryset(self, request):
        # The columns below read what was found for this request (one admin instance serves every thread).
        _request_local.stuck = {s.job.pk: s for s in stuck_jobs()}
        return super().get_queryset(request).filter(pk__in=list(_request_local.stuck))

    def _stuck(self, obj) -> Stuck | None:
        return getattr(_request_local, "stuck", {}).get(obj.pk)

    @admin.display(description="running for")
    def running_for(self, obj) -> str:
        s = self._stuck(obj)
        return f"{s.running_for:.0f} s (stuck past {s.bound:.0f} s)" if s else "-"

    @admin.display(description="shape p99")
    def p99(self, obj) -> str:
        s = self._stuck(obj)
        return f"{s.p99:.1f} s" if s and s.p99 is not None else "too few runs"

    @admin.display(description="host")
    def host(self, obj) -> str:
        s = self._stuck(obj)
        return s.runner.host if s and s.runner else "(runner gone)"

    @admin.display(description="pool")
    def pool(self, obj) -> str:
        s = self._stuck(obj)
        return s.runner.pool if s and s.runner else "-"

    @admin.display(description="version")
    def version(self, obj) -> str:
        s = self._stuck(obj)
        return s.runner.version if s and s.runner else "-"

    @admin.display(description="last heartbeat")
    def last_heartbeat(self, obj):
        s = self._stuck(obj)
        return s.last_heartbeat if s else None

    def has_requeue_permission(self, request) -> bool:
        return request.user.has_perm("jobs.change_job")

    @admin.action(description="Requeue selected stuck jobs (fenced)", permissions=["requeue"])
    def requeue(self, request, queryset) -> None:
        done = sum(
            services.job_requeue_stuck(job_id=job.pk, attempt=job.attempt, actor=f"staff:{request.user.username}")
            for job in queryset
        )
        self.message_user(request, f"Requeued {done} job(s).", messages.SUCCESS)


@admin.register(Job)
class JobAdmin(ViewOnlyAdmin):
    list_display = (
        "public_id",
        "user",
        "state",
        "model",
        "size",
        "seconds",
        "attempt",
        "progress",
        "created_at",
    )
    list_filter = ("state", "model")
    search_fields = ("public_id", "user__username", "user__email", "prompt")
    list_select_related = ("user",)
    inlines = (JobEventInline, ModerationDecisionInline, RemoteJobInline)
    actions = ("cancel_jobs",)
    # State changes go through services only (the transition table), never through the form.
    readonly_fields = tuple(f.name for f in Job._meta.fields)
    show_full_result_count = False

    # (View only: saving or deleting through the form would bypass the state machine and race a runner's fenced
    # writes; jobs change only through actions that call the services.)

    def has_cancel_permission(self, request) -> bool:
        # Cancelling changes a job (through the services): staff need the change permission, not just view.
        return request.user.has_perm(f"{self.opts.app_label}.change_job")

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_jobs(self, request, queryset) -> None:
        done = 0
        for job in queryset:
            try:
                services.job_cancel(job_id=job.pk, actor=f"staff:{request.user.pk}")
                done += 1
            except (services.TransitionError, services.LostJob):
                pass  # already finished
        self.message_user(request, f"Cancelled {done} job(s).", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Staff issue a key for a user (shown once, on the page that answers the form), rename or revoke it; a key
    never changes hands, and its hash is the platform's to make.

    A key acts with its user's rights, so staff who are not superusers see, issue and revoke keys of users
    without staff rights only: a key for a superuser or another staff member would give them rights they lack.
    """

    list_display = ("prefix", "user", "name", "created_at", "revoked_at")
    search_fields = ("user__username", "prefix")
    list_select_related = ("user",)

    def get_queryset(self, request):
        return _keys_within_reach(request, super().get_queryset(request))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            kwargs["queryset"] = _users_within_reach(request, db_field.remote_field.model.objects.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_fields(self, request, obj=None):
        return ("user", "name") if obj is None else ("user", "name", "prefix", "key_hash", "created_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else ("user", "prefix", "key_hash", "created_at")

    def save_model(self, request, obj: ApiKey, form, change: bool) -> None:
        if not change:
            if not _users_within_reach(request, get_user_model().objects.filter(pk=obj.user_id)).exists():
                raise PermissionDenied  # the form's choices already refuse it: this guards any other path
            obj.raw_key = issue_key(obj)  # kept on the object for response_add only, never stored
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj: ApiKey, post_url_continue=None):
        """The new key on this response's page, once: never in a message, which may ride in a signed (readable)
        cookie."""
        context = {
            **self.admin_site.each_context(request),
            "title": "New API key",
            "opts": self.opts,
            "key": obj,
            "raw_key": obj.raw_key,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/jobs/apikey/issued.html", context)  # admin pages: never cached


def _users_within_reach(request, users):
    """The users a staff member may issue keys for: anyone for a superuser, users without staff rights otherwise."""
    return users if request.user.is_superuser else users.filter(is_staff=False, is_superuser=False)


def _keys_within_reach(request, keys):
    return keys if request.user.is_superuser else keys.filter(user__is_staff=False, user__is_superuser=False)


# --- accounts and credits -----------------------------------------------------------------------------

# The most one grant or adjustment may move (either way): a typo of a few extra digits is refused, not booked.
MAX_CREDIT_CHANGE = 10**9
RECENT_LEDGER_ROWS = 10


class CreditGrantForm(forms.Form):
    amount = forms.IntegerField(
        min_value=-MAX_CREDIT_CHANGE,
        max_value=MAX_CREDIT_CHANGE,
        help_text="Credits to add; a negative number removes credits (an adjustment).",
    )
    note = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why: kept in the ledger with your name.",
    )

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Enter a non-zero amount (negative to take credits away).")
        return amount


def _ledger_url(user_id: int) -> str:
    return reverse("admin:jobs_creditentry_changelist") + f"?user__id__exact={user_id}"


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    """Support staff move users between tiers here and grant or adjust credits. The balance and the usage
    counters are never edited: the balance only moves through the ledger (jobs.services.credits)."""

    list_display = ("user", "tier", "credit_balance", "jobs_today", "allowance_used_today", "ledger_link")
    list_filter = ("tier",)
    search_fields = ("user__username", "user__email")
    list_select_related = ("user",)
    ordering = ("user__username",)
    actions = ("grant_credits",)
    fields = (
        "user",
        "tier",
        "credit_balance",
        "usage_day",
        "day_jobs",
        "day_allowance_used",
        "recent_credit_entries",
    )
    readonly_fields = (
        "user",
        "credit_balance",
        "usage_day",
        "day_jobs",
        "day_allowance_used",
        "recent_credit_entries",
    )

    def has_add_permission(self, request) -> bool:
        return False  # an account comes with its user (create_api_key, ensure_user)

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting an account with credits would move a balance outside the ledger.
        if obj is not None and obj.credit_balance != 0:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        # Write only the tier: saving the whole row would put back a balance or usage counters read before
        # a concurrent submission or settlement changed them.
        if change and "tier" in form.changed_data:
            obj.save(update_fields=["tier"])

    @admin.display(description="jobs today")
    def jobs_today(self, obj: Account) -> int:
        return obj.day_jobs if obj.usage_day == credits.today() else 0

    @admin.display(description="allowance used today")
    def allowance_used_today(self, obj: Account) -> int:
        return obj.day_allowance_used if obj.usage_day == credits.today() else 0

    @admin.display(description="ledger")
    def ledger_link(self, obj: Account) -> str:
        return format_html('<a href="{}">entries</a>', _ledger_url(obj.user_id))

    @admin.display(description="recent credit entries")
    def recent_credit_entries(self, obj: Account) -> str:
        rows = list(
            CreditEntry.objects.filter(user_id=obj.user_id).select_related("job").order_by("-id")[:RECENT_LEDGER_ROWS]
        )
        link = format_html('<a href="{}">All entries in the ledger</a>', _ledger_url(obj.user_id))
        if not rows:
            return format_html("<p>No entries yet.</p>{}", link)
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    timezone.localtime(e.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                    e.kind,
                    f"{e.amount:+}",
                    f"{e.allowance_amount:+}",
                    e.balance_after,
                    e.job.public_id if e.job_id else "",
                    e.actor,
                    e.note,
                )
                for e in rows
            ),
        )
        return format_html(
            "<table><thead><tr><th>when</th><th>kind</th><th>amount</th><th>allowance</th><th>balance after</th>"
            "<th>job</th><th>actor</th><th>note</th></tr></thead><tbody>{}</tbody></table><p>{}</p>",
            body,
            link,
        )

    # Granting: an action for the selected accounts, and the same page for one account from its change page.

    def get_urls(self):
        urls = super().get_urls()
        own = [
            path(
                "<path:object_id>/credits/",
                self.admin_site.admin_view(self.grant_credits_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_credits",
            )
        ]
        return own + urls  # before the catch-all "<path:object_id>/"

    def grant_credits_view(self, request, object_id: str):
        account = self.get_object(request, unquote(object_id))
        if account is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, account):
            raise PermissionDenied
        form = CreditGrantForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            self._grant(request, [account], form)
            return HttpResponseRedirect(
                reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[quote(account.pk)])
            )
        return self._grant_page(request, [account], form, via_action=False)

    @admin.action(description="Grant or adjust credits", permissions=["change"])
    def grant_credits(self, request, queryset):
        accounts = list(queryset.select_related("user").order_by("pk"))
        form = CreditGrantForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._grant(request, accounts, form)
            return None  # back to the changelist
        return self._grant_page(request, accounts, form, via_action=True)

    def _grant(self, request, accounts: list[Account], form: CreditGrantForm) -> None:
        amount, note = form.cleaned_data["amount"], form.cleaned_data["note"]
        kind = CreditEntry.Kind.GRANT if amount > 0 else CreditEntry.Kind.ADJUST
        actor = f"staff:{request.user.get_username()}"
        entries = []
        with transaction.atomic():  # all the selected accounts or none; locked in pk order
            for account in sorted(accounts, key=lambda a: a.pk):
                entry = credits.grant(user_id=account.user_id, amount=amount, actor=actor, note=note, kind=kind)
                self.log_change(request, account, f"{kind} {amount:+} credits (balance {entry.balance_after}): {note}")
                entries.append((account, entry))
        for account, entry in entries:
            level = messages.WARNING if entry.balance_after < 0 else messages.SUCCESS
            self.message_user(
                request, f"{account.user}: {kind} {amount:+} credits, balance now {entry.balance_after}.", level
            )

    def _grant_page(self, request, accounts: list[Account], form: CreditGrantForm, *, via_action: bool):
        context = {
            **self.admin_site.each_context(request),
            "title": "Grant or adjust credits",
            "opts": self.opts,
            "accounts": accounts,
            "form": form,
            "via_action": via_action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/jobs/account/grant_credits.html", context)


@admin.register(CreditEntry)
class CreditEntryAdmin(ViewOnlyAdmin):
    """The ledger, read-only: rows are written by the credits service only (append-only)."""

    list_display = (
        "created_at",
        "user",
        "kind",
        "amount",
        "allowance_amount",
        "balance_after",
        "job_public_id",
        "actor",
        "note",
    )
    list_filter = ("kind",)
    search_fields = ("user__username", "job__public_id")
    list_select_related = ("user", "job")
    ordering = ("-id",)
    show_full_result_count = False
    fields = ("user", "kind", "amount", "allowance_amount", "balance_after", "job", "actor", "note", "created_at")
    readonly_fields = fields

    @admin.display(description="job", ordering="job__public_id")
    def job_public_id(self, obj: CreditEntry) -> str:
        return obj.job.public_id if obj.job_id else ""


# --- runners ------------------------------------------------------------------------------------------


@admin.register(Runner)
class RunnerAdmin(admin.ModelAdmin):
    """Runners register themselves (heartbeat); operators only drain them and take them back into service."""

    list_display = (
        "name",
        "queue",
        "host",
        "pool",
        "version",
        "slots",
        "models",
        "draining",
        "live",
        "last_seen_at",
    )
    list_filter = ("draining", "queue", "pool")
    search_fields = ("name", "host", "queue")
    ordering = ("queue", "name")
    actions = ("drain_runners", "undrain_runners")
    readonly_fields = tuple(f.name for f in Runner._meta.fields if f.name != "id")

    def has_add_permission(self, request) -> bool:
        return False  # runners register themselves

    def has_change_permission(self, request, obj=None) -> bool:
        # Without an object this gates the drain actions; with one it is the change form, which stays
        # read-only: a saved form would write back a stale row over the runner's own heartbeats.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    @admin.display(description="models")
    def models(self, obj: Runner) -> str:
        return ", ".join(obj.model_names or [])

    @admin.display(description="live", boolean=True)
    def live(self, obj: Runner) -> bool:
        return obj.last_seen_at >= timezone.now() - timedelta(seconds=cfg("RUNNER_TTL_SECONDS"))

    @admin.action(description="Drain selected runners (finish current work, take none)", permissions=["change"])
    def drain_runners(self, request, queryset) -> None:
        self._set_draining(request, queryset, True)

    @admin.action(description="Return selected runners to service", permissions=["change"])
    def undrain_runners(self, request, queryset) -> None:
        self._set_draining(request, queryset, False)

    def _set_draining(self, request, queryset, draining: bool) -> None:
        runners = list(queryset.order_by("name"))
        names = [runner.name for runner in runners]
        done = 0
        for runner in runners:
            if services.runner_drain(name=runner.name, draining=draining):
                done += 1
                self.log_change(request, runner, "drained" if draining else "returned to service")
        what = "Draining" if draining else "Returned to service"
        self.message_user(request, f"{what}: {done} runner(s) ({', '.join(names)}).", messages.SUCCESS)
