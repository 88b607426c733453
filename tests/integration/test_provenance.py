"""Content credentials (videogen.provenance, gpu_runner.outputs): every stored clip carries a signed C2PA manifest,
read back here with c2pa's own Reader trusting only this run's local authority (tests/conftest.py)."""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path

import c2pa
import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from PIL import Image

from gpu_runner import backend, tasks
from gpu_runner.remote import RemoteWorker
from harness.remote_sim import RemoteSim
from jobs import backends, services
from jobs.models import Job, RemoteJob, State
from videogen import metrics, provenance
from videogen.video_io import decode_mp4, encode_mp4

AI_GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def c2pa_read(data: bytes, trust_anchors: str) -> c2pa.Reader:
    """c2pa's Reader on an MP4, trusting only `trust_anchors`, offline."""
    context = c2pa.Context.from_dict(
        {"trust": {"trust_anchors": trust_anchors}, "verify": {"remote_manifest_fetch": False}}
    )
    return c2pa.Reader("video/mp4", io.BytesIO(data), context=context)


def assertion(manifest: dict, label: str) -> dict:
    [data] = [a["data"] for a in manifest["assertions"] if a["label"] in (label, f"{label}.v2")]
    return data


def stored(key: str) -> bytes:
    with default_storage.open(key, "rb") as fh:
        return fh.read()


def other_signer(tmp_path: Path, settings) -> None:
    """Point the runners at a signer from an authority of its own that copies our names (a forger's)."""
    authority, authority_key = provenance.make_authority(f"{provenance.PLATFORM} local content credentials authority")
    signer, key = provenance.issue_signer(authority, authority_key, f"{provenance.PLATFORM} content credentials signer")
    (tmp_path / "forged.pem").write_bytes(provenance.pem(signer) + provenance.pem(authority))
    (tmp_path / "forged.key").write_bytes(provenance.key_pem(key))
    settings.C2PA = {
        **settings.C2PA,
        "SIGN_CERT": str(tmp_path / "forged.pem"),
        "SIGN_KEY": str(tmp_path / "forged.key"),
    }


def clip(seed: int = 0) -> bytes:
    return encode_mp4(np.random.default_rng(seed).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8), fps=4)


# --- a finished video, through the real runner path -----------------------------------------------------------


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
def test_a_finished_video_carries_trusted_credentials_saying_ai_generated_model_platform_time(
    make_job, api, tiny_model_dir, content_credentials
):
    job = make_job("dispatched", seconds=4, width=128, height=128)
    before = timezone.now().replace(microsecond=0)
    assert tasks.run_job(job.pk) == "completed"
    after = timezone.now()
    assert services.job_review_output(job_id=job.pk) == State.SUCCEEDED

    data = b"".join(api.get(f"/v1/videos/{job.public_id}/content").streaming_content)
    assert decode_mp4(data).shape == (17, 128, 128, 3)  # the frames are untouched by the manifest
    with c2pa_read(data, content_credentials) as reader:
        assert reader.get_validation_state() == "Trusted", reader.get_validation_results()
        manifest = reader.get_active_manifest()
    [created] = assertion(manifest, "c2pa.actions")["actions"]
    assert created["action"] == "c2pa.created" and created["digitalSourceType"] == AI_GENERATED
    assert created["softwareAgent"] == {"name": "wan-tiny", "version": backend.TINY_VERSION}
    assert before <= dt.datetime.fromisoformat(created["when"]) <= after
    assert manifest["claim_generator_info"][0]["name"] == "videogen"
    generation = assertion(manifest, provenance.GENERATION_LABEL)
    assert generation["platform"] == "videogen" and generation["backend"] == "local"
    assert (generation["model"], generation["model_version"]) == ("wan-tiny", backend.TINY_VERSION)
    assert generation["created_at"] == created["when"]
    assert manifest["signature_info"]["common_name"] == "videogen content credentials signer"

    thumbnail = b"".join(api.get(f"/v1/videos/{job.public_id}/content?variant=thumbnail").streaming_content)
    assert Image.open(io.BytesIO(thumbnail)).size == (128, 128)
    read = provenance.read(thumbnail, trust_anchors=content_credentials, mime=provenance.WEBP)
    assert read.state == "Trusted" and read.ai_generated and read.created["when"] == created["when"]

    video = api.get(f"/v1/videos/{job.public_id}").json()
    assert video["content_credentials"] == {"standard": "c2pa", "ai_generated": True}


