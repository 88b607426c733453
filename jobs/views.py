"""HTML pages: thin, the page itself talks to the same /v1 API with the session."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from jobs.catalog import CATALOG, default_model
from notifications.emails import EMAILABLE
from notifications.events import WEBHOOK_EVENT_TYPES
from notifications.models import NotificationCounter


@login_required
@ensure_csrf_cookie
def index(request: HttpRequest) -> HttpResponse:
    spec = CATALOG[default_model()]
    # The page lists current state, then follows the notification log from here on.
    last_seq = NotificationCounter.objects.filter(user=request.user).values_list("last_seq", flat=True).first()
    context = {"spec": spec, "models": list(CATALOG), "last_seq": last_seq or 0}
    return render(request, "index.html", context)


@login_required
@ensure_csrf_cookie
def settings_page(request: HttpRequest) -> HttpResponse:
    """Webhook endpoints (with their delivery log and replay) and email preferences, through the same API."""
    return render(request, "settings.html", {"event_types": WEBHOOK_EVENT_TYPES, "emailable": EMAILABLE})
