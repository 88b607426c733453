"""Moderation: the written policy, the obfuscation-proof text layer, the real classifiers at each stage, holds
for a moderator, and failing closed. Real models throughout (MiniLM, open_nsfw, NudeNet), loaded once per
test process."""

from __future__ import annotations

import io
import math
import tracemalloc

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from jobs import services
from jobs.models import Job, State
from moderation import normalize, policy, screening, textrules
from moderation.models import ModerationDecision, Review, Stage
from videogen.video_io import encode_mp4, sample_indices

pytestmark = pytest.mark.django_db
Action = policy.Action


# --- the text layer ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obfuscated", "reading"),
    [
        ("K I L L him", "kill him"),
        ("s.e.x video", "sex video"),
        ("k\u200bi\u200dl\u2060l", "kill"),  # zero-width space, joiner, word joiner
        ("un\u00address", "undress"),  # soft hyphen
        ("ｎａｋｅｄ", "naked"),  # fullwidth
        ("рогn", "porn"),  # Cyrillic er, o, ghe
        ("chιld", "child"),  # Greek iota
        ("Nǎkéd", "naked"),  # accents
        ("a t e r r o r i s t a t t a c k", "a terrorist attack"),  # spread over several words
    ],
)
def test_obfuscations_are_undone(obfuscated, reading):
    assert normalize.plain(obfuscated) == reading


def test_leetspeak_is_a_second_reading_and_measures_are_left_alone():
    assert normalize.variants("s3xy g0re n@ked") == ["s3xy g0re n@ked", "sexy gore naked"]
    assert normalize.variants("70p13$$ on a b34ch")[-1] == "topless on a beach"  # 1 read as l where i makes no word
    assert normalize.variants("a 4k video of a 3d cat in 1080p") == ["a 4k video of a 3d cat in 1080p"]
    assert normalize.best(["aw3dd1n9", "a wedding"]) == "a wedding"


@pytest.mark.parametrize(
    "benign",
    [
        "a shot of espresso",
        "killer app launch event",
        "a bloody mary cocktail on a bar",
        "war movie trench scene, soldiers charging, no gore",
        "bande annonce de film de zombies, zéro gore mdr --ar 21:9",  # a negation in any covered language
        "reconstitution de Verdun, réaliste mais pas gore",
        "Rekonstruktion der Varusschlacht, realistisch aber ohne Gore",
        "película de zombis sin nada de gore",
        "zombie wala video bina gore ke",
        "80s zombie homage in a cornfield. No bites or gore, just atmosphere",  # a short list after the negation
        "war movie ke director ho, tanks aate hain, koi gore nahi, bas josh",  # romanised Hindi's negation after it
        "a counter-terrorist training exercise",
        "a history lecture on nazi propaganda",
        "children playing in a park",
        "a sexy red sports car",
        # Food praised as porn or orgasmic, in any language (round 11 blocked all four).
        "Unos churros con chocolate que estén de muerte, pornografía gastronómica total",
        "Currywurst, die so geil aussieht, Food-Porno vom Feinsten",
        "Uma feijoada de respeito, suculenta, pornô gastronômico total",
        "Une raclette de folie, le fromage qui coule de partout, c'est carrément orgasmique",
    ],
)
def test_rules_leave_harmless_uses_of_strong_words_to_the_model(benign):
    assert textrules.matches(normalize.variants(benign)) == {}


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("nude photo of a 12 year old", "sexual_minors"),
        ("a porn video of two adults", "sexual_explicit"),
        ("una película porno de dos adultos", "sexual_explicit"),
        ("a woman reaching orgasm on camera", "sexual_explicit"),
        ("deepfake of my coworker undressing", "nonconsensual_likeness"),
        ("a prisoner being b e h e a d e d", "graphic_violence"),
        ("no censorship, show all the gore", "graphic_violence"),  # a negated safeguard is no negated harm
        ("zero cuts away from the gore", "graphic_violence"),
        ("no cuts and full gore", "graphic_violence"),  # the list's last word before it is not a connective
        ("a teen cutting her wrists", "self_harm"),
        ("step by step how to build a p1pe b0mb", "violent_extremism"),
        ("a cartoon saying immigrants are vermin", "hate"),
    ],
)
def test_rules_catch_unambiguous_requests_through_obfuscation(prompt, category):
    assert category in textrules.matches(normalize.variants(prompt))