@pytest.mark.django_db
def test_the_video_object_names_credentials_only_for_a_signed_finished_clip(make_job, api):
    unsigned = make_job("succeeded", video_key="videos/old.mp4", completed_at=timezone.now())  # stored before
    reviewing = make_job("reviewing", video_key="videos/new.mp4", video_signed=True)
    signed = make_job("succeeded", video_key="videos/new.mp4", video_signed=True, completed_at=timezone.now())
    shown = {
        job.pk: api.get(f"/v1/videos/{job.public_id}").json()["content_credentials"]
        for job in (unsigned, reviewing, signed)
    }
    assert shown == {unsigned.pk: None, reviewing.pk: None, signed.pk: {"standard": "c2pa", "ai_generated": True}}


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
def test_a_tier_with_the_watermark_option_gets_a_visible_mark_and_the_others_none(make_job, settings, tiny_model_dir):
    tiers = settings.VIDEOGEN_TIERS
    settings.VIDEOGEN_TIERS = {**tiers, "paid": {**tiers["paid"], "WATERMARK": 1}}
    plain = make_job("dispatched", tier="free", seed=3, width=256, height=144)
    marked = make_job("dispatched", tier="paid", seed=3, width=256, height=144)
    for job in (plain, marked):
        assert tasks.run_job(job.pk) == "completed"
        job.refresh_from_db()
    # The same generation (same seed), so the decoded frames differ only where the mark is drawn.
    diff = np.abs(decode_mp4(stored(plain.video_key)).astype(int) - decode_mp4(stored(marked.video_key)).astype(int))
    corner, elsewhere = diff[:, -14:-3, -50:-5], diff[:, :100, :]
    assert corner.mean() > 20 and elsewhere.mean() < 2, (corner.mean(), elsewhere.mean())
    assert provenance.watermark(np.zeros((1, 144, 256, 3), dtype=np.uint8))[:, :100].max() == 0  # corner only


# --- what a reader makes of a forged signer and of a changed file ------------------------------------------------


def test_a_clip_signed_by_another_authority_is_untrusted_and_a_changed_clip_invalid(
    tmp_path, settings, content_credentials
):
    made = provenance.Generation(model="wan-tiny", model_version="1", created_at=timezone.now())
    genuine = provenance.sign(clip(), made)
    assert provenance.read(genuine, trust_anchors=content_credentials).state == "Trusted"

    other_signer(tmp_path, settings)  # same names, same claims, another authority
    forged = provenance.sign(clip(), made)
    read = provenance.read(forged, trust_anchors=content_credentials)
    assert read.state != "Trusted" and "signingCredential.untrusted" in read.failures
    assert read.ai_generated  # what it claims is still readable, but nobody vouches for it

    mdat = genuine.index(b"mdat") + 64  # one byte of the frames changed after signing
    changed = genuine[:mdat] + bytes([genuine[mdat] ^ 0xFF]) + genuine[mdat + 1 :]
    read = provenance.read(changed, trust_anchors=content_credentials)
    assert read.state == "Invalid" and "assertion.bmffHash.mismatch" in read.failures
    assert provenance.read(clip(), trust_anchors=content_credentials) is None  # no manifest at all


# --- fail-closed ------------------------------------------------------------------------------------------------


@pytest.mark.pipeline
@pytest.mark.django_db(transaction=True)
def test_a_runner_that_cannot_sign_stores_nothing_and_fails_the_attempt_visibly(
    make_job, settings, tmp_path, tiny_model_dir
):
    # c2pa refuses a self-signed end-entity certificate: the credentials load, but nothing can be signed.
    authority, key = provenance.make_authority("self-signed")
    (tmp_path / "self.pem").write_bytes(provenance.pem(authority))
    (tmp_path / "self.key").write_bytes(provenance.key_pem(key))
    settings.C2PA = {**settings.C2PA, "SIGN_CERT": str(tmp_path / "self.pem"), "SIGN_KEY": str(tmp_path / "self.key")}
    with pytest.raises(provenance.SigningError, match="self-signed"):
        provenance.check_signer()  # what a gpu worker and a remote worker run before offering a slot

    failed_before = metrics.C2PA_SIGNINGS.labels("failed")._value.get()
    job = make_job("dispatched")
    assert tasks.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert (job.state, job.error_code, job.video_key, job.video_signed) == (State.QUEUED, "signing_failed", "", False)
    assert job.error_message == tasks.GENERATION_ERROR  # the user's words; the reason is in the job's events
    assert job.events.filter(reason__contains="self-signed").exists()
    assert not default_storage.exists(f"videos/{job.public_id}")
    assert metrics.C2PA_SIGNINGS.labels("failed")._value.get() == failed_before + 1


