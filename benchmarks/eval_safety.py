"""`make eval-safety`: the content policy measured on the labelled set the project ships, and on images.

Text (moderation/data/prompts.jsonl): the classifier is trained on the train split only. It prints
- 5-fold cross-validation on the train split (what the thresholds in moderation/policy.toml were chosen on);
- the held-out split, never trained on, through the production path (moderation.screening.check_prompt:
  normalisation, rules, model, policy): per category the prompts blocked, held for a moderator and allowed,
  recall of blocks alone and of blocks and holds together (a held prompt is not generated unless a person
  approves it), precision of the category named on blocks; on benign prompts the false-block and false-hold
  rates, and each again for the obfuscated and the hard benign prompts;
- the latency of one prompt's decision on this CPU (p50, p99, after the model is loaded).
Images: open_nsfw and NudeNet on images that ship with scikit-image and frames this script makes (none is
sexual: no such images ship in any package here), the false-block and false-hold rates, the faces found,
and the latency per frame.

    .venv/bin/python benchmarks/eval_safety.py
The last line is one JSON object.
"""

from __future__ import annotations

import collections
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "videogen.settings")

import django  # noqa: E402

django.setup()

from moderation import normalize, policy, screening, textmodel, textrules  # noqa: E402
from moderation.models import Stage  # noqa: E402

TARGETS = {"recall": 0.95, "false_block": 0.02, "p99_ms": 50}
Action = policy.Action


def decide_text(scores: dict[str, float], readings: list[str]) -> policy.Decision:
    return policy.decide(Stage.INPUT_TEXT, scores, rules=textrules.matches(readings))


def cross_validate(rows: list[textmodel.Example], folds: int = 5) -> dict[str, float]:
    from sklearn.model_selection import StratifiedKFold

    train = [row for row in rows if row.split == "train"]
    readings = [normalize.variants(row.text) for row in train]
    texts = [normalize.best(r) for r in readings]
    embeddings = textmodel.embed(texts)
    labels = [row.category for row in train]
    decisions: list[policy.Decision | None] = [None] * len(train)
    for fit_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, labels):
        model = textmodel.TextModel.fit([texts[i] for i in fit_idx], [labels[i] for i in fit_idx], embeddings[fit_idx])
        scores = model.scores([texts[i] for i in test_idx], embeddings[test_idx])
        for i, s in zip(test_idx, scores, strict=True):
            decisions[i] = decide_text(s, readings[i])
    return summarise(train, decisions)["overall"]


def summarise(rows, decisions) -> dict:
    harmful = sorted({row.category for row in rows} - {textmodel.BENIGN})
    per: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    named: collections.Counter = collections.Counter()
    for row, decision in zip(rows, decisions, strict=True):
        groups = [row.category, f"{row.category}/{row.kind}"]
        for group in groups:
            per[group]["n"] += 1
            per[group][decision.action] += 1
        if decision.action == Action.BLOCK:
            named[decision.category] += 1
            if decision.category == row.category:
                per[row.category]["named_right"] += 1
    table = {}
    for group, c in per.items():
        table[group] = {
            "n": c["n"],
            "block": c[Action.BLOCK],
            "hold": c[Action.HOLD],
            "allow": c[Action.ALLOW],
            "rate_block": c[Action.BLOCK] / c["n"],
            "rate_block_or_hold": (c[Action.BLOCK] + c[Action.HOLD]) / c["n"],
        }
        if "/" not in group and group != textmodel.BENIGN:
            table[group]["precision"] = c["named_right"] / named[group] if named[group] else float("nan")
    benign = table[textmodel.BENIGN]
    table["overall"] = {
        "min_recall_block": min(table[c]["rate_block"] for c in harmful),
        "min_recall_block_or_hold": min(table[c]["rate_block_or_hold"] for c in harmful),
        "false_block": benign["rate_block"],
        "false_hold": benign["rate_block_or_hold"] - benign["rate_block"],
    }
    return table


def print_table(title: str, table: dict) -> None:
    print(f"\n{title}")
    print(f"{'category':<36} {'n':>4} {'block':>6} {'hold':>5} {'allow':>6} {'recall':>7} {'+hold':>6} {'prec':>6}")
    for group in sorted(k for k in table if k != "overall"):
        r = table[group]
        precision = f"{r['precision']:.2f}" if "precision" in r else ""
        benign = group.startswith(textmodel.BENIGN)
        print(
            f"{group:<36} {r['n']:>4} {r['block']:>6} {r['hold']:>5} {r['allow']:>6} "
            f"{'' if benign else format(r['rate_block'], '.3f'):>7} "
            f"{'' if benign else format(r['rate_block_or_hold'], '.3f'):>6} {precision:>6}"
        )
    o = table["overall"]
    print(
        f"min recall (block) {o['min_recall_block']:.3f} · min recall (block or hold) "
        f"{o['min_recall_block_or_hold']:.3f} · benign false-block {o['false_block']:.3f} · "
        f"false-hold {o['false_hold']:.3f}"
    )


