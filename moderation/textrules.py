"""The rules layer of the text policy: phrases that leave no doubt, matched on a prompt's normalised readings
(moderation.normalize), whatever the model says.

Pure functions. Rules are for precision: each pattern names its category unambiguously in any context, or
needs two parts together (a minor and a sexual term). Words that are harmless alone ("kill", "shot", "blood",
"naked eye", "a killer app") are left to the classifier, which reads them in context.
"""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from moderation import normalize

_MINOR = (
    r"(?:child|children|kid|kids|minor|minors|underage|under-age|preteen|pre-teen|toddler|infant|baby|babies"
    r"|schoolgirl|schoolboy|little (?:girl|boy)|young (?:girl|boy)|(?:1[0-7]|[1-9]) ?(?:yo|y/o|years? old|-year-old)"
    r"|teen|teens|teenage|teenager|juvenile|daughter|niece|nephew|pupil|middle school\w*|elementary school\w*)"
)
_SEXUAL = (
    r"(?:sex|sexual|sexually|sexy|nude|nudes|naked|undress(?:ed|ing)?|topless|porn\w*|erotic\w*|lingerie"
    r"|seductive\w*|striptease|stripping|explicit|molest\w*|rape\w*|intercourse|fondl\w*|aroused|nsfw)"
)

_FOOD = r"(?:food|gastronom\w*|culinar\w*|alimentai\w*)"

