"""The operations page: samples the dispatcher takes from the database (jobs.ops), charts drawn from them, and
the page in Chromium."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from jobs import ops, services
from jobs.models import OpsSample, State
from jobs.services.transitions import locked, transition


def _finish(job_id: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        transition(locked(job_id), State.SUCCEEDED, reason="test", actor="test")


@pytest.mark.django_db
def test_a_sample_counts_what_the_database_says(make_job, settings):
    for _ in range(3):
        make_job("queued")
    make_job("queued", tier="paid")
    services.publish_queue_summary()
    first = ops.take_sample()
    assert first.data["queue_depth"] == {"free": 3, "paid": 1}
    assert ops.take_sample() is None  # within the interval: one sample per interval, whoever asks
    for _ in range(2):
        _finish(make_job("reviewing").pk)
    later = ops.take_sample(now=timezone.now() + dt.timedelta(seconds=61))
    assert later.data["completed"] == 2 and later.data["failed"] == 0
    old = OpsSample.objects.create(at=timezone.now() - dt.timedelta(hours=49), data={})
    ops.take_sample(now=timezone.now() + dt.timedelta(seconds=130))
    assert not OpsSample.objects.filter(pk=old.pk).exists()  # past OPS_SAMPLE_KEEP_HOURS


def _samples(make_job) -> list[OpsSample]:
    now = timezone.now() - dt.timedelta(minutes=10)
    out = []
    for i in range(3):
        make_job("queued")
        services.publish_queue_summary()
        out.append(ops.take_sample(now=now + dt.timedelta(minutes=i)))
    return out


@pytest.mark.django_db
def test_the_charts_are_drawn_from_the_samples(make_job, admin_client):
    samples = _samples(make_job)
    charts, n = ops.charts(hours=1)
    assert n == 3 and [c.id for c in charts] == ["queue-depth", "throughput", "wait-p95", "slots", "failures"]
    depth = charts[0].series[0]
    assert depth.name == "free" and [v for _, v in depth.points] == [1.0, 2.0, 3.0]
    assert len(depth.path.split()) == 3 and charts[0].top == 3.0
    page = admin_client.get("/admin/jobs/opssample/?hours=1")
    assert page.status_code == 200 and page.content.decode().count('<figure class="chart"') == 5
    assert admin_client.get("/admin/jobs/opssample/?hours=nonsense").status_code == 200
    assert samples[-1].data["queue_depth"]["free"] == 3


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_operations_page_renders_its_plots_in_chromium(platform_factory, make_job):
    import shutil

    from playwright.sync_api import expect, sync_playwright

    from jobs.accounts import ensure_user
    from tests.e2e.test_e2e import CHROMIUM, CHROMIUM_ARGS

    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    plat = platform_factory(gpu=False, workers=False)
    staff, _ = ensure_user(username="ops-admin", password="pw-ops-admin")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    _samples(make_job)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(plat.base_url + "/admin/login/?next=/admin/jobs/opssample/%3Fhours%3D1")
        page.fill("input[name=username]", "ops-admin")
        page.fill("input[name=password]", "pw-ops-admin")
        page.click("input[type=submit]")
        expect(page.locator("figure.chart")).to_have_count(5, timeout=15_000)
        depth = page.locator("#chart-queue-depth polyline.series[data-name=free]")
        expect(depth).to_have_attribute("data-points", "3")
        expect(depth).to_have_attribute("data-last", "3.0")
        box = depth.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 20  # laid out as a line that rises
        assert len(page.screenshot()) > 10_000
        browser.close()
