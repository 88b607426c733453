"""GPU_BACKEND=simulated: the real runner path (claim, lease, steps, encode, store, complete) around a
SIMULATED generation, for fault runs; its poison job fails every attempt."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from gpu_runner import tasks
from jobs import services
from jobs.models import Job, State
from videogen.video_io import probe_mp4

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _simulated(settings):
    settings.GPU_BACKEND = "simulated"
    settings.SIMULATED_GENERATION = {**settings.SIMULATED_GENERATION, "TIME_FACTOR": 0.001}


def test_a_simulated_generation_goes_through_the_real_runner_path(make_job):
    job = make_job("dispatched")
    assert tasks.run_job(job.pk) == "completed"
    job.refresh_from_db()
    assert (job.state, job.attempt) == (State.REVIEWING, 1)
    with default_storage.open(job.video_key, "rb") as fh:
        info = probe_mp4(fh.read())
    assert (info["width"], info["height"], info["frames"]) == (16, 16, 5)
    assert services.job_review_output(job_id=job.pk) == State.SUCCEEDED


def test_the_simulated_poison_job_fails_every_attempt(make_job, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "MAX_ATTEMPTS": 2}
    job = make_job("dispatched", prompt="a lake [simulated-poison]")
    assert tasks.run_job(job.pk) == "failed"
    Job.objects.filter(pk=job.pk).update(state=State.DISPATCHED, not_before=None)  # as the dispatcher would
    assert tasks.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert (job.state, job.attempt, job.error_code) == (State.FAILED, 2, "generation_error")
    assert "simulated poison" in job.events.last().reason