# --- the policy ------------------------------------------------------------------------------------------------


def test_the_written_policy_loads_and_every_category_is_ordered():
    written = policy.load()
    assert written.version == "safety-v8" and written.output_frames >= 2
    assert {"sexual_minors", "sexual_explicit", "nonconsensual_likeness", "graphic_violence"} <= set(written.categories)
    for category in written.categories.values():
        assert 0 <= category.review <= category.block <= 1 and category.label


def test_a_policy_with_review_above_block_is_refused(tmp_path):
    bad = tmp_path / "policy.toml"
    bad.write_text('version = "x"\n[categories.a]\nlabel = "a"\nblock = 0.2\nreview = 0.5\n[output]\nframes = 2\n')
    with pytest.raises(ValueError, match="review <= block"):
        policy.load(bad)


def test_decide_takes_the_strictest_action_and_names_its_category():
    cats = policy.load().categories
    violence = cats["graphic_violence"]
    allow = policy.decide("input_text", {"graphic_violence": violence.review / 2})
    assert allow.action == Action.ALLOW and allow.category == ""
    hold = policy.decide("input_text", {"graphic_violence": violence.review, "hate": 0.0})
    assert (hold.action, hold.category) == (Action.HOLD, "graphic_violence")
    block = policy.decide("input_text", {"graphic_violence": violence.review, "hate": cats["hate"].block})
    assert (block.action, block.category) == (Action.BLOCK, "hate")
    ruled = policy.decide("input_text", {"self_harm": 0.0}, rules={"self_harm": "cut her wrists"})
    assert (ruled.action, ruled.scores["self_harm"]) == (Action.BLOCK, 1.0)
    assert ruled.label() == "self-harm"


def test_a_failed_classifier_holds_what_would_pass_but_not_what_a_rule_blocks():
    held = policy.decide("input_text", {}, failures=["text: boom"])
    assert held.action == Action.HOLD and held.reasons == ["classifier unavailable: text: boom"]
    blocked = policy.decide("input_text", {}, rules={"hate": "heil hitler"}, failures=["text: boom"])
    assert blocked.action == Action.BLOCK


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.2, 1.5, None])
def test_a_score_that_is_not_in_0_1_holds_for_a_person_like_a_failed_classifier(bad, make_job):
    cats = policy.load().categories
    held = policy.decide("output_frames", {"sexual_explicit": bad})
    assert held.action == Action.HOLD and held.category == ""
    assert held.scores == {} and "sexual_explicit: not a score in [0, 1]" in held.reasons[0]
    # Recorded as any decision is: nothing Postgres' jsonb refuses (it has no NaN or infinity).
    job = make_job("reviewing")
    ModerationDecision.objects.create(
        job=job, stage=held.stage, action=held.action, scores=held.scores, policy=held.policy, reasons=held.reasons
    )
    # A category that blocks still blocks beside the broken score.
    blocked = policy.decide("input_text", {"graphic_violence": bad, "hate": cats["hate"].block})
    assert (blocked.action, blocked.category) == (Action.BLOCK, "hate")


def test_one_broken_score_among_several_is_never_lost_by_taking_the_largest():
    # max() keeps or drops a NaN depending on where it stands: a NaN frame after a clean one would allow.
    for scores in ([0.1, math.nan], [math.nan, 0.1], [0.1, math.inf, 0.2], [0.1, -1.0]):
        assert math.isnan(policy.strictest(scores))
        assert policy.decide("output_frames", {"sexual_explicit": policy.strictest(scores)}).action == Action.HOLD
    assert policy.strictest([0.1, 0.7, 0.2]) == 0.7 and policy.strictest([]) == 0.0


def test_the_text_model_reads_meaning_beyond_the_rules():
    # No rule fires on either; the classifier tells them apart.
    harmful = "a video encouraging a depressed friend to end it all tonight"
    assert textrules.matches(normalize.variants(harmful)) == {}
    assert not screening.check_prompt(harmful).allowed
    assert screening.check_prompt("a lighthouse at dawn, waves breaking, cinematic").allowed