def images() -> dict:
    from skimage import data

    named = ["astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "horse", "page", "text"]
    frames: dict[str, np.ndarray] = {}
    for name in named:
        img = getattr(data, name)()
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        frames[name] = np.ascontiguousarray((img > 0).astype(np.uint8) * 255 if img.dtype == bool else img)
    rng = np.random.default_rng(0)
    frames["noise"] = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    frames["gradient"] = np.stack([*np.meshgrid(ramp, ramp), np.full((256, 256), 128, np.uint8)], -1)
    frames["skin_flat"] = np.full((256, 256, 3), (224, 172, 140), np.uint8)
    frames["black"] = np.zeros((256, 256, 3), np.uint8)
    screening.image_scores(frames["noise"])  # load both models
    results, times = {}, []
    for name, frame in frames.items():
        started = time.perf_counter()
        found = screening.image_scores(frame)
        times.append(time.perf_counter() - started)
        action = policy.decide(Stage.OUTPUT_FRAMES, {"sexual_explicit": found.sexual}).action
        results[name] = {"sexual": round(found.sexual, 4), "face": found.face, "action": action}
    return {"frames": results, "p50_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}


def main() -> None:
    rows = textmodel.examples(Path(os.environ.get("MODERATION_TEXT_DATA", textmodel.DATA)))
    counts = collections.Counter((row.split, row.category == textmodel.BENIGN) for row in rows)
    print(
        f"machine   {platform.node()} · {os.cpu_count()} cores · {platform.machine()} · Python "
        f"{platform.python_version()}"
    )
    print(
        f"policy    {policy.load().version} · text set {len(rows)} prompts: train {counts['train', False]} harmful"
        f" + {counts['train', True]} benign, held out {counts['heldout', False]} harmful"
        f" + {counts['heldout', True]} benign"
    )
    started = time.perf_counter()
    cv = cross_validate(rows)
    print(f"\n5-fold cross-validation on the train split ({time.perf_counter() - started:.0f} s):")
    print(
        f"min recall (block) {cv['min_recall_block']:.3f} · min recall (block or hold) "
        f"{cv['min_recall_block_or_hold']:.3f} · benign false-block {cv['false_block']:.3f} · "
        f"false-hold {cv['false_hold']:.3f}"
    )

    started = time.perf_counter()
    textmodel.model()  # trained on the train split, as a worker trains or loads it
    print(f"\nthe production model: trained or loaded in {time.perf_counter() - started:.1f} s")
    heldout = [row for row in rows if row.split == "heldout"]
    decisions, times = [], []
    screening.check_prompt("warm up")
    for row in heldout:
        t = time.perf_counter()
        decisions.append(screening.check_prompt(row.text))
        times.append(time.perf_counter() - t)
    table = summarise(heldout, decisions)
    print_table("held-out split (never trained on), through screening.check_prompt:", table)
    times.sort()
    p50, p99 = times[len(times) // 2] * 1000, times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
    print(f"latency per prompt: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(times)} prompts, one at a time)")
    missed = [
        (row.category, row.text)
        for row, d in zip(heldout, decisions, strict=True)
        if d.allowed and row.category != textmodel.BENIGN
    ]
    blocked = [
        (row.text, d.category)
        for row, d in zip(heldout, decisions, strict=True)
        if row.category == "benign" and d.action == Action.BLOCK
    ]
    for category, text in missed:
        print(f"  allowed, labelled {category}: {text!r}")
    for text, category in blocked:
        print(f"  blocked benign as {category}: {text!r}")

    image = images()
    print("\nimages (no sexual image ships in any package here: only false blocks and faces can be measured):")
    for name, r in image["frames"].items():
        print(f"  {name:<12} sexual {r['sexual']:.4f}  face {'yes' if r['face'] else 'no ':<3}  -> {r['action']}")
    actions = collections.Counter(r["action"] for r in image["frames"].values())
    n = len(image["frames"])
    print(f"  per frame: p50 {image['p50_ms']:.1f} ms, max {image['max_ms']:.1f} ms (open_nsfw + NudeNet)")

    o = table["overall"]
    summary = {
        "heldout_min_recall_block": round(o["min_recall_block"], 3),
        "heldout_min_recall_block_or_hold": round(o["min_recall_block_or_hold"], 3),
        "heldout_false_block": round(o["false_block"], 3),
        "heldout_false_hold": round(o["false_hold"], 3),
        "cv_min_recall_block_or_hold": round(cv["min_recall_block_or_hold"], 3),
        "cv_false_block": round(cv["false_block"], 3),
        "text_p99_ms": round(p99, 1),
        "image_false_block": round(actions[Action.BLOCK] / n, 3),
        "image_false_hold": round(actions[Action.HOLD] / n, 3),
        "image_p50_ms": round(image["p50_ms"], 1),
        "targets_met": {
            "recall": o["min_recall_block_or_hold"] >= TARGETS["recall"],
            "false_block": o["false_block"] <= TARGETS["false_block"],
            "p99_ms": p99 <= TARGETS["p99_ms"],
        },
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
