"""What may import what, where import-linter's contracts do not reach yet: the benchmarks stand alone (they import
no test module), and the platform never imports the harness that drives it from outside."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("benchmarks", "tests"),
        ("jobs", "harness"),
        ("moderation", "harness"),
        ("notifications", "harness"),
        ("gpu_runner", "harness"),
        ("videogen", "harness"),
        ("harness", "tests"),
    ],
)
def test_a_folder_does_not_import_the_layer_it_must_not_know(folder, forbidden):
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in sorted(_imports(path))
        if name == forbidden or name.startswith(forbidden + ".")
    ]
    assert offenders == []
