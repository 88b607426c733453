"""Undo the obfuscations people use to slip a prompt past a filter, before any rule or model reads it.

Pure functions. `variants(text)` gives the readings a prompt is judged by: the plain reading (Unicode
compatibility forms folded, invisible characters and combining marks removed, homoglyphs mapped to the Latin
letters they imitate, case folded, letters spread out with spaces or punctuation joined back) and, when the
prompt mixes digits or symbols into words, the de-leeted reading too (`s3xy` -> `sexy`, `g0re` -> `gore`).
A prompt is judged by the worst of its readings, so the de-leeted one is only added, never substituted: `4k`
or `3d` in a benign prompt still has its plain reading.

Prompts in other scripts are read as they are written: a Russian, Arabic, Hindi, Chinese or Japanese prompt
keeps its letters and their marks (a vowel sign, a dakuten), and look-alikes are folded to Latin only where
they imitate it: everywhere in a prompt written mostly in Latin letters, and in words that mix Latin with another
script ("пud3") in any prompt.

Homoglyphs come from Unicode's confusables table as the `confusable-homoglyphs` package ships it (Cyrillic,
Greek, mathematical and other look-alikes of Latin letters), and words run together by de-spacing are split
back with `wordsegment`'s English word frequencies.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import wordsegment
from confusable_homoglyphs import confusables

# Characters that render as nothing (or almost) but split a word for a naive matcher: Unicode's format
# characters (zero-width space and joiners, word joiner, BOM, soft hyphen, bidi controls) are removed by
# category; these are the non-format ones used the same way.
_INVISIBLE_EXTRA = "\u115f\u1160\u3164\uffa0\u034f\u180e"

# A word spelled out with one character between letters: "k i l l", "s.e.x", "k-i-l-l", "n_a_k_e_d".
# Latin letters and digits only: single letters between spaces are ordinary in Chinese, Japanese or Russian.
_SPREAD = re.compile(r"(?<![\w])(?:[a-z0-9][ .\-_*+|/\\~'`^,:]{1,2}){2,}[a-z0-9](?![\w])")
_SPREAD_SEPARATORS = re.compile(r"[ .\-_*+|/\\~'`^,:]")
# The same in other scripts: three or more single letters (each with its marks: a Devanagari virama or vowel sign,
# Arabic vowels) standing alone between spaces ("分 尸 视 频", "ت ق ط ي ع") are one spread-out run. Words of
# two letters ("हम तो घर", "вы и я") are words, not a run.
_LETTER = r"[^\x00-\x7f\s][\u0300-\u036f\u064b-\u065f\u0670\u0900-\u0903\u093a-\u094f\u0951-\u0957\u0962\u0963]?"
_SPREAD_OTHER = re.compile(rf"(?<!\S)(?:{_LETTER} ){{2,}}{_LETTER}(?!\S)")
# Chinese and Japanese put no space between words, so a space between two of their characters only splits a word
# for a matcher ("飞 机撞塔", "せ っくす"); Korean spaces its words and is left alone.
_CJK = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}]) +(?=[{_CJK}])")

# Leetspeak: a digit or symbol standing for a letter, only inside a word that has letters in it.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "£": "l"})  # fmt: skip
_LEET_WORD = re.compile(
    r"[\w@$!|+€£]*[a-z][\w@$!|+€£]*[0-9@$!|+€£][\w@$!|+€£]*|[\w@$!|+€£]*[0-9@$!|+€£][\w@$!|+€£]*[a-z][\w@$!|+€£]*"
)
_SPACES = re.compile(r"\s+")


# Look-alikes the confusables table maps to another non-Latin character or not at all, as they appear in
# obfuscated prompts: Cyrillic pe and Greek epsilon read as n and e.
_HOMOGLYPHS_EXTRA = {"п": "n", "ε": "e", "є": "e", "ɛ": "e", "η": "n", "ν": "v", "τ": "t", "κ": "k", "ρ": "p", "χ": "x",
                     "к": "k", "м": "m", "н": "h", "т": "t", "в": "b", "г": "r", "ь": "b"}  # fmt: skip


_SIGMAS = str.maketrans({"ϲ": "c", "ς": "c", "Ϲ": "c"})


@functools.cache
def _homoglyphs() -> dict[int, str]:
    """Each non-ASCII character the confusables table says looks like a Latin letter (following the table from
    look-alike to look-alike until it reaches one), mapped to that letter in lower case."""
    data = confusables.confusables_data
    table: dict[int, str] = {}
    for char in data:
        if len(char) != 1 or char.isascii():
            continue
        seen, glyph = {char}, char
        while not glyph.isascii() and glyph in data and len(data[glyph][0]["c"]) == 1:
            glyph = data[glyph][0]["c"]
            if glyph in seen:
                break
            seen.add(glyph)
        if glyph.isascii() and glyph.isalpha():
            table[ord(char)] = glyph.lower()
    table.update({ord(k): v for k, v in _HOMOGLYPHS_EXTRA.items()})
    return table


# Arabic's short-vowel marks and its stretching stroke (tatweel) are optional in writing, and so a way to break
# a word for a matcher: dropped. Persian kaf and yeh read as the Arabic letters they look like.
_ARABIC_OPTIONAL = frozenset(chr(c) for c in [*range(0x064B, 0x0660), 0x0670, 0x0640])
_ARABIC_FOLD = str.maketrans({"ک": "ك", "ی": "ي"})


@functools.lru_cache(maxsize=8192)
def script(ch: str) -> str:
    """A letter's script as the first word of its Unicode name (LATIN, CYRILLIC, CJK, HIRAGANA, DEVANAGARI...);
    empty for a character that is not a letter."""
    if not ch.isalpha():
        return ""
    return unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]


def visible(text: str) -> str:
    """Compatibility forms folded, invisible characters removed, and accents dropped from Latin letters."""
    # NFKD splits accents and compatibility forms (fullwidth, ligatures, circled letters) into base characters.
    # A combining mark is dropped only on a Latin letter (an accent, or "Zalgo" stacked on it) or on nothing:
    # in other scripts it is part of the letter (Devanagari vowel signs, Japanese dakuten, Cyrillic short i).
    out: list[str] = []
    base = "LATIN"
    for ch in unicodedata.normalize("NFKD", text):
        category = unicodedata.category(ch)
        if ch in _INVISIBLE_EXTRA or (category in ("Cf", "Cc") and ch not in "\n\t"):
            continue
        if ch in _ARABIC_OPTIONAL:
            continue
        if category in ("Mn", "Me"):
            if base == "LATIN":
                continue
        else:
            base = script(ch) or "LATIN"
        out.append(ch)
    return unicodedata.normalize("NFKC", "".join(out)).translate(_ARABIC_FOLD)


def latin_share(text: str) -> float:
    """The share of a text's letters that are Latin (1.0 for a text without letters)."""
    letters = [script(ch) for ch in text if ch.isalpha()]
    return sum(s == "LATIN" for s in letters) / len(letters) if letters else 1.0


