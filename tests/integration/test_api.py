"""/v1/videos: the OpenAI-compatible surface, its errors, idempotency and isolation."""

from __future__ import annotations

import base64
import io
import threading
import time

import pytest
import redis
from django import db
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import OrmQ
from PIL import Image
from rest_framework.test import APIClient

from jobs import selectors, services
from jobs.models import Job, JobEvent, State

pytestmark = pytest.mark.django_db


def png(width: int = 128, height: int = 128, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


def error_of(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_create_json_returns_a_queued_video_and_enqueues_moderation(api):
    resp = api.post("/v1/videos", {"prompt": "a fox in snow", "seconds": "8", "size": "256x144"}, format="json")
    assert resp.status_code == 201, resp.content
    video = resp.json()
    assert video["object"] == "video" and video["id"].startswith("video_")
    assert (video["status"], video["progress"], video["seconds"], video["size"]) == (
        "queued",
        0,
        "8",
        "256x144",
    )
    assert video["model"] == "wan-tiny" and video["prompt"] == "a fox in snow" and video["error"] is None
    job = Job.objects.get(public_id=video["id"])
    assert job.state == State.PENDING
    assert list(JobEvent.objects.filter(job=job).values_list("to_state", flat=True)) == ["pending"]
    task = OrmQ.objects.get()
    assert task.key == "cpu"
    assert task.task["func"] == "jobs.tasks.moderate_input" and task.task["args"] == (job.pk,)


def test_create_defaults_come_from_the_model(api):
    video = api.post("/v1/videos", {"prompt": "x"}, format="json").json()
    assert (video["seconds"], video["size"]) == ("4", "128x128")


def test_create_multipart_with_reference_image(api):
    resp = api.post(
        "/v1/videos",
        {"prompt": "animate this", "size": "128x128", "input_reference": io.BytesIO(png())},
        format="multipart",
    )
    assert resp.status_code == 201, resp.content
    job = Job.objects.get(public_id=resp.json()["id"])
    assert job.reference_key.startswith("references/")
    from django.core.files.storage import default_storage

    with default_storage.open(job.reference_key) as fh, Image.open(fh) as img:
        assert img.size == (128, 128)


def test_create_with_data_url_reference(api):
    data_url = "data:image/jpeg;base64," + base64.b64encode(png(fmt="JPEG")).decode()
    resp = api.post("/v1/videos", {"prompt": "p", "input_reference": {"image_url": data_url}}, format="json")
    assert resp.status_code == 201, resp.content


BAD_CREATES = [
    ({}, "prompt", "missing_required_parameter"),
    ({"prompt": ""}, "prompt", "empty_prompt"),
    ({"prompt": "   \n "}, "prompt", "empty_prompt"),
    ({"prompt": 42}, "prompt", "invalid_type"),
    ({"prompt": None}, "prompt", "missing_required_parameter"),
    ({"prompt": "a\x00b"}, "prompt", "invalid_value"),
    ({"prompt": "x", "seconds": True}, "seconds", "unsupported_seconds"),
    ({"prompt": "x", "seconds": [4]}, "seconds", "unsupported_seconds"),
    ({"prompt": "x", "size": 128}, "size", "unsupported_size"),
    ({"prompt": "x", "model": 7}, "model", "model_not_found"),
    ({"prompt": "x", "input_reference": "abc"}, "input_reference", "invalid_reference"),
    ({"prompt": "x" * 4001}, "prompt", "prompt_too_long"),
    ({"prompt": "x", "model": "sora-2"}, "model", "model_not_found"),
    ({"prompt": "x", "seconds": "5"}, "seconds", "unsupported_seconds"),
    ({"prompt": "x", "seconds": "four"}, "seconds", "unsupported_seconds"),
    ({"prompt": "x", "seconds": 4.5}, "seconds", "unsupported_seconds"),
    ({"prompt": "x", "size": "720x1280"}, "size", "unsupported_size"),
    ({"prompt": "x", "size": "130x130"}, "size", "unsupported_size"),
    ({"prompt": "x", "colour": "red"}, "colour", "unknown_parameter"),
    (
        {"prompt": "x", "input_reference": {"image_url": "https://example.com/a.png"}},
        "input_reference",
        "invalid_reference",
    ),
    ({"prompt": "x", "input_reference": {"file_id": "file_1"}}, "input_reference", "unsupported_reference"),
    (
        {"prompt": "x", "input_reference": {"image_url": "data:image/png;base64,!!!"}},
        "input_reference",
        "invalid_reference",
    ),
    (
        {"prompt": "x", "input_reference": {"image_url": "data:image/png;base64,aGVsbG8="}},
        "input_reference",
        "invalid_image",
    ),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD_CREATES)
def test_bad_create_is_a_400_naming_the_param_and_creates_nothing(api, body, param, code):
    resp = api.post("/v1/videos", body, format="json")
    assert resp.status_code == 400, resp.content
    err = error_of(resp)
    assert (err["param"], err["code"], err["type"]) == (param, code, "invalid_request_error")
    assert Job.objects.count() == 0 and OrmQ.objects.count() == 0


def test_unsupported_values_list_what_the_model_supports(api):
    err = error_of(api.post("/v1/videos", {"prompt": "x", "seconds": "5"}, format="json"))
    assert "'4', '8', '12'" in err["message"]
    err = error_of(api.post("/v1/videos", {"prompt": "x", "size": "720x1280"}, format="json"))
    assert "128x128" in err["message"] and "multiples of 16" in err["message"]
    err = error_of(api.post("/v1/videos", {"prompt": "x", "model": "nope"}, format="json"))
    assert "wan-tiny" in err["message"]


def test_reference_image_errors(api, settings):
    def post(data: bytes, **extra):
        return api.post("/v1/videos", {"prompt": "x", "input_reference": io.BytesIO(data), **extra}, format="multipart")

    err = error_of(post(b"this is not an image"))
    assert (err["param"], err["code"]) == ("input_reference", "invalid_image")
    err = error_of(post(png(256, 256)))
    assert (err["param"], err["code"]) == ("input_reference", "reference_size_mismatch")
    assert "256x256" in err["message"] and "128x128" in err["message"]
    settings.VIDEOGEN = {**settings.VIDEOGEN, "REFERENCE_MAX_BYTES": 1000}
    err = error_of(post(png() + b"\0" * 2000))
    assert (err["param"], err["code"]) == ("input_reference", "file_too_large")
    assert Job.objects.count() == 0


def test_lone_surrogate_in_prompt_is_a_400(api):
    resp = api.generic("POST", "/v1/videos", '{"prompt": "bad \\ud800 text"}', content_type="application/json")
    assert resp.status_code == 400 and error_of(resp)["param"] == "prompt"
    assert Job.objects.count() == 0


def test_malformed_json_and_wrong_media_type(api):
    resp = api.generic("POST", "/v1/videos", '{"prompt": "x",', content_type="application/json")
    assert resp.status_code == 400 and error_of(resp)["code"] == "invalid_body"
    resp = api.generic("POST", "/v1/videos", "[1, 2]", content_type="application/json")
    assert resp.status_code == 400 and error_of(resp)["code"] == "invalid_body"
    resp = api.generic("POST", "/v1/videos", "prompt=x", content_type="text/plain")
    assert resp.status_code == 415 and error_of(resp)["code"] == "unsupported_media_type"
    assert Job.objects.count() == 0


def test_auth_required_and_keys_checked(db, user):
    anon = APIClient()
    resp = anon.get("/v1/videos")
    assert resp.status_code == 401 and error_of(resp)["code"] == "invalid_api_key"
    anon.credentials(HTTP_AUTHORIZATION="Bearer vg-wrong")
    assert anon.get("/v1/videos").status_code == 401
    anon.credentials(HTTP_AUTHORIZATION="Basic abc")
    assert anon.get("/v1/videos").status_code == 401


def test_keys_are_stored_hashed(api_key):
    from jobs.models import ApiKey

    stored = ApiKey.objects.get()
    assert api_key not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64


def test_users_only_see_their_own_videos(api, make_user, client_for):
    mine = api.post("/v1/videos", {"prompt": "mine"}, format="json").json()["id"]
    other = client_for(make_user("mallory"))
    for method, path in [
        ("get", f"/v1/videos/{mine}"),
        ("delete", f"/v1/videos/{mine}"),
        ("post", f"/v1/videos/{mine}/cancel"),
        ("get", f"/v1/videos/{mine}/content"),
    ]:
        resp = getattr(other, method)(path)
        assert resp.status_code == 404, (method, path)
        assert error_of(resp)["code"] == "not_found"
    assert other.get("/v1/videos").json()["data"] == []
    assert other.get(f"/v1/videos?after={mine}").status_code == 404
    assert Job.objects.get(public_id=mine).state == State.PENDING


def test_retrieve_has_poll_header_and_queue_position(api):
    vid = api.post("/v1/videos", {"prompt": "x"}, format="json").json()["id"]
    services.job_moderate_input(job_id=Job.objects.get(public_id=vid).pk)
    services.runner_heartbeat(name="gpu-a", slots=1, model_names=["wan-tiny"])
    services.publish_queue_summary()
    selectors.forget_summaries()
    resp = api.get(f"/v1/videos/{vid}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "queued" and body["queue_position"] == 1
    assert abs(body["estimated_start_at"] - time.time()) < 5  # a free slot: it starts now
    assert int(resp["openai-poll-after-ms"]) > 0


def test_list_cursor_pagination(api):
    ids = [api.post("/v1/videos", {"prompt": f"p{i}"}, format="json").json()["id"] for i in range(5)]
    page = api.get("/v1/videos?limit=2").json()
    assert page["object"] == "list" and [v["id"] for v in page["data"]] == [ids[4], ids[3]]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (ids[4], ids[3], True)
    page = api.get(f"/v1/videos?limit=2&after={page['last_id']}").json()
    assert [v["id"] for v in page["data"]] == [ids[2], ids[1]] and page["has_more"] is True
    page = api.get(f"/v1/videos?limit=2&after={page['last_id']}").json()
    assert [v["id"] for v in page["data"]] == [ids[0]] and page["has_more"] is False
    page = api.get("/v1/videos?order=asc&limit=3").json()
    assert [v["id"] for v in page["data"]] == ids[:3]
    empty = APIClient()
    assert empty.get("/v1/videos").status_code == 401


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("order=up", "order"),
        ("after=video_nope", "after"),
    ],
)
def test_list_bad_params(api, query, param):
    resp = api.get(f"/v1/videos?{query}")
    assert resp.status_code in (400, 404)
    assert error_of(resp)["param"] == param


def test_delete_only_terminal_jobs(api):
    vid = api.post("/v1/videos", {"prompt": "x"}, format="json").json()["id"]
    resp = api.delete(f"/v1/videos/{vid}")
    assert resp.status_code == 409
    err = error_of(resp)
    assert "cancel" in err["message"] and err["code"] == "video_not_finished"
    cancelled = api.post(f"/v1/videos/{vid}/cancel").json()
    assert cancelled["status"] == "cancelled"
    resp = api.delete(f"/v1/videos/{vid}")
    assert resp.status_code == 200 and resp.json() == {"id": vid, "object": "video.deleted", "deleted": True}
    assert api.get(f"/v1/videos/{vid}").status_code == 404
    assert api.delete(f"/v1/videos/{vid}").status_code == 404
    assert api.get("/v1/videos").json()["data"] == []


def test_cancel_twice_is_a_409(api):
    vid = api.post("/v1/videos", {"prompt": "x"}, format="json").json()["id"]
    assert api.post(f"/v1/videos/{vid}/cancel").status_code == 200
    resp = api.post(f"/v1/videos/{vid}/cancel")
    assert resp.status_code == 409 and error_of(resp)["code"] == "video_already_finished"


def test_content_is_404_until_completed(api):
    vid = api.post("/v1/videos", {"prompt": "x"}, format="json").json()["id"]
    resp = api.get(f"/v1/videos/{vid}/content")
    assert resp.status_code == 404 and error_of(resp)["code"] == "video_not_ready"
    resp = api.get(f"/v1/videos/{vid}/content?variant=poster")
    assert resp.status_code == 400 and error_of(resp)["param"] == "variant"


def test_idempotency_key_replays_or_conflicts(api, make_user, client_for):
    body = {"prompt": "same", "seconds": "4"}
    first = api.post("/v1/videos", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post("/v1/videos", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    changed = api.post("/v1/videos", {**body, "prompt": "different"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert changed.status_code == 422 and error_of(changed)["code"] == "idempotency_key_reused"
    # Keys are scoped per user: the same key elsewhere is a new job.
    other = client_for(make_user("bob")).post("/v1/videos", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert Job.objects.count() == 2 and OrmQ.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_create_one_job(user):
    from jobs.accounts import api_key_create

    key = api_key_create(user_id=user.pk)
    results: list[int] = []
    barrier = threading.Barrier(6)

    def submit():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        barrier.wait()
        resp = client.post("/v1/videos", {"prompt": "race"}, format="json", HTTP_IDEMPOTENCY_KEY="race-1")
        results.append((resp.status_code, resp.json()["id"]))
        connection.close()

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert len({vid for _, vid in results}) == 1
    assert sorted(code for code, _ in results).count(201) == 1
    assert Job.objects.count() == 1 and OrmQ.objects.count() == 1


def test_submit_query_count_is_pinned(api):
    api.post("/v1/videos", {"prompt": "warm"}, format="json")
    with CaptureQueriesContext(connection) as plain:
        assert api.post("/v1/videos", {"prompt": "x"}, format="json").status_code == 201
    with CaptureQueriesContext(connection) as keyed:
        resp = api.post("/v1/videos", {"prompt": "y"}, format="json", HTTP_IDEMPOTENCY_KEY="q1")
        assert resp.status_code == 201
    # The key's user is remembered from the warm-up request (jobs.api.auth). Then two round trips between
    # SAVEPOINT and RELEASE (the test itself runs in a transaction; in production BEGIN and COMMIT): the reads
    # (lock the account; the user's unfinished and waiting jobs, for the caps; the job's id from its sequence)
    # and the writes (job, credit reservation, account usage, audit event, broker row). The published queue
    # summary and the cost model are cached in the process.
    sqls = [q["sql"] for q in plain]
    assert len(sqls) == 4, sqls
    reads, writes = sqls[1], sqls[2]
    assert reads.count("SELECT") == 4 and "FOR UPDATE" in reads and "nextval" in reads, reads
    assert reads.count("LIMIT") == 3, reads  # the caps' counts never read a whole history
    for table in ("jobs_job", "jobs_creditentry", "jobs_account", "jobs_jobevent", "django_q_ormq"):
        assert f'"{table}"' in writes, (table, writes)
    # + the Idempotency-Key lookup
    assert len(keyed) == len(plain) + 1, [q["sql"] for q in keyed]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="round trips of the Postgres path")
@pytest.mark.django_db(transaction=True)
def test_a_submission_is_three_round_trips_with_commit_in_the_last(api, tmp_path):
    """What travels to Postgres, traced by libpq itself: BEGIN, the reads, the writes with COMMIT."""
    from psycopg.pq import Trace

    api.post("/v1/videos", {"prompt": "warm"}, format="json")  # the key is remembered from here on
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    trace = tmp_path / "trace"
    with trace.open("w") as f:
        pgconn.trace(f.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
        assert api.post("/v1/videos", {"prompt": "x"}, format="json").status_code == 201
        pgconn.untrace()
    sent = [line.split("\t", 3)[3].strip() for line in trace.read_text().splitlines() if line.startswith("F\t")]
    assert len(sent) == 3, sent
    assert sent[0] == '"BEGIN"' and "FOR UPDATE" in sent[1] and sent[2].endswith('COMMIT"'), sent
    assert Job.objects.count() == 2 and JobEvent.objects.filter(reason="submitted").count() == 2


def test_unknown_api_path_and_method(api):
    resp = api.get("/v1/nothing")
    assert resp.status_code == 404 and error_of(resp)["code"] == "not_found"
    assert error_of(resp)["message"] == "Unknown endpoint: GET /v1/nothing."
    resp = api.put("/v1/videos", {}, format="json")
    assert resp.status_code == 405 and error_of(resp)["code"] == "method_not_allowed"


def test_models_endpoint(api):
    models = api.get("/v1/models").json()["data"]
    assert models[0]["id"] == "wan-tiny" and "128x128" in models[0]["sizes"]


def test_cancel_queued_job_is_immediate_and_notifies(api, user):
    vid = api.post("/v1/videos", {"prompt": "x"}, format="json").json()["id"]
    job = Job.objects.get(public_id=vid)
    services.job_moderate_input(job_id=job.pk)
    assert api.post(f"/v1/videos/{vid}/cancel").json()["status"] == "cancelled"
    events = [n["event"] for n in api.get("/v1/notifications").json()["data"]]
    assert events == ["video.cancelled"]


@pytest.mark.parametrize("path", ["/v1/videos/video_%00", "/v1/videos/%00abc", "/v1/videos?after=video_%00x"])
def test_nul_and_malformed_ids_are_404s(api, path):
    resp = api.get(path)
    assert resp.status_code == 404 and error_of(resp)["code"] == "not_found"


def test_deeply_nested_json_is_a_400(api):
    body = "[" * 100_000 + "]" * 100_000
    resp = api.generic("POST", "/v1/videos", body, content_type="application/json")
    assert resp.status_code == 400 and error_of(resp)["code"] == "invalid_body"


def test_oversized_bodies_are_413s(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    resp = api.post("/v1/videos", {"prompt": "x" * 3000}, format="json")
    assert resp.status_code == 413 and error_of(resp)["code"] == "body_too_large"
    resp = api.post("/v1/videos", {"prompt": "x" * 3000}, format="multipart")
    assert resp.status_code == 413 and error_of(resp)["code"] == "body_too_large"
    assert Job.objects.count() == 0


def test_idempotency_key_of_a_deleted_video_is_a_409(api):
    vid = api.post("/v1/videos", {"prompt": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="gone").json()["id"]
    api.post(f"/v1/videos/{vid}/cancel")
    assert api.delete(f"/v1/videos/{vid}").status_code == 200
    resp = api.post("/v1/videos", {"prompt": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="gone")
    assert resp.status_code == 409 and error_of(resp)["code"] == "idempotent_video_deleted"


@pytest.fixture
def completed(api, make_job, user):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.utils import timezone

    data = bytes(range(256)) * 40  # 10,240 bytes standing in for a clip
    key = default_storage.save("videos/x/attempt-1.mp4", ContentFile(data))
    job = make_job("succeeded", video_key=key, thumbnail_key=key, completed_at=timezone.now(), attempt=1)
    return job, data


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_reference_images_in_the_three_formats_are_taken(api, fmt):
    upload = io.BytesIO(png(fmt=fmt))
    resp = api.post("/v1/videos", {"prompt": "p", "input_reference": upload}, format="multipart")
    assert resp.status_code == 201, resp.content


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 128 128\nnewpath 0 0 moveto 128 128 lineto stroke\nshowpage\n"


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO", "PPM", "GIF", "EPS"])
def test_reference_images_in_other_formats_are_refused_unparsed(api, fmt, monkeypatch):
    """Defect 8: BMP, TIFF, ICO and PPM were accepted, and EPS went to Pillow's PostScript parser."""
    from PIL import EpsImagePlugin

    calls: list[bytes] = []
    real = EpsImagePlugin.EpsImageFile._open
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: calls.append(b"eps") or real(self))
    data = EPS if fmt == "EPS" else png(fmt=fmt)
    resp = api.post("/v1/videos", {"prompt": "p", "input_reference": io.BytesIO(data)}, format="multipart")
    assert resp.status_code == 400 and error_of(resp)["code"] == "invalid_image", resp.content
    assert "PNG, JPEG or WebP" in error_of(resp)["message"]
    assert calls == []  # never handed to the PostScript parser
    assert not Job.objects.exists()


def test_content_supports_byte_ranges(api, completed):
    job, data = completed
    url = f"/v1/videos/{job.public_id}/content"
    whole = api.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    assert b"".join(whole.streaming_content) == data
    part = api.get(url, HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert b"".join(part.streaming_content) == data[100:200]
    tail = api.get(url, HTTP_RANGE="bytes=-10")
    assert b"".join(tail.streaming_content) == data[-10:]
    open_ended = api.get(url, HTTP_RANGE="bytes=10200-")
    assert b"".join(open_ended.streaming_content) == data[10200:]
    beyond = api.get(url, HTTP_RANGE=f"bytes={len(data)}-")
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{len(data)}"


def _open_files() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="counts open descriptors")
def test_huge_range_numbers_are_answered_not_crashed_and_leak_no_file(api, completed):
    """Defect 7: a Range number past Python's 4,300-digit int limit was a 500 and left the file open."""
    job, data = completed
    url = f"/v1/videos/{job.public_id}/content"
    huge = "9" * 5000
    before = _open_files()
    for _ in range(5):
        beyond = api.get(url, HTTP_RANGE=f"bytes={huge}-")
        assert beyond.status_code == 416 and error_of(beyond)["code"] == "range_not_satisfiable"
    assert _open_files() == before  # a refused range opens nothing
    to_end = api.get(url, HTTP_RANGE=f"bytes=0-{huge}")
    assert to_end.status_code == 206 and b"".join(to_end.streaming_content) == data
    suffix = api.get(url, HTTP_RANGE=f"bytes=-{huge}")
    assert suffix.status_code == 206 and b"".join(suffix.streaming_content) == data


def test_expired_and_missing_content_are_404s(api, completed, settings):
    from django.core.files.storage import default_storage

    job, _ = completed
    url = f"/v1/videos/{job.public_id}/content"
    settings.VIDEOGEN = {**settings.VIDEOGEN, "VIDEO_RETENTION_SECONDS": -1}
    resp = api.get(url)
    assert resp.status_code == 404 and error_of(resp)["code"] == "video_expired"
    settings.VIDEOGEN = {**settings.VIDEOGEN, "VIDEO_RETENTION_SECONDS": 3600}
    default_storage.delete(job.video_key)
    resp = api.get(url)
    assert resp.status_code == 404 and error_of(resp)["code"] == "content_gone"


@pytest.mark.parametrize(
    "fault",
    [
        db.OperationalError("terminating connection due to administrator command"),
        db.InterfaceError("connection already closed"),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    ],
)
def test_a_store_going_away_mid_request_is_a_503_to_retry_not_a_500(api, monkeypatch, fault):
    """A restart or failover of Postgres or Redis under a request (fault injected at the selector's seam: the
    real one is `make chaos`'s pg_terminate_backend and Redis restart)."""

    def gone(**kwargs):
        raise fault

    monkeypatch.setattr(selectors, "video_list", gone)
    resp = api.get("/v1/videos")
    assert resp.status_code == 503 and resp["Retry-After"] == "1"
    assert error_of(resp) == {
        "message": "The service is briefly unavailable; please retry.",
        "type": "server_error",
        "param": None,
        "code": "unavailable",
    }
    assert "administrator" not in resp.content.decode() and "6379" not in resp.content.decode()