RULES: dict[str, tuple[str, ...]] = {
    "sexual_minors": (
        r"\bcsam\b",
        r"\bchild (?:porn\w*|sexual abuse|sex abuse|exploitation material)\b",
        # Not "pedo" or "loli" alone: a Spanish word and a Spanish nickname.
        r"\b(?:kiddie(?! pool)|kiddy(?! pool)|jailbait|pa?edo ?phil\w*|pedobear|lolicon|shotacon"
        r"|loli (?:hentai|porn\w*|nude\w*|lewd\w*))\b",
        rf"\b{_MINOR}\b.{{0,60}}\b{_SEXUAL}\b",
        rf"\b{_SEXUAL}\b.{{0,60}}\b{_MINOR}\b",
    ),
    "sexual_explicit": (
        # Not "food porn" in any language ("pornografía gastronómica", "Food-Porno", "pornô gastronômico").
        rf"(?<!food )(?<!food-)(?<!ruin )(?<!earth )(?<!cabin )\bporn\w*\b(?![ -]{_FOOD})",
        r"\bxxx\b(?!-hot)",
        r"\bhentai\b",
        r"\b(?:hardcore|explicit|graphic) (?:sex|sexual|nudity|porn)\w*\b",
        r"\b(?:having|have|has) sex\b",
        r"\bsex (?:scene|tape|video|act|acts)\b",
        # "orgasm", not "orgasmic": cheese and desserts are called that ("une raclette orgasmique").
        r"\b(?:blowjob|handjob|cumshot|orgasm(?:s|ing)?|masturbat\w*|gangbang|creampie|deepthroat\w*)\b",
        r"\bstriptease\b",
        r"\b(?:fully )?(?:nude|naked) (?:woman|women|man|men|girl|boy|body|bodies|model|couple|people)\b.{0,40}"
        r"\b(?:spread|pos\w*|touch\w*|strip\w*|sensual\w*|aroused)\b",
    ),
    "nonconsensual_likeness": (
        r"\b(?:deepfake|deep fake|face ?swap\w*)\b.{0,80}\b(?:nude|naked|sex\w*|undress\w*|porn\w*|strip\w*)\b",
        r"\b(?:nude|naked|sex\w*|undress\w*|porn\w*|strip\w*)\b.{0,80}\b(?:deepfake|deep fake|face ?swap\w*)\b",
        r"\b(?:my|our) (?:ex|ex-girlfriend|ex-boyfriend|ex-wife|ex-husband|coworker|co-worker|colleague|boss"
        r"|neighbou?r|classmate|teacher|roommate|stepsister|sister-in-law)\b.{0,60}\b(?:nude|naked|undress\w*|sex\w*"
        r"|porn\w*|strip\w*)\b",
        r"\b(?:undress|unclothe|strip)\w* (?:her|him|them) (?:from|in) (?:this|the|my) (?:photo|picture|image|pic)\b",
    ),
    "graphic_violence": (
        # Negatable (NEGATABLE): "no gore", "zero gore", "ohne Gore" are directions against it; so are these, right
        # before it (not in the floor's list, where "not only", "pas seulement" would excuse a sexual word), and
        # romanised Hindi's "bina".
        r"\b(?<!non-)(?<!non )(?<!not )(?<!pas )(?<!pas de )(?<!kein )(?<!nada de )(?<!bina )"
        r"(?:behead\w*|decapitat\w*|dismember\w*|disembowel\w*"
        r"|eviscerat\w*|mutilat\w*|flay(?:ed|ing)|gory|gore)\b",
        r"\b(?:torture|torturing|tortured)\b.{0,60}\b(?:blood\w*|scream\w*|victim|prisoner|body|flesh|until)\b",
        r"\b(?:guts|entrails|intestines|brains?) (?:spill\w*|splatter\w*|hanging|ripped|torn|pulled)\b",
        r"\b(?:blood|brains?) (?:spray\w*|splatter\w*|gush\w*|spurt\w*)\b",
        r"\b(?:snuff film|snuff video)\b",
    ),
    "self_harm": (
        r"\b(?:cut\w*|slit\w*|slash\w*) (?:my|his|her|their|your|own) (?:wrists?|arms?|thighs?)\b",
        r"\b(?:kill|hang|hanging|shoot|shooting|drown\w*|starv\w*|harm\w*|hurt\w*) (?:yourself|myself|himself|herself"
        r"|themselves|yourselves)\b",
        r"(?<!recovering from )(?<!about )\bself[- ]?harm\w*\b(?! (?:awareness|prevention|recovery|support|helpline))",
        r"\bsuicid\w*\b.{0,60}\b(?:how to|method\w*|encourag\w*|glorif\w*|should|pills|note|tutorial|jump\w*"
        r"|hang\w*)\b",
        r"\b(?:how to|ways to|encourag\w*|glorif\w*)\b.{0,40}\bsuicid\w*\b",
        r"\b(?:pro-?ana|thinspo\w*)\b",
    ),
    "hate": (
        r"\b(?:heil hitler|sieg heil)\b",
        r"\bgas the (?:jews|muslims|blacks|gays|immigrants|refugees|arabs|roma|gypsies)\b",
        r"\b(?:jews|jewish people|muslims|blacks|black people|gays|gay people|immigrants|refugees|mexicans|asians"
        r"|arabs|trans people|women|christians|hindus|roma|gypsies)\b.{0,40}\b(?:are|as) (?:vermin|rats|subhuman"
        r"|cockroaches|parasites|animals|apes|monkeys|inferior|a disease|diseased|filth)\b",
        r"\b(?:exterminat\w*|wipe out|eradicat\w*|get rid of) (?:all )?(?:the )?(?:jews|muslims|blacks|gays|immigrants"
        r"|refugees|mexicans|asians|arabs|trans people|christians)\b",
    ),
    "violent_extremism": (
        r"\b(?:pipe ?bomb|nail bomb|car bomb|suicide vest|ied|molotov (?:cocktail|bomb)s?|pressure cooker bomb)\b",
        r"\b(?:build|make|making|assemble|construct)\w* (?:a |an )?(?:bomb|explosive\w*|suicide vest|ghost gun)\b",
        r"\b(?:school|mass|church|mosque|synagogue) shoot(?:ing|er)\b.{0,60}\b(?:celebrat\w*|glorif\w*|hero\w*"
        r"|reenact\w*|re-enact\w*|tribute|honou?r\w*|cheer\w*)\b",
        r"\b(?:celebrat\w*|glorif\w*|cheer\w*|tribute to)\b.{0,40}\b(?:terroris\w*|school shoot\w*|mass shoot\w*"
        r"|massacre|9/11 hijackers|suicide bomb\w*)\b",
        r"(?<!counter-)(?<!counter )(?<!anti-)\b(?:terrorist|jihadi?s?t?) (?:recruitment|propaganda|training)\b",
    ),
}