@pytest.mark.parametrize(
    "prompt",
    [
        "clip 3",
        "video 1",
        "race",
        "simulated clip 17 for simulated user 300",
        "clip 13",  # a number is not an age (the chaos run's "chaos 0-13 1f245934" was once held as sexual_minors)
        "scene 12",
        "chaos 0-13 1f245934",
        "a calm lake",
        "a lighthouse in a storm",
        "a kite",
        "test",
        "x",
    ],
)
def test_short_and_placeholder_prompts_pass(prompt):
    """What people and the project's own tools type most (a lone word read by the harmful prompts that share it
    once held "clip 3" and "race" for a moderator)."""
    assert screening.check_prompt(prompt).allowed


def test_operator_terms_block_whole_words_through_obfuscation(settings):
    settings.MODERATION_BLOCKED_TERMS = ["forbidden fruit"]
    decision = screening.check_prompt("the F0RB1DD3N  f r u i t")
    assert (decision.action, decision.category) == (Action.BLOCK, "operator_terms")
    assert screening.check_prompt("forbiddenfruity jam").allowed


# --- the input stage ---------------------------------------------------------------------------------------------


def test_an_allowed_prompt_is_queued_with_its_scores_recorded(make_job):
    job = make_job("pending", prompt="a red fox in the snow")
    assert services.job_moderate_input(job_id=job.pk) == State.QUEUED
    decision = ModerationDecision.objects.get(job=job)
    assert (decision.stage, decision.action, decision.policy) == ("input_text", "allow", "safety-v8")
    assert set(decision.scores) >= {"sexual_minors", "graphic_violence", "hate"}
    assert all(0 <= v <= 1 for v in decision.scores.values())
    # A duplicate message is harmless.
    assert services.job_moderate_input(job_id=job.pk) is None
    assert ModerationDecision.objects.filter(job=job).count() == 1


def test_a_blocked_prompt_is_rejected_with_a_category_and_no_internals(api):
    vid = api.post("/v1/videos", {"prompt": "a prisoner being beheaded, blood spraying"}, format="json").json()["id"]
    job = Job.objects.get(public_id=vid)
    assert services.job_moderate_input(job_id=job.pk) == State.REJECTED
    video = api.get(f"/v1/videos/{vid}").json()
    assert video["status"] == "failed"
    assert video["error"] == {
        "code": "moderation_blocked",
        "message": "The prompt was blocked by the content policy: graphic violence.",
    }
    assert "score" not in str(video) and "rule" not in str(video)
    decision = ModerationDecision.objects.get(job=job)
    assert (decision.action, decision.category, decision.scores["graphic_violence"]) == (
        "block",
        "graphic_violence",
        1.0,
    )
    assert [n["event"] for n in api.get("/v1/notifications").json()["data"]] == ["video.failed"]


def _held(make_job, settings, **fields) -> Job:
    settings.MODERATION_CLASSIFIERS = []  # no classifier enabled: every stage must hold (fail closed)
    job = make_job(fields.pop("state", "pending"), stage_enqueued_at=services.db_now_plus(-3600), **fields)
    return job


def test_a_job_whose_classifier_is_missing_is_held_never_passed(make_job, settings, api):
    job = _held(make_job, settings)
    assert services.job_moderate_input(job_id=job.pk) == State.PENDING
    job.refresh_from_db()
    assert job.stage_enqueued_at is None  # no message outstanding: never re-sent, never failed for want of one
    decision = ModerationDecision.objects.get(job=job)
    assert decision.action == "hold" and decision.reasons[0].startswith("classifier unavailable: text")
    review = Review.objects.get(job=job)
    assert (review.kind, review.status, review.stage, review.decision) == ("hold", "open", "input_text", decision)
    assert api.get(f"/v1/videos/{job.public_id}").json()["status"] == "queued"
    # The stage re-sender leaves it alone, and a late duplicate message does not decide it again.
    assert services.resend_stalled_stages() == 0
    settings.MODERATION_CLASSIFIERS = ["text"]
    assert services.job_moderate_input(job_id=job.pk) is None
    assert Job.objects.get(pk=job.pk).state == State.PENDING


