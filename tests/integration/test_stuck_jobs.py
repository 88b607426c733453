"""Stuck-job attribution (jobs.stuck), its admin view and the fenced requeue."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import CreditEntry, Job, Runner, ShapeCost, State
from jobs.services import costs
from jobs.stuck import p99, stuck_jobs
from notifications.models import Notification

pytestmark = pytest.mark.django_db


def test_the_p99_estimate_follows_observed_runs():
    runs = [10.0, 12.0, 9.0, 11.0, 10.5, 30.0, 10.0, 9.5, 11.5, 10.0] * 5
    for took in runs:
        costs.observe(model="wan-tiny", width=128, height=128, seconds=4, took=took)
    shape = ShapeCost.objects.get(model="wan-tiny", width=128, height=128, seconds=4)
    assert shape.samples == len(runs)
    estimate = p99(shape)
    assert shape.mean_seconds < estimate < max(runs)  # above the typical run, below the outlier
    assert estimate == pytest.approx(shape.mean_seconds + 2.326 * math.sqrt(shape.var_seconds2))
    few = ShapeCost.objects.create(model="x", width=1, height=1, seconds=1, mean_seconds=1.0, samples=2)
    assert p99(few) is None


def _runner(name: str) -> Runner:
    now = timezone.now()
    return Runner.objects.create(name=name, queue=f"gpu.{name}", host="gpu-host-7", pool="a100", version="2026.12",
                                 started_at=now, last_seen_at=now)  # fmt: skip


def _running(make_job, *, ago: float, **fields) -> Job:
    now = timezone.now()
    return make_job(
        "running", attempt=1, runner_id="gpu-host-7:42", dispatched_at=now - dt.timedelta(seconds=ago),
        lease_expires_at=now + dt.timedelta(seconds=20), progress=40, cost=2.0, credits=10, **fields,
    )  # fmt: skip


def test_a_job_far_past_its_shapes_p99_is_stuck_with_its_runner_named(make_job, settings):
    for took in [2.0, 2.2, 1.9, 2.1, 2.0, 2.3]:
        costs.observe(model="wan-tiny", width=128, height=128, seconds=4, took=took)
    _runner("gpu-host-7:42")
    stuck = _running(make_job, ago=600)
    _running(make_job, ago=30)  # recent: within any bound
    other_shape = _running(make_job, ago=70, width=256, height=256)  # no runs observed: 3 x cost = 6 s, floor 60
    found = {s.job.pk: s for s in stuck_jobs()}
    assert set(found) == {stuck.pk, other_shape.pk}
    s = found[stuck.pk]
    assert s.p99 is not None and s.bound == max(60, 1.5 * s.p99) and s.running_for >= 600
    assert (s.runner.host, s.runner.pool, s.runner.version) == ("gpu-host-7", "a100", "2026.12")
    assert found[other_shape.pk].p99 is None and found[other_shape.pk].bound == 60


def test_the_admin_lists_them_and_requeues_through_the_fence(make_job, admin_client, user):
    _runner("gpu-host-7:42")
    job = _running(make_job, ago=3600)
    CreditEntry.objects.create(user=user, job=job, kind="reserve", amount=-10, balance_after=0, actor="system")
    page = admin_client.get("/admin/jobs/stuckjob/")
    assert page.status_code == 200
    html = page.content.decode()
    for text in (job.public_id, "gpu-host-7", "a100", "2026.12", "too few runs"):
        assert text in html
    answer = admin_client.post(
        "/admin/jobs/stuckjob/", {"action": "requeue", "_selected_action": [job.pk]}, follow=True
    )
    assert "Requeued 1 job(s)." in answer.content.decode()
    job.refresh_from_db()
    assert job.state == State.QUEUED and job.error_code == "stuck_requeued"
    # The runner that had it is fenced out: no completion, no charge, no second notification.
    assert not services.job_heartbeat(job_id=job.pk, attempt=1, progress=90)
    assert not services.job_complete(job_id=job.pk, attempt=1, video_key="v.mp4", thumbnail_key="t.webp")
    assert not CreditEntry.objects.filter(job=job, kind__in=("charge", "release")).exists()
    assert list(Notification.objects.filter(job=job).values_list("event", flat=True)) == ["video.queued"]
    # A second requeue of the same attempt (a double click, a stale page) does nothing.
    assert not services.job_requeue_stuck(job_id=job.pk, attempt=1, actor="staff:again")
    assert admin_client.get("/admin/jobs/stuckjob/").content.decode().count(job.public_id) == 0


def test_staff_without_change_rights_see_the_view_but_cannot_requeue(make_job, client, make_user):
    from django.contrib.auth.models import Permission

    viewer = make_user("viewer")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_stuckjob"))
    client.force_login(viewer)
    job = _running(make_job, ago=3600)
    page = client.get("/admin/jobs/stuckjob/")
    assert page.status_code == 200 and job.public_id in page.content.decode()
    assert "requeue" not in page.content.decode()
    client.post("/admin/jobs/stuckjob/", {"action": "requeue", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.state == State.RUNNING