# Rules whose words a negation just before them turns into a direction against the harm (the floor's negations,
# floor.toml, in every covered language).
NEGATABLE = frozenset({RULES["graphic_violence"][0]})
_COMPILED = {category: [re.compile(p) for p in patterns] for category, patterns in RULES.items()}


def _hit(pattern: re.Pattern[str], reading: str) -> re.Match[str] | None:
    for m in pattern.finditer(reading):
        # A list after the negation counts here ("no bites or gore"), not in the floor: "no adults and sex" must
        # not excuse the sexual word beside a minor.
        if pattern.pattern not in NEGATABLE or not _floor().negated(reading, m, listed=True):
            return m
    return None


def matches(readings: list[str]) -> dict[str, str]:
    """Each category a rule settles for any of the prompt's readings, with the phrase that settled it."""
    found: dict[str, str] = {}
    for category, patterns in _COMPILED.items():
        for reading in readings:
            hit = next((m for p in patterns if (m := _hit(p, reading))), None)
            if hit is not None:
                found[category] = hit.group()
                break
    return found


# --- the floor for minors (moderation/floor.toml) ---------------------------------------------------------------

FLOOR_FILE = Path(__file__).with_name("floor.toml")
# Scripts that do not separate words by spaces (or join postpositions to them): an entry matches anywhere.
_UNSPACED = frozenset({"CJK", "HIRAGANA", "KATAKANA", "DEVANAGARI"})
_ARABIC_PROCLITICS = r"(?:[وفبلك]?ال|[وفبلك])?"
_CJK_NUMERALS = "一二三四五六七八九十百千两〇零"


@functools.cache
def _digits() -> dict[int, str]:
    """Every script's decimal digits as ASCII ones (Devanagari, Arabic-Indic, fullwidth...)."""
    return {
        i: str(unicodedata.decimal(chr(i)))
        for i in range(0x110000)
        if unicodedata.category(chr(i)) == "Nd" and not chr(i).isascii()
    }


def _script(text: str) -> str:
    return normalize.script(next((ch for ch in text if ch.isalpha()), "a"))


def _entry(raw: str) -> str:
    stem = raw.endswith("*")
    body = normalize.visible(raw.rstrip("*")).casefold()  # as a reading has it
    script = _script(body)
    if script in _UNSPACED:
        return body
    # A Latin word's edge is a Latin letter or digit's absence: "10歳のnude動画" has one between の and 動.
    edge = r"[a-z0-9_]" if script == "LATIN" else r"\w"
    head = rf"(?<!{edge})" + (_ARABIC_PROCLITICS if script == "ARABIC" else "")
    return head + body + (rf"{edge}*" if stem else rf"(?!{edge})")


@dataclass(frozen=True)
class _Floor:
    minor: re.Pattern[str]
    sexual: re.Pattern[str]
    age: re.Pattern[str]
    negation_before: re.Pattern[str]  # searched in the text before a sexual word
    negation_after: re.Pattern[str]  # matched right after it
    negation_listed: re.Pattern[str]  # a negation before a short list that ends in the word ("no bites or gore")
    nude: re.Pattern[str]  # the sexual words that only say "unclothed"...
    art: re.Pattern[str]  # ...and works of art: a minor beside a nude in a sentence with one is held, not blocked
    tens: frozenset[str]  # a number after one of these is part of a larger one ("twenty one")

    def in_art(self, match: re.Match[str], sentences_with_art: set[int], sentence: int) -> bool:
        return sentence in sentences_with_art and bool(self.nude.fullmatch(match.group()))

    def ages(self, text: str) -> list[re.Match[str]]:
        found = []
        for m in self.age.finditer(text):
            before = text[: m.start()].split()
            if m.group("number") and before and before[-1] in self.tens:
                continue  # "twenty one years old"
            found.append(m)
        return found

    def negated(self, text: str, match: re.Match[str], *, listed: bool = False) -> bool:
        before = self.negation_before.search(text, 0, match.start())
        if listed and not before:
            before = self.negation_listed.search(text, 0, match.start())
        return bool(before or self.negation_after.match(text, match.end()))