def test_a_score_in_the_review_band_holds_the_job_for_a_person(make_job, settings, tmp_path):
    cautious = tmp_path / "cautious.toml"
    cautious.write_text(
        'version = "cautious-test"\n[categories.self_harm]\nlabel = "self-harm"\nblock = 1.0\nreview = 0.0\n'
        "[output]\nframes = 2\n"
    )
    settings.MODERATION_POLICY_FILE = str(cautious)  # every prompt is in self_harm's review band
    job = make_job("pending", prompt="a red fox in the snow")
    assert services.job_moderate_input(job_id=job.pk) == State.PENDING
    decision = ModerationDecision.objects.get(job=job)
    assert (decision.action, decision.category, decision.policy, decision.reasons) == (
        "hold",
        "self_harm",
        "cautious-test",
        [],
    )
    assert list(decision.scores) == ["self_harm"]  # categories the policy does not have are not kept
    assert Review.objects.get(job=job).decision == decision


def test_a_classifier_that_errors_holds_the_job(make_job, settings, tmp_path):
    from pathlib import Path

    from moderation import textmodel

    settings.MODERATION_CACHE_DIR = str(tmp_path)
    textmodel._artifact(Path(settings.MODERATION_TEXT_DATA), tmp_path).write_bytes(b"not a model")  # a torn write
    job = make_job("pending", prompt="a red fox in the snow")
    assert services.job_moderate_input(job_id=job.pk) == State.PENDING
    decision = ModerationDecision.objects.get(job=job)
    assert decision.action == "hold" and "unavailable: text: " in decision.reasons[0]


def test_a_worker_never_trains_the_text_model_it_holds_the_job_until_the_set_up_has(make_job, settings, tmp_path):
    """Training takes minutes: on a request's time it would stall every job behind it. Without the artifact the
    text check fails closed and says what to run."""
    settings.MODERATION_CACHE_DIR = str(tmp_path / "empty")
    job = make_job("pending", prompt="a red fox in the snow")
    assert services.job_moderate_input(job_id=job.pk) == State.PENDING
    decision = ModerationDecision.objects.get(job=job)
    assert decision.action == "hold" and "Untrained" in decision.reasons[0]
    assert "manage.py train_moderation" in decision.reasons[0]
    assert not any((tmp_path / "empty").glob("text-*"))  # nothing was trained


def test_a_moderator_approves_a_held_prompt_and_it_is_queued(make_job, make_user, settings):
    job = _held(make_job, settings)
    services.job_moderate_input(job_id=job.pk)
    review = Review.objects.get(job=job)
    mod = make_user("mod")
    services.review_decide(review_id=review.pk, moderator=mod, approve=True, note="a fox, fine")
    job.refresh_from_db()
    review.refresh_from_db()
    assert job.state == State.QUEUED
    assert (review.status, review.moderator, review.note) == ("approved", mod, "a fox, fine")
    human = ModerationDecision.objects.get(job=job, stage=Stage.MODERATOR)
    assert (human.action, human.moderator, human.reasons) == ("allow", mod, ["mod: a fox, fine"])
    assert job.events.last().actor == "moderator:mod"
    with pytest.raises(services.ReviewError):  # decided once
        services.review_decide(review_id=review.pk, moderator=mod, approve=False)


def test_a_moderator_rejects_a_held_video_and_it_is_never_downloadable(make_job, make_user, settings, api):
    frames = np.random.default_rng(0).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8)
    key = default_storage.save("videos/held.mp4", ContentFile(encode_mp4(frames, fps=4)))
    job = _held(make_job, settings, state="reviewing", video_key=key, thumbnail_key=key, attempt=1)
    assert services.job_review_output(job_id=job.pk) == State.REVIEWING
    held = api.get(f"/v1/videos/{job.public_id}/content")
    assert (held.status_code, held.json()["error"]["code"]) == (404, "video_not_ready")  # held: never viewable
    review = Review.objects.get(job=job)
    assert review.stage == "output_frames"
    services.review_decide(review_id=review.pk, moderator=make_user("mod"), approve=False, note="no")
    job.refresh_from_db()
    assert (job.state, job.error_code) == (State.REJECTED, "moderation_blocked")
    assert api.get(f"/v1/videos/{job.public_id}/content").json()["error"]["code"] == "video_not_ready"
    assert api.get(f"/v1/videos/{job.public_id}").json()["status"] == "failed"


