"""The content policy (moderation/policy.toml) and the decision it makes from classifier scores.

Pure functions: no database, no models, no side effects. The classifiers run in moderation.screening, which
hands their scores here; a stage records the Decision and moves the job (jobs.services.stages).
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

POLICY_FILE = Path(__file__).with_name("policy.toml")


class Action:
    ALLOW = "allow"
    HOLD = "hold"  # a moderator decides
    BLOCK = "block"


SEVERITY = {Action.ALLOW: 0, Action.HOLD: 1, Action.BLOCK: 2}


@dataclass(frozen=True)
class Category:
    name: str
    label: str  # what the user is told
    block: float
    review: float

    def action(self, score: float) -> str:
        if score >= self.block:
            return Action.BLOCK
        return Action.HOLD if score >= self.review else Action.ALLOW


@dataclass(frozen=True)
class Policy:
    version: str
    categories: dict[str, Category]
    output_frames: int


def load(path: Path | None = None) -> Policy:
    """The policy in `path`, by default the file MODERATION_POLICY_FILE names (moderation/policy.toml)."""
    if path is None:
        from django.conf import settings

        path = Path(getattr(settings, "MODERATION_POLICY_FILE", POLICY_FILE))
    return _parse(path)


@functools.cache
def _parse(path: Path) -> Policy:
    data = tomllib.loads(path.read_text())
    categories = {
        name: Category(name=name, label=spec["label"], block=float(spec["block"]), review=float(spec["review"]))
        for name, spec in data["categories"].items()
    }
    for c in categories.values():
        if not 0 <= c.review <= c.block <= 1:
            raise ValueError(f"{path}: {c.name}: needs 0 <= review <= block <= 1")
    return Policy(version=data["version"], categories=categories, output_frames=int(data["output"]["frames"]))


def valid_score(score: object) -> bool:
    """A classifier's score the thresholds can judge: a finite number in [0, 1]."""
    try:
        value = float(score)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and 0.0 <= value <= 1.0


def strictest(scores: Iterable[object]) -> float:
    """The largest of some scores (0 for none), or NaN when any of them is not a valid score: `max` would keep or
    drop a NaN depending on where it stands, and a lost NaN would let a broken classifier allow."""
    values = list(scores)
    if not all(valid_score(v) for v in values):
        return math.nan
    return max((float(v) for v in values), default=0.0)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Decision:
    action: str
    stage: str
    policy: str
    category: str = ""  # the category that decided (empty when allowed)
    scores: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)  # for moderators: rules that fired, classifier failures

    @property
    def allowed(self) -> bool:
        return self.action == Action.ALLOW

    def label(self, policy: Policy | None = None) -> str:
        """The user-facing name of the deciding category."""
        found = (policy or load()).categories.get(self.category)
        return found.label if found is not None else "content policy"


def _valid(scores: Mapping[str, float], policy: Policy, failures: list[str], what: str) -> dict[str, float]:
    """The policy's categories' scores, rounded; a score that is not in [0, 1] is reported as a failure."""
    kept: dict[str, float] = {}
    for name, score in scores.items():
        if name not in policy.categories:
            continue
        if not valid_score(score):
            failures.append(f"{what}{name}: not a score in [0, 1] ({score!r})")
            continue
        kept[name] = round(float(score), 4)
    return kept


def decide(
    stage: str,
    scores: Mapping[str, float],
    *,
    rules: Mapping[str, str] | None = None,
    failures: list[str] | None = None,
    holds: Mapping[str, str] | None = None,
    parts: Mapping[str, float] | None = None,
    policy: Policy | None = None,
) -> Decision:
    """The policy's action for one stage: the strictest over all categories. `scores` are the classifiers'
    (a category a stage cannot see is simply absent), `rules` the text rules that fired (category -> phrase;
    each sets its category's score to 1), `failures` the classifiers that could not run: then nothing is
    allowed on a guess, and the job is held for a person unless a category already blocks. `holds` are checks
    that want a person to look (category -> why: the floor for minors across sentences, a language the text
    check does not cover): the job is held unless a category blocks. `parts` are the strictest scores over the
    input's parts (a prompt's sentences and clauses): a part alone can hold, never block, since read out of its
    prompt a sentence of a harmless prompt can look like the harm it describes or opposes; only the whole input
    or a rule blocks. A score that is not a number in [0, 1] (NaN compares false with every threshold) is a
    failure of its classifier, never an allow."""
    policy = policy or load()
    rules = rules or {}
    failures = list(failures or [])
    merged = _valid(scores, policy, failures, "")
    partial = _valid(parts or {}, policy, failures, "part ")
    for name in rules:
        merged[name] = 1.0
    action, category = Action.ALLOW, ""
    # Severity first, then the score's margin over its threshold: the clearest reason names the decision; on a
    # tie, the category the policy lists first (the gravest: a minor before an adult).
    best = (0, -1.0)
    part_holds: list[str] = []
    for name, cat in policy.categories.items():
        for score, of_part in ((merged.get(name), False), (partial.get(name), True)):
            act = Action.ALLOW if score is None else cat.action(score)
            if score is None or act == Action.ALLOW:
                continue
            if of_part:
                act = Action.HOLD
                part_holds.append(f"a part of it reads as {name} ({score}); a part alone holds, never blocks")
            rank = (SEVERITY[act], score - (cat.block if act == Action.BLOCK else cat.review))
            if rank > best:
                best, action, category = rank, act, name
    for name, score in partial.items():
        merged[name] = max(score, merged.get(name, 0.0))  # what a moderator sees: the strictest of either
    reasons = [f"rule ({name}): {phrase}" for name, phrase in rules.items()]
    if action == Action.HOLD:
        reasons += part_holds
    for name, why in (holds or {}).items():
        reasons.append(f"held ({name}): {why}")
        if SEVERITY[action] < SEVERITY[Action.HOLD]:
            action, category = Action.HOLD, name if name in policy.categories else ""
    if failures:
        reasons += [f"classifier unavailable: {failure}" for failure in failures]
        if action == Action.ALLOW:
            action = Action.HOLD
    return Decision(
        action=action, stage=stage, policy=policy.version, category=category, scores=merged, reasons=reasons
    )
