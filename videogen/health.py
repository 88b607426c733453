"""Operations endpoints of the web role: `/healthz` (the process answers), `/readyz` (what it needs is reachable)
and `/metrics` (videogen.metrics)."""

from __future__ import annotations

import ipaddress
import time

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Alive: this process serves requests. Nothing else is checked (a load balancer must not drop every web
    process because the database blinked: that is /readyz)."""
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


def _broker() -> None:
    from django_q.models import OrmQ

    OrmQ.objects.filter(pk=0).exists()  # the ORM broker's table answers (an index lookup)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready: the database, Redis (when configured) and the task broker answer. 503 names what does not."""
    checks: dict[str, str] = {}
    probes = [("database", _database), ("broker", _broker)]
    if settings.REDIS_URL:
        probes.append(("redis", _redis))
    for name, probe in probes:
        started = time.perf_counter()
        try:
            probe()
            checks[name] = f"ok {1000 * (time.perf_counter() - started):.1f} ms"
        except Exception as exc:
            checks[name] = f"failed: {type(exc).__name__}"
    ready = all(value.startswith("ok") for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "")
        if not constant_time_compare(sent, f"Bearer {token}"):
            return HttpResponse("a bearer token is required\n", status=401, content_type="text/plain")
    elif not _loopback(request):
        return HttpResponse("set METRICS_TOKEN to scrape from elsewhere\n", status=403, content_type="text/plain")
    from prometheus_client import CONTENT_TYPE_LATEST

    from videogen.metrics import exposition

    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