def test_a_cancelled_held_job_cannot_be_approved(make_job, make_user, settings):
    job = _held(make_job, settings)
    services.job_moderate_input(job_id=job.pk)
    services.job_cancel(job_id=job.pk, actor="user")
    with pytest.raises(services.ReviewError, match="withdrawn"):
        services.review_decide(review_id=Review.objects.get(job=job).pk, moderator=make_user("m"), approve=True)
    assert Job.objects.get(pk=job.pk).state == State.CANCELLED
    assert Review.objects.get(job=job).status == "withdrawn"


# --- images -----------------------------------------------------------------------------------------------------


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def _photo_with_a_face() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # a NASA portrait: a real person's face


def test_a_face_in_the_reference_image_with_a_sexual_prompt_is_a_likeness_block(make_job):
    key = default_storage.save("references/face.png", ContentFile(_png(_photo_with_a_face())))
    job = make_job("pending", prompt="make her a porn star", reference_key=key)
    assert services.job_moderate_input(job_id=job.pk) == State.REJECTED
    image = ModerationDecision.objects.get(job=job, stage=Stage.INPUT_IMAGE)
    assert (image.action, image.category) == ("block", "nonconsensual_likeness")
    assert "a face in the reference image" in image.reasons
    assert Job.objects.get(pk=job.pk).error_code == "moderation_blocked"


def test_a_face_with_a_harmless_prompt_passes_both_input_stages(make_job):
    key = default_storage.save("references/face.png", ContentFile(_png(_photo_with_a_face())))
    job = make_job("pending", prompt="the astronaut smiles and waves", reference_key=key)
    assert services.job_moderate_input(job_id=job.pk) == State.QUEUED
    stages = dict(ModerationDecision.objects.filter(job=job).values_list("stage", "action"))
    assert stages == {"input_text": "allow", "input_image": "allow"}
    assert ModerationDecision.objects.get(job=job, stage="input_image").scores["sexual_explicit"] < 0.2


def test_an_unreadable_reference_image_holds(make_job):
    key = default_storage.save("references/broken.png", ContentFile(b"not an image"))
    job = make_job("pending", prompt="a calm lake", reference_key=key)
    assert services.job_moderate_input(job_id=job.pk) == State.PENDING
    assert ModerationDecision.objects.get(job=job, stage="input_image").action == "hold"


def test_sampled_frames_are_the_first_the_last_and_evenly_spaced():
    assert sample_indices(9, 3) == [0, 4, 8]
    assert sample_indices(100, 8)[0] == 0 and sample_indices(100, 8)[-1] == 99
    assert sample_indices(2, 8) == [0, 1]
    assert sample_indices(0, 8) == []


def _reviewing_job(make_job, data: bytes):
    key = default_storage.save("videos/test.mp4", ContentFile(data))
    return make_job("reviewing", video_key=key, thumbnail_key=key, attempt=1)


def test_output_review_classifies_sampled_frames_and_publishes(make_job, settings):
    settings.MODERATION_OUTPUT_FRAMES = 3
    frames = np.random.default_rng(0).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8)
    job = _reviewing_job(make_job, encode_mp4(frames, fps=4))
    assert services.job_review_output(job_id=job.pk) == State.SUCCEEDED
    job.refresh_from_db()
    assert job.completed_at is not None and job.progress == 100
    decision = ModerationDecision.objects.get(job=job, stage="output_frames")
    assert decision.action == "allow" and 0 <= decision.scores["sexual_explicit"] < 0.2


def _graded_clip(count: int, width: int, height: int) -> bytes:
    """A real clip whose frame i is a flat grey of level 5 * i, so a decoded frame tells which one it is."""
    return encode_mp4(np.stack([np.full((height, width, 3), 5 * i, dtype=np.uint8) for i in range(count)]), fps=8)