_WORD = re.compile(r"\S+")


# Latin letters that imitate Cyrillic ones, as they are mixed into Russian words to slip past a filter.
_LATIN_TO_CYRILLIC = str.maketrans("aceopxykmhtb", "асеорхукмнтв")


def _fold(text: str) -> str:
    """Look-alikes mapped to the letters they imitate: to Latin in the whole text when it is written mostly in
    Latin letters; otherwise only in the words that mix Latin with another script, to Cyrillic in a Cyrillic
    text ("Пopнo", Latin o and p in a Russian word) and to Latin in any other."""
    table = _homoglyphs()
    if latin_share(text) >= 0.5:
        return text.translate(table)
    letters = [script(ch) for ch in text if ch.isalpha()]
    cyrillic = letters.count("CYRILLIC") > len(letters) / 2

    def word(m: re.Match[str]) -> str:
        scripts = {script(ch) for ch in m.group() if ch.isalpha()}
        if "LATIN" not in scripts or len(scripts) == 1:
            return m.group()
        as_cyrillic = m.group().translate(_LATIN_TO_CYRILLIC)
        if cyrillic and scripts == {"LATIN", "CYRILLIC"} and not any(script(ch) == "LATIN" for ch in as_cyrillic):
            return as_cyrillic  # every Latin letter in it has a Cyrillic twin
        return m.group().translate(table)

    return _WORD.sub(word, text)


