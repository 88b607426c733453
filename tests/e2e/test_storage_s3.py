"""Object storage: clips live in an S3-compatible bucket (a real S3 API server, moto's server mode, started here),
and content downloads redirect to presigned URLs, so the bytes never pass through the web process."""

from __future__ import annotations

import warnings
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from openai import OpenAI

from jobs import services
from jobs.accounts import api_key_create, ensure_user
from jobs.models import Job, State
from tests.support.s3 import BUCKET, CREDENTIALS, s3_client
from videogen.video_io import probe_mp4


@pytest.mark.django_db
def test_content_redirects_to_a_presigned_url_and_the_bytes_come_from_s3(api, make_job, s3_storage):
    data = bytes(range(256)) * 64
    key = default_storage.save("videos/s3/attempt-1.mp4", ContentFile(data))  # the upload, through S3's API
    thumb = default_storage.save("videos/s3/attempt-1.webp", ContentFile(b"RIFF....WEBP"))
    job = make_job("succeeded", video_key=key, thumbnail_key=thumb, completed_at=timezone.now(), attempt=1)

    resp = api.get(f"/v1/videos/{job.public_id}/content")
    assert resp.status_code == 302 and resp["Cache-Control"] == "private, no-store"
    location = resp["Location"]
    assert location.startswith(s3_storage + f"/{BUCKET}/videos/s3/attempt-1.mp4?")
    query = parse_qs(urlparse(location).query)
    assert query["X-Amz-Expires"] == ["120"]
    assert query["response-content-type"] == ["video/mp4"]

    whole = httpx.get(location)  # no bearer key: the signature is the authorisation
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    part = httpx.get(location, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]

    thumb_url = api.get(f"/v1/videos/{job.public_id}/content?variant=thumbnail")["Location"]
    assert httpx.get(thumb_url).content == b"RIFF....WEBP"


@pytest.mark.django_db
def test_a_tampered_or_unsigned_url_is_refused_by_the_store(api, make_job, s3_storage):
    key = default_storage.save("videos/s3/secret.mp4", ContentFile(b"private bytes"))
    job = make_job("succeeded", video_key=key, thumbnail_key=key, completed_at=timezone.now(), attempt=1)
    location = api.get(f"/v1/videos/{job.public_id}/content")["Location"]
    assert httpx.get(location.replace("secret.mp4", "other.mp4")).status_code == 403
    assert httpx.get(location.split("?")[0]).status_code == 403


@pytest.mark.django_db
def test_the_ownership_and_state_checks_come_before_the_redirect(api, make_job, make_user, client_for, s3_storage):
    key = default_storage.save("videos/s3/theirs.mp4", ContentFile(b"x"))
    theirs = make_job("succeeded", owner=make_user(), video_key=key, completed_at=timezone.now(), attempt=1)
    assert api.get(f"/v1/videos/{theirs.public_id}/content").status_code == 404
    running = make_job("running", attempt=1)
    resp = api.get(f"/v1/videos/{running.public_id}/content")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "video_not_ready"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_runner_uploads_to_s3_and_the_sdk_downloads_through_the_redirect(platform_factory, s3_server):
    platform = platform_factory(STORAGE_BUCKET=BUCKET, STORAGE_ENDPOINT_URL=s3_server, **CREDENTIALS)
    user, _ = ensure_user(username="s3-user")
    client = OpenAI(base_url=platform.base_url + "/v1", api_key=api_key_create(user_id=user.pk), max_retries=0)
    platform.wait_for_runner()
    warnings.simplefilter("ignore", DeprecationWarning)
    video = client.videos.create_and_poll(prompt="a red kite over hills", size="128x128", seconds="4")
    assert video.status == "completed", platform.logs()
    job = Job.objects.get(public_id=video.id)
    assert job.state == State.SUCCEEDED
    stored = s3_client(s3_server).get_object(Bucket=BUCKET, Key=job.video_key)["Body"].read()
    data = client.videos.download_content(video.id).read()  # 302 from the web role, then the bytes from S3
    assert data == stored and probe_mp4(data)["frames"] == 17


@pytest.mark.django_db
def test_retention_removes_a_jobs_objects_from_s3_leftovers_included(make_job, s3_storage, settings):
    settings.VIDEOGEN = {**settings.VIDEOGEN, "DISCARDED_RETENTION_SECONDS": 0}
    job = make_job("failed", completed_at=timezone.now())
    other = make_job("succeeded", completed_at=timezone.now())
    keys = [default_storage.save(f"videos/{job.public_id}/attempt-{n}.mp4", ContentFile(b"x")) for n in (1, 2)]
    keys.append(default_storage.save(f"references/{job.public_id}.png", ContentFile(b"p")))
    Job.objects.filter(pk=job.pk).update(reference_key=keys[-1])
    kept = default_storage.save(f"videos/{other.public_id}/attempt-1.mp4", ContentFile(b"y"))

    assert services.purge_expired_files() == 1
    listed = {o["Key"] for o in s3_client(s3_storage).list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert not listed & set(keys)
    assert kept in listed