@functools.cache
def _floor() -> _Floor:
    data = tomllib.loads(FLOOR_FILE.read_text(encoding="utf-8"))

    def union(words: dict[str, list[str]], anywhere: dict[str, list[str]]) -> str:
        entries = [_entry(e) for entries in words.values() for e in entries]
        entries += [normalize.visible(e).casefold() for entries in anywhere.values() for e in entries]
        return "|".join(f"(?:{e})" for e in sorted(set(entries), key=len, reverse=True))

    ages = data["ages"]
    number = "|".join(re.escape(n) for n in sorted(ages["numbers"], key=len, reverse=True))
    # A word for years ends the word it is in, except in scripts without spaces ("12岁女孩").
    after = "|".join(a if _script(a) in _UNSPACED else rf"{a}(?![^\W\d_])" for a in ages["after"])
    before = "|".join(ages["before"])
    age = (
        rf"(?<![\w{_CJK_NUMERALS}-])(?P<number>1[0-7]|0?[1-9]|{number})\s*-?\s*(?:{after})"
        rf"|(?<!\w)(?:{before})\s*[:=]?\s*(?:de\s+)?(?:1[0-7]|0?[1-9])(?!\d)"
    )
    spaced = "|".join(n for n in data["negations"] if _script(n) not in _UNSPACED)
    unspaced = "|".join(n for n in data["negations"] if _script(n) in _UNSPACED)
    # The negation, and at most one word between it and the sexual word ("no visible nudity", "sin mostrar").
    before_re = rf"(?:(?:^|[^\w])(?:{spaced})|(?:{unspaced}))\s*(?:\w+\s+)?$"
    return _Floor(
        minor=re.compile(union(data["minor"], data["minor_anywhere"])),
        sexual=re.compile(union(data["sexual"], data["sexual_anywhere"])),
        age=re.compile(age),
        negation_before=re.compile(before_re),
        negation_listed=re.compile(
            rf"(?:(?:^|[^\w])(?:{spaced})|(?:{unspaced}))\s*(?:[\w-]+,?\s+){{1,3}}(?:{'|'.join(data['connectives'])})\s+$"
        ),
        tens=frozenset(ages["tens"]),
        negation_after=re.compile(rf"\S*\s*(?:{'|'.join(data['negations_after'])})"),
        nude=re.compile(union(data["nude"], {})),
        art=re.compile(union(data["art"], {})),
    )


_SENTENCE_END = re.compile(r"(?<=[.!?;…])\s+|[。！？；।؟\n]+")


def minor_floor(readings: list[str]) -> tuple[str, str] | None:
    """("block", phrase) when a reading names a minor (a word for a child, an age under 18) and sexual content in
    one sentence, ("hold", phrase) when it names both in different sentences, or a nude in a sentence that names a
    work of art (floor.toml's `art`), None otherwise: never allowed, whatever a model scores, in every language
    floor.toml lists."""
    floor = _floor()
    verdict: tuple[str, str] | None = None
    for reading in readings:
        text = reading.translate(_digits())
        minors = [*floor.minor.finditer(text), *floor.ages(text)]
        sexual = [m for m in floor.sexual.finditer(text) if minors and not floor.negated(text, m)]
        if not sexual:
            continue
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]

        def sentence(pos: int, ends: list[int] = ends) -> int:
            return sum(end <= pos for end in ends)

        art = {sentence(m.start()) for m in floor.art.finditer(text)}
        for a in minors:
            for b in sexual:
                phrase = f"{a.group().strip()} + {b.group().strip()}"
                same = sentence(a.start()) == sentence(b.start())
                if same and not floor.in_art(b, art, sentence(b.start())):
                    return "block", phrase
                verdict = verdict or ("hold", phrase + (" in a work of art" if same else ""))
    return verdict