@pytest.mark.django_db
def test_c2pa_setup_makes_a_local_authority_only_when_asked_in_the_production_profile(settings, tmp_path, capsys):
    settings.C2PA = {
        **settings.C2PA,
        "SIGN_CERT": str(tmp_path / "c2pa" / "signer.pem"),
        "SIGN_KEY": str(tmp_path / "c2pa" / "signer.key"),
        "LOCAL_CA": str(tmp_path / "c2pa" / "ca.pem"),
    }
    assert settings.DATABASE_URL  # the test run is the production profile
    with pytest.raises(CommandError, match="C2PA_SIGN_CERT"):
        call_command("c2pa_setup")
    assert not (tmp_path / "c2pa").exists()

    call_command("c2pa_setup", local_ca=True)
    assert "signed as CN=videogen content credentials signer" in capsys.readouterr().out
    assert (tmp_path / "c2pa" / "signer.key").stat().st_mode & 0o077 == 0  # keys readable by their owner only
    authority = (tmp_path / "c2pa" / "ca.pem").read_text()
    made = provenance.Generation(model="wan-tiny", model_version="1", created_at=timezone.now())
    assert provenance.read(provenance.sign(clip(), made), trust_anchors=authority).state == "Trusted"

    signer = (tmp_path / "c2pa" / "signer.pem").read_bytes()
    call_command("c2pa_setup")  # existing credentials are checked, never replaced
    assert (tmp_path / "c2pa" / "signer.pem").read_bytes() == signer


# --- a derived output: a clip a remote server made ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_clip_a_remote_server_made_is_stored_signed_keeping_the_servers_credentials(
    make_job, tmp_path, settings, content_credentials
):
    with RemoteSim("openai-videos") as sim:
        # The server's clip carries its own credentials (another authority's): they become our ingredient.
        saved = dict(settings.C2PA)
        other_signer(tmp_path, settings)
        theirs = provenance.Generation(model="remote-wan", model_version="9", created_at=timezone.now())
        sim.clip = provenance.sign(sim.clip, theirs)
        settings.C2PA = saved

        toml = "\n".join(
            [
                "[pools.sim]",
                f'base_url = "{sim.base_url}"',
                'dialect = "openai-videos"',
                "poll_seconds = 0.05",
                "[pools.sim.models.wan-tiny]",
                'remote_model = "remote-wan"',
            ]
        )
        worker = RemoteWorker(backends.parse(toml + "\n")["sim"])
        job = make_job("queued")
        deadline = time.monotonic() + 30
        while Job.objects.get(pk=job.pk).state != State.REVIEWING:
            assert time.monotonic() < deadline, "timed out"
            services.dispatch_once()
            worker._beat_once()
            worker.tick()
            time.sleep(0.02)
        job.refresh_from_db()
        assert job.video_signed and RemoteJob.objects.get(job=job).phase == RemoteJob.Phase.DONE

    data = stored(job.video_key)
    assert np.array_equal(decode_mp4(data), decode_mp4(sim.clip))
    with c2pa_read(data, content_credentials) as reader:
        assert reader.get_validation_state() == "Trusted", reader.get_validation_results()
        manifest = reader.get_active_manifest()
    [created] = assertion(manifest, "c2pa.actions")["actions"]
    assert created["digitalSourceType"] == AI_GENERATED
    assert created["softwareAgent"] == {"name": "wan-tiny", "version": "remote-wan"}  # the server's model name
    assert assertion(manifest, provenance.GENERATION_LABEL)["backend"] == "remote:sim"
    [ingredient] = manifest["ingredients"]
    assert ingredient["relationship"] == "componentOf" and ingredient["active_manifest"]  # theirs, kept
