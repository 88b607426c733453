"""The rules layer of the text policy: phrases that leave no doubt, matched on a prompt's normalised readings
(moderation.normalize), whatever the model says.

Pure functions. Rules are for precision: each pattern names its category unambiguously in any context, or
needs two parts together (a minor and a sexual term). Words that are harmless alone ("kill", "shot", "blood",
"naked eye", "a killer app") are left to the classifier, which reads them in context.
"""

from __future__ import annotations

import re

_MINOR = (
    r"(?:child|children|kid|kids|minor|minors|underage|under-age|preteen|pre-teen|toddler|infant|baby|babies"
    r"|schoolgirl|schoolboy|little (?:girl|boy)|young (?:girl|boy)|(?:1[0-7]|[1-9]) ?(?:yo|y/o|years? old|-year-old)"
    r"|teen|teens|teenage|teenager|juvenile|daughter|niece|nephew|pupil|middle school\w*|elementary school\w*)"
)
_SEXUAL = (
    r"(?:sex|sexual|sexually|sexy|nude|nudes|naked|undress(?:ed|ing)?|topless|porn\w*|erotic\w*|lingerie"
    r"|seductive\w*|striptease|stripping|explicit|molest\w*|rape\w*|intercourse|fondl\w*|aroused|nsfw)"
)

RULES: dict[str, tuple[str, ...]] = {
    "sexual_minors": (
        r"\bcsam\b",
        r"\bchild (?:porn\w*|sexual abuse|sex abuse|exploitation material)\b",
        r"\b(?:kiddie|kiddy|jailbait|pedo\w*|paedo\w*|loli|lolicon|shota\w*)\b",
        rf"\b{_MINOR}\b.{{0,60}}\b{_SEXUAL}\b",
        rf"\b{_SEXUAL}\b.{{0,60}}\b{_MINOR}\b",
    ),
    "sexual_explicit": (
        r"\bporn\w*\b",
        r"\bxxx\b",
        r"\bhentai\b",
        r"\b(?:hardcore|explicit|graphic) (?:sex|sexual|nudity|porn)\w*\b",
        r"\b(?:having|have|has) sex\b",
        r"\bsex (?:scene|tape|video|act|acts)\b",
        r"\b(?:blowjob|handjob|cumshot|orgasm\w*|masturbat\w*|gangbang|creampie|deepthroat\w*)\b",
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
        # "no gore", "without gore", "non-gory" are directions against it.
        r"\b(?<!no )(?<!without )(?<!non-)(?<!non )(?:behead\w*|decapitat\w*|dismember\w*|disembowel\w*"
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
        r"\bself[- ]?harm\w*\b",
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
        r"\b(?:pipe ?bomb|nail bomb|car bomb|suicide vest|ied|molotov|pressure cooker bomb)\b",
        r"\b(?:build|make|making|assemble|construct)\w* (?:a |an )?(?:bomb|explosive\w*|suicide vest|ghost gun)\b",
        r"\b(?:school|mass|church|mosque|synagogue) shoot(?:ing|er)\b.{0,60}\b(?:celebrat\w*|glorif\w*|hero\w*"
        r"|reenact\w*|re-enact\w*|tribute|honou?r\w*|cheer\w*)\b",
        r"\b(?:celebrat\w*|glorif\w*|cheer\w*|tribute to)\b.{0,40}\b(?:terroris\w*|school shoot\w*|mass shoot\w*"
        r"|massacre|9/11 hijackers|suicide bomb\w*)\b",
        r"(?<!counter-)(?<!counter )(?<!anti-)\b(?:terrorist|jihadi?s?t?) (?:recruitment|propaganda|training)\b",
    ),
}

_COMPILED = {category: [re.compile(p) for p in patterns] for category, patterns in RULES.items()}


def matches(readings: list[str]) -> dict[str, str]:
    """Each category a rule settles for any of the prompt's readings, with the phrase that settled it."""
    found: dict[str, str] = {}
    for category, patterns in _COMPILED.items():
        for reading in readings:
            hit = next((m for p in patterns if (m := p.search(reading))), None)
            if hit is not None:
                found[category] = hit.group()
                break
    return found
