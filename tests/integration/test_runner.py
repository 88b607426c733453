"""The gpu runner task with the real diffusers pipeline, in-process: claim, fencing, cancel, failure."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.core.files.storage import default_storage

from gpu_runner import tasks
from jobs import services
from jobs.models import Job, JobEvent, State
from videogen.video_io import decode_mp4, probe_mp4

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.pipeline]


@pytest.fixture(autouse=True)
def _model(tiny_model_dir):
    return tiny_model_dir


def dispatched(make_job, **fields) -> Job:
    return make_job("dispatched", **fields)


def test_run_job_generates_a_playable_clip_then_review_publishes_it(make_job, api):
    job = dispatched(make_job, seconds=4, width=256, height=144)
    assert tasks.run_job(job.pk) == "completed"
    job.refresh_from_db()
    assert job.state == State.REVIEWING and job.attempt == 1
    with default_storage.open(job.video_key, "rb") as fh:
        info = probe_mp4(fh.read())
    assert (info["codec"], info["pix_fmt"], info["width"], info["height"]) == ("h264", "yuv420p", 256, 144)
    assert info["frames"] == 17 and info["faststart"] is True
    assert services.job_review_output(job_id=job.pk) == State.SUCCEEDED

    resp = api.get(f"/v1/videos/{job.public_id}/content")
    assert resp.status_code == 200 and resp["Content-Type"] == "video/mp4"
    frames = decode_mp4(b"".join(resp.streaming_content))
    assert frames.shape == (17, 144, 256, 3)
    thumb = api.get(f"/v1/videos/{job.public_id}/content?variant=thumbnail")
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/webp"
    video = api.get(f"/v1/videos/{job.public_id}").json()
    assert (video["status"], video["progress"]) == ("completed", 100)
    assert video["completed_at"] and video["expires_at"] > video["completed_at"]


def test_duplicate_messages_run_the_pipeline_once(make_job):
    job = dispatched(make_job)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(tasks.run_job(job.pk))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["completed", "not claimed", "not claimed"]
    assert tasks.run_job(job.pk) == "not claimed"  # a late redelivery too
    job.refresh_from_db()
    assert job.attempt == 1
    assert JobEvent.objects.filter(job=job, to_state=State.RUNNING).count() == 1
    assert len(default_storage.listdir(f"videos/{job.public_id}")[1]) == 2  # one mp4, one thumbnail


def test_cancel_stops_a_running_job_within_one_heartbeat_and_one_step(make_job, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "HEARTBEAT_SECONDS": 0.3}
    job = dispatched(make_job, width=832, height=480, seconds=12)  # long enough to be caught mid-run
    outcome: list[str] = []
    runner = threading.Thread(target=lambda: outcome.append(tasks.run_job(job.pk)))
    runner.start()

    def progressed_past(value: int) -> tuple[int, float]:
        deadline = time.monotonic() + 60
        while (now := Job.objects.get(pk=job.pk).progress) <= value and time.monotonic() < deadline:
            time.sleep(0.02)
        return now, time.monotonic()

    first, first_at = progressed_past(0)
    _, step_at = progressed_past(first)
    # One step of this size on this machine, as loaded as it is now (seen through heartbeats of 0.3 s).
    step = step_at - first_at + 0.3
    assert Job.objects.get(pk=job.pk).state == State.RUNNING
    cancelled_at = time.monotonic()  # just after a step began: the worst case
    services.job_cancel(job_id=job.pk, actor="user:test")
    runner.join(timeout=60)
    stopped_after = time.monotonic() - cancelled_at
    assert outcome == ["lost"]
    # One heartbeat to notice, plus at most the step under way (with slack for a machine whose load moves).
    assert stopped_after < 0.3 + 1.5 * step, (stopped_after, step)
    job.refresh_from_db()
    assert job.state == State.CANCELLED and job.video_key == ""
    assert not default_storage.exists(f"videos/{job.public_id}")


def test_a_failing_attempt_is_retried_with_backoff_and_its_error_visible(make_job, api, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "MAX_ATTEMPTS": 2}
    # The reference image is gone from storage: generation fails for real.
    job = dispatched(make_job, reference_key="references/missing.png")
    assert tasks.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert job.state == State.QUEUED and job.error_code == "generation_error"
    assert job.not_before is not None
    Job.objects.filter(pk=job.pk).update(not_before=services.db_now_plus(-1))  # the backoff has passed
    services.runner_heartbeat(name="r", slots=1, model_names=["wan-tiny"])
    assert services.dispatch_once() == 1
    assert tasks.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert (job.state, job.attempt) == (State.FAILED, 2)
    video = api.get(f"/v1/videos/{job.public_id}").json()
    assert video["status"] == "failed" and video["error"]["code"] == "generation_error"
    # Defect 11: the exception's text (here a storage path) is for staff, in the job's events; never the user's.
    assert video["error"]["message"] == tasks.GENERATION_ERROR and "missing.png" not in json.dumps(video)
    assert job.events.filter(reason__contains="missing.png").count() == 2


def test_a_database_blip_at_completion_keeps_the_clip_and_the_attempt(make_job):
    """Defect 2: the completion's connection dropped (a restart, a failover), and the runner deleted the
    finished clip and failed the attempt. Here the runner's connection is terminated just as it writes the
    completion; the completion is retried on a new connection and the job goes on to review."""
    import psycopg
    from django.db import connection

    job = dispatched(make_job)
    dropped: list[str] = []

    def drop_once(execute, sql, params, many, context):
        if not dropped and sql.startswith("UPDATE") and "reviewing" in list(params or ()):
            dropped.append(sql)
            with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(drop_once):
        outcome = tasks.run_job(job.pk)
    assert dropped and outcome == "completed"
    job.refresh_from_db()
    assert job.state == State.REVIEWING and job.attempt == 1
    assert default_storage.exists(job.video_key) and default_storage.exists(job.thumbnail_key)
    assert not job.events.filter(reason__contains="failed").exists()