@functools.cache
def _words() -> dict[str, float]:
    wordsegment.load()  # English unigram counts, shipped in the package: about a second, once per process
    return wordsegment.UNIGRAMS


# A word this frequent in wordsegment's counts (Google's web corpus) is a word, not a fragment ("lv", "es").
_COMMON = 200_000
_SHORT = {"a", "i", "an", "of", "to", "in", "on", "at", "my", "is", "me", "he", "we", "by", "up", "do", "go", "no"}
_MEASURE = re.compile(r"\d+[a-z]{1,2}|[a-z]{1,2}\d+")


def _segment(letters: str) -> str:
    """Letters that lost their spaces ("aterroristattack") split back into words, by English word frequencies."""
    if not letters.isalpha() or letters in _words():
        return letters
    return " ".join(wordsegment.segment(letters))


def _join_spread(text: str) -> str:
    # A spread-out run often spans several words ("a t e r r o r i s t a t t a c k"): join, then re-split (by
    # English word frequencies; other scripts stay joined: Chinese and Japanese have no spaces anyway).
    text = _SPREAD.sub(lambda m: _segment(_SPREAD_SEPARATORS.sub("", m.group())), text)
    text = _SPREAD_OTHER.sub(lambda m: m.group().replace(" ", ""), text)
    return _CJK_SPACE.sub("", text)


def plain(text: str) -> str:
    """The prompt as a reader sees it: look-alikes folded, invisible characters gone, lower case, spread-out
    words joined, whitespace collapsed."""
    # Case folding would turn a lunate or final sigma (read as c) into sigma (read as o): map those first.
    folded = _fold(visible(text).translate(_SIGMAS).casefold())
    return _SPACES.sub(" ", _join_spread(folded)).strip()


def _common(word: str) -> bool:
    return _words().get(word, 0) >= _COMMON


def _unleet(token: str) -> str:
    """One word's leetspeak undone: 1 and | read as i or l, whichever makes a common word (`k1ll`, `70p13$$`),
    or several (`pr0nv1d30` -> porn video). A token that reads as no words is left as it is: an id, a hash, a
    code (`fe1aca70`) is not leetspeak, and splitting it would invent words."""
    if _MEASURE.fullmatch(token):
        return token  # a measure or a format, not a word: 4k, 3d, 1080p, mp4, 90s
    readings = [token.translate(_LEET | str.maketrans({"1": one, "|": one})) for one in "il"]
    for reading in readings:
        if _common(reading):
            return reading
    for reading in readings:
        parts = wordsegment.segment(reading) if reading.isalpha() else []
        if 1 < len(parts) <= 3 and all(len(part) >= 4 and _common(part) for part in parts):
            return " ".join(parts)
    return token


def deleet(text: str) -> str:
    """Leetspeak undone in the words that mix letters with digits or symbols (`n@ked`, `k1ll`, `pr0n`)."""
    return _SPACES.sub(" ", _LEET_WORD.sub(lambda m: _unleet(m.group()), text)).strip()


def variants(text: str) -> list[str]:
    """The readings a prompt is judged by: its plain reading, and its de-leeted one when that differs."""
    first = plain(text)
    second = deleet(first)
    return [first] if second == first else [first, second]


_TOKEN = re.compile(r"[^\W_]+|[$@!|+€£]+")


def best(readings: list[str]) -> str:
    """The reading that reads most like English, for a model that reads one (the rules read them all): the
    largest share of dictionary words, then the fewest words (a de-leeted reading splits less)."""

    def score(reading: str) -> tuple[float, int]:
        tokens = _TOKEN.findall(reading)
        known = sum(token in _words() for token in tokens)
        return known / max(1, len(tokens)), -len(tokens)

    return max(readings, key=score)