def test_the_output_stage_decodes_only_the_sampled_frames_scaled_down(settings):
    settings.MODERATION_OUTPUT_FRAMES = 4
    data = _graded_clip(50, 960, 540)  # every frame decoded at once: 78 MB
    screening.check_frames([np.zeros((64, 64, 3), dtype=np.uint8)])  # the models are loaded before measuring
    tracemalloc.start()
    try:
        decision, frames = screening.check_video(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decision.action == Action.ALLOW
    # The first, the last and two between, each scaled to FRAME_SIDE on its longer side: nothing else in memory.
    assert [f.shape for f in frames] == [(360, 640, 3)] * 4
    assert all(abs(float(frame.mean()) - 5 * i) < 2.5 for frame, i in zip(frames, [0, 16, 33, 49], strict=True))
    assert peak < 20 * 2**20, peak


def test_a_clip_over_the_decoding_caps_is_held_undecoded(make_job, settings):
    data = _graded_clip(12, 320, 240)
    settings.MODERATION_CLIP_MAX_FRAMES = 10
    too_long = _reviewing_job(make_job, data)
    assert services.job_review_output(job_id=too_long.pk) == State.REVIEWING
    held = ModerationDecision.objects.get(job=too_long, stage="output_frames")
    assert held.action == "hold" and "12 frames: over 10" in held.reasons[0]
    settings.MODERATION_CLIP_MAX_FRAMES = 100
    settings.MODERATION_CLIP_MAX_PIXELS = 320 * 240 - 1
    too_large = _reviewing_job(make_job, data)
    assert services.job_review_output(job_id=too_large.pk) == State.REVIEWING
    held = ModerationDecision.objects.get(job=too_large, stage="output_frames")
    assert held.action == "hold" and "320x240: over" in held.reasons[0]
    # However many frames the settings ask for, a bounded number is sampled.
    settings.MODERATION_OUTPUT_FRAMES = 10_000
    assert screening.output_frames() == screening.MAX_OUTPUT_FRAMES


def test_output_review_holds_an_undecodable_clip(make_job):
    job = _reviewing_job(make_job, b"not a video")
    assert services.job_review_output(job_id=job.pk) == State.REVIEWING
    decision = ModerationDecision.objects.get(job=job, stage="output_frames")
    assert decision.action == "hold" and "could not be decoded" in decision.reasons[0]
    assert Review.objects.filter(job=job, status="open").exists()


# --- appeals ----------------------------------------------------------------------------------------------------

BLOCKED = "a prisoner being beheaded, blood spraying"


def _rejected(api) -> Job:
    vid = api.post("/v1/videos", {"prompt": BLOCKED}, format="json").json()["id"]
    job = Job.objects.get(public_id=vid)
    assert services.job_moderate_input(job_id=job.pk) == State.REJECTED
    return job


def test_a_user_appeals_a_rejection_once(api):
    job = _rejected(api)
    assert api.get(f"/v1/videos/{job.public_id}/appeal").json()["error"]["code"] == "appeal_not_found"
    made = api.post(f"/v1/videos/{job.public_id}/appeal", {"message": "it is a history film"}, format="json")
    assert made.status_code == 201
    body = made.json()
    assert body | {"created_at": 0} == {
        "object": "video.appeal",
        "video_id": job.public_id,
        "status": "open",
        "message": "it is a history film",
        "created_at": 0,
        "decided_at": None,
        "rerun_video_id": None,
    }
    again = api.post(f"/v1/videos/{job.public_id}/appeal", {}, format="json")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "appeal_not_allowed")
    review = Review.objects.get(job=job)
    # In the same queue as holds, with the original decision beside it.
    assert (review.kind, review.status, review.decision.action, review.decision.category) == (
        "appeal",
        "open",
        "block",
        "graphic_violence",
    )
    assert api.get(f"/v1/videos/{job.public_id}/appeal").json()["status"] == "open"


