"""Retention of stored files: a finished job's clip, thumbnail, reference and attempts' leftovers are removed
once its end state's retention has passed, a DELETE removes them (and the prompt) at once, and nothing of an
unfinished job is touched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.management import call_command
from django.utils import timezone

from jobs import services
from jobs.models import Job

pytestmark = pytest.mark.django_db


def _store(job: Job, *, attempts: int = 1, reference: bool = True) -> list[str]:
    """The files a job that ran `attempts` times leaves: each attempt's clip and thumbnail, its reference."""
    keys = []
    for attempt in range(1, attempts + 1):
        base = f"videos/{job.public_id}/attempt-{attempt}"
        keys += [
            default_storage.save(f"{base}.mp4", ContentFile(b"mp4")),
            default_storage.save(f"{base}.webp", ContentFile(b"w")),
        ]
    fields = {"video_key": keys[-2], "thumbnail_key": keys[-1]}
    if reference:
        fields["reference_key"] = default_storage.save(f"references/{job.public_id}.png", ContentFile(b"png"))
        keys.append(fields["reference_key"])
    Job.objects.filter(pk=job.pk).update(**fields)
    return keys


def _ended(make_job, state: str, *, ago: timedelta, **fields) -> Job:
    return make_job(state, completed_at=timezone.now() - ago, **fields)


def _exists(keys: list[str]) -> list[bool]:
    return [default_storage.exists(k) for k in keys]


def test_a_completed_video_keeps_its_files_until_it_expires(make_job, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "VIDEO_RETENTION_SECONDS": 3600}
    fresh = _ended(make_job, "succeeded", ago=timedelta(minutes=59))
    old = _ended(make_job, "succeeded", ago=timedelta(minutes=61))
    fresh_keys, old_keys = _store(fresh, attempts=2), _store(old, attempts=2)  # attempt 1's leftovers included

    assert services.purge_expired_files() == 1
    assert all(_exists(fresh_keys))
    assert not any(_exists(old_keys))
    old.refresh_from_db()
    assert (old.video_key, old.thumbnail_key, old.reference_key) == ("", "", "")
    assert old.files_purged_at is not None and old.prompt == "a calm lake"  # the record stays
    assert services.purge_expired_files() == 0  # done once


@pytest.mark.parametrize(
    ("state", "setting"),
    [
        ("rejected", "REJECTED_RETENTION_SECONDS"),
        ("failed", "DISCARDED_RETENTION_SECONDS"),
        ("cancelled", "DISCARDED_RETENTION_SECONDS"),
    ],
)
def test_each_end_state_has_its_own_retention(make_job, settings, state, setting):
    settings.VIDEOGEN = {
        **settings.VIDEOGEN,
        "VIDEO_RETENTION_SECONDS": 10**7,
        "REJECTED_RETENTION_SECONDS": 10**7,
        "DISCARDED_RETENTION_SECONDS": 10**7,
        setting: 60,
    }
    due = _ended(make_job, state, ago=timedelta(seconds=61))
    kept = _ended(make_job, "succeeded", ago=timedelta(seconds=61))
    due_keys, kept_keys = _store(due), _store(kept)
    assert services.purge_expired_files() == 1
    assert not any(_exists(due_keys)) and all(_exists(kept_keys))


@pytest.mark.parametrize("state", ["pending", "queued", "dispatched", "running", "reviewing"])
def test_an_unfinished_job_keeps_everything(make_job, settings, state):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "VIDEO_RETENTION_SECONDS": 0, "DISCARDED_RETENTION_SECONDS": 0}
    job = make_job(state, created_at=timezone.now() - timedelta(days=30))
    keys = _store(job)
    assert services.purge_expired_files() == 0
    assert all(_exists(keys))


def test_a_sweep_is_bounded_and_the_next_one_goes_on(make_job, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "DISCARDED_RETENTION_SECONDS": 0}
    jobs = [_ended(make_job, "failed", ago=timedelta(seconds=5 + i)) for i in range(5)]
    keys = [_store(j, reference=False) for j in jobs]
    assert services.purge_expired_files(limit=3) == 3
    # Oldest first.
    assert [any(_exists(k)) for k in keys] == [True, True, False, False, False]
    assert services.purge_expired_files(limit=3) == 2
    assert not any(any(_exists(k)) for k in keys)


def test_one_failing_delete_does_not_stop_the_sweep(make_job, settings, monkeypatch):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "DISCARDED_RETENTION_SECONDS": 0}
    broken = _ended(make_job, "failed", ago=timedelta(seconds=20))
    fine = _ended(make_job, "failed", ago=timedelta(seconds=10))
    broken_keys, fine_keys = _store(broken), _store(fine)
    real_delete = FileSystemStorage.delete

    def delete(storage, key):
        if broken.public_id in key:
            raise OSError("storage unreachable")
        real_delete(storage, key)

    monkeypatch.setattr(FileSystemStorage, "delete", delete)
    assert services.purge_expired_files() == 1
    assert all(_exists(broken_keys)) and not any(_exists(fine_keys))
    broken.refresh_from_db()
    assert broken.files_purged_at is None  # still due: the next sweep tries again
    monkeypatch.undo()
    assert services.purge_expired_files() == 1
    assert not any(_exists(broken_keys))


def test_delete_removes_every_file_and_the_prompt_at_once(api, user, make_job):
    job = _ended(make_job, "succeeded", ago=timedelta(seconds=1), owner=user)
    keys = _store(job, attempts=3)
    assert api.delete(f"/v1/videos/{job.public_id}").status_code == 200
    assert not any(_exists(keys))
    job.refresh_from_db()
    assert job.prompt == "" and job.files_purged_at is not None and job.deleted_at is not None


def test_an_expired_video_is_answered_as_such_after_its_files_are_gone(api, user, make_job, settings):
    job = _ended(make_job, "succeeded", ago=timedelta(seconds=1), owner=user)
    _store(job)
    assert api.get(f"/v1/videos/{job.public_id}/content").status_code == 200
    settings.VIDEOGEN = {**settings.VIDEOGEN, "VIDEO_RETENTION_SECONDS": 0}
    assert services.purge_expired_files() == 1
    settings.VIDEOGEN = {**settings.VIDEOGEN, "VIDEO_RETENTION_SECONDS": 3600}  # even if retention grows later
    resp = api.get(f"/v1/videos/{job.public_id}/content")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "video_expired"


def test_the_dispatcher_pass_sweeps(make_job, settings, capsys):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "DISCARDED_RETENTION_SECONDS": 0}
    keys = _store(_ended(make_job, "cancelled", ago=timedelta(seconds=1)))
    call_command("dispatch", "--once")
    assert "files purged 1" in capsys.readouterr().out
    assert not any(_exists(keys))
