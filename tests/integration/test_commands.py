"""Management commands a new user runs, the admin, and the test command's service check."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from jobs import services
from jobs.models import Account, Job

pytestmark = pytest.mark.django_db


def run_command(*args: str) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_create_api_key_creates_the_user_and_prints_a_working_key_last():
    lines = run_command("create_api_key", "carol", "--tier", "paid")
    key = lines[-1]
    assert key.startswith("vg-") and "created user carol" in lines[0]
    assert Account.objects.get(user__username="carol").tier == "paid"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/v1/videos").status_code == 200
    # Again for the same user: a second, different key; the tier stays unless given.
    second = run_command("create_api_key", "carol")[-1]
    assert second != key and Account.objects.get(user__username="carol").tier == "paid"
    run_command("create_api_key", "carol", "--tier", "internal")
    assert Account.objects.get(user__username="carol").tier == "internal"


def test_create_api_key_rejects_an_unknown_tier():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("create_api_key", "dave", "--tier", "gold")


def test_admin_lists_searches_filters_and_shows_events(client, make_user, make_job):
    staff = make_user("staff")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    job = make_job("queued", prompt="a unique walrus")
    services.job_cancel(job_id=job.pk, actor="t")
    make_job("queued", prompt="something else")
    client.force_login(staff)
    page = client.get("/admin/jobs/job/?q=walrus")
    assert page.status_code == 200 and job.public_id.encode() in page.content
    assert b"something else" not in page.content
    assert client.get(f"/admin/jobs/job/?q={job.public_id}").content.count(job.public_id.encode()) >= 1
    filtered = client.get("/admin/jobs/job/?state__exact=cancelled&model__exact=wan-tiny")
    assert filtered.status_code == 200 and job.public_id.encode() in filtered.content
    detail = client.get(f"/admin/jobs/job/{job.pk}/change/")
    assert detail.status_code == 200 and b"cancelled" in detail.content and b"queued" in detail.content


def test_admin_bulk_cancel_goes_through_the_state_machine(client, make_user, make_job):
    staff = make_user("staff2")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    queued, running, done = make_job("queued"), make_job("running", attempt=1), make_job("succeeded")
    client.force_login(staff)
    selected = [queued.pk, running.pk, done.pk]
    client.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": selected})
    assert Job.objects.get(pk=queued.pk).state == "cancelled"
    assert Job.objects.get(pk=running.pk).state == "cancelled"
    assert Job.objects.get(pk=done.pk).state == "succeeded"
    assert running.events.get().actor == f"staff:{staff.pk}"
    # The running runner is fenced out at its next heartbeat.
    assert services.job_heartbeat(job_id=running.pk, attempt=1) is False


def test_admin_cannot_save_or_delete_a_job_behind_the_state_machine(client, make_user, make_job):
    staff = make_user("staff3")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    job = make_job("running", attempt=1)
    client.force_login(staff)
    assert client.post(f"/admin/jobs/job/{job.pk}/change/", {"state": "succeeded"}).status_code == 403
    assert client.post(f"/admin/jobs/job/{job.pk}/delete/", {"post": "yes"}).status_code == 403
    job.refresh_from_db()
    assert job.state == "running"


def test_page_requires_login_and_renders_for_a_user(client, user):
    assert client.get("/").status_code == 302
    client.force_login(user)
    page = client.get("/")
    assert page.status_code == 200 and b"create-form" in page.content


def test_service_check_names_the_missing_service_in_one_line():
    env = {**os.environ, "DATABASE_URL": "postgres://127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    proc = subprocess.run([sys.executable, "scripts/check_services.py"], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Postgres is not answering" in proc.stderr
    assert "pg_ctlcluster" in proc.stderr