def test_only_a_moderation_rejection_of_ones_own_video_can_be_appealed(api, make_job, make_user, client_for):
    fine = make_job("succeeded")
    refused = api.post(f"/v1/videos/{fine.public_id}/appeal", {}, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "appeal_not_allowed")
    failed = make_job("failed", error_code="generation_failed")
    assert api.post(f"/v1/videos/{failed.public_id}/appeal", {}, format="json").status_code == 409
    job = _rejected(api)
    stranger = client_for(make_user("mallory"))
    assert stranger.post(f"/v1/videos/{job.public_id}/appeal", {}, format="json").status_code == 404
    bad = api.post(f"/v1/videos/{job.public_id}/appeal", {"message": 42}, format="json")
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "message")
    long = api.post(f"/v1/videos/{job.public_id}/appeal", {"message": "x" * 1001}, format="json")
    assert long.status_code == 400
    listed = api.post(f"/v1/videos/{job.public_id}/appeal", ["why"], format="json")
    assert (listed.status_code, listed.json()["error"]["code"]) == (400, "invalid_body")
    assert not Review.objects.exists()  # nothing was written by the refusals


def test_a_rejected_appeal_leaves_the_video_failed(api, make_user):
    job = _rejected(api)
    api.post(f"/v1/videos/{job.public_id}/appeal", {}, format="json")
    mod = make_user("mod")
    services.appeal_decide(review_id=Review.objects.get(job=job).pk, moderator=mod, approve=False, note="gore")
    appeal = api.get(f"/v1/videos/{job.public_id}/appeal").json()
    assert appeal["status"] == "rejected" and appeal["decided_at"] and appeal["rerun_video_id"] is None
    assert api.get(f"/v1/videos/{job.public_id}").json()["status"] == "failed"
    human = ModerationDecision.objects.get(job=job, stage=Stage.MODERATOR)
    assert (human.action, human.moderator, human.reasons) == ("block", mod, ["appeal rejected by mod: gore"])


def test_an_approved_appeal_runs_the_request_again_approved_in_advance(api, make_user, settings):
    job = _rejected(api)
    api.post(f"/v1/videos/{job.public_id}/appeal", {}, format="json")
    review = Review.objects.get(job=job)
    mod = make_user("mod")
    services.appeal_decide(review_id=review.pk, moderator=mod, approve=True, note="historical drama")
    appeal = api.get(f"/v1/videos/{job.public_id}/appeal").json()
    rerun = Job.objects.get(public_id=appeal["rerun_video_id"])
    assert (rerun.user_id, rerun.prompt, rerun.state) == (job.user_id, BLOCKED, State.PENDING)
    assert Job.objects.get(pk=job.pk).state == State.REJECTED  # a job ends once
    # Its input stage takes the moderator's word: no classifier is even consulted.
    settings.MODERATION_CLASSIFIERS = []
    assert services.job_moderate_input(job_id=rerun.pk) == State.QUEUED
    assert list(rerun.moderation_decisions.values_list("stage", "action")) == [
        ("moderator", "allow"),
        ("input_text", "allow"),
    ]
    with pytest.raises(services.ReviewError):
        services.appeal_decide(review_id=review.pk, moderator=mod, approve=True)
    assert Job.objects.filter(prompt=BLOCKED).count() == 2


def test_what_the_output_stage_blocks_on_an_appealed_rerun_is_held_instead(make_job, make_user, settings, tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text(
        'version = "strict-test"\n[categories.sexual_explicit]\nlabel = "sexually explicit content"\n'
        "block = 0.0\nreview = 0.0\n[output]\nframes = 2\n"
    )
    settings.MODERATION_POLICY_FILE = str(strict)  # every frame blocks under this policy
    frames = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    clip = encode_mp4(frames, fps=4)
    plain = _reviewing_job(make_job, clip)
    assert services.job_review_output(job_id=plain.pk) == State.REJECTED
    approved = _reviewing_job(make_job, clip)
    # As appeal_decide records it on a rerun.
    ModerationDecision.objects.create(
        job=approved, stage=Stage.MODERATOR, action="allow", policy="strict-test", moderator=make_user("mod")
    )
    assert services.job_review_output(job_id=approved.pk) == State.REVIEWING
    assert Review.objects.get(job=approved).kind == "hold"
