"""The documentation: every relative link resolves, the README stays short, and nothing names a file outside the
repository. Pure file reads: no database, no started process."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_MAX_BYTES = 16_000

# Written in two pieces so that this file does not match itself.
FORBIDDEN = ("../" + "shared", "DESIGN" + ".md")
SKIP_DIRS = {".venv", "build", "var", ".git", "node_modules", "__pycache__", ".ruff_cache", ".pytest_cache"}
TEXT_SUFFIXES = {".py", ".toml", ".conf", ".sh", ".md"}
TEXT_NAMES = {"Makefile"}

_FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
# [text](target) or [text](target "title") or [text](<target>); images too.
_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")


def _walk(top: Path):
    for path in sorted(top.iterdir()):
        if path.is_dir():
            if path.name in SKIP_DIRS or path.name.endswith(".egg-info"):
                continue
            yield from _walk(path)
        elif path.is_file():
            yield path


def markdown_files() -> list[Path]:
    docs = ROOT / "docs"
    found = [ROOT / "README.md", ROOT / "tests" / "README.md"]
    if docs.is_dir():
        found += [p for p in _walk(docs) if p.suffix == ".md"]
    return found


def relative_links(text: str) -> list[str]:
    """The link targets of a Markdown text, outside code blocks and code spans, that point at files."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    targets = []
    for target in _LINK.findall(prose):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "//")):
            continue  # http(s)://, mailto: and the like; an anchor in the same file
        targets.append(target)
    return targets


def test_relative_links_resolve():
    broken = []
    for md in markdown_files():
        for target in relative_links(md.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0].split("?", 1)[0]
            if not path:
                continue
            if not (md.parent / path).exists():
                broken.append(f"{md.relative_to(ROOT)}: [{target}] -> {path} does not exist")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_is_short():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; at most {README_MAX_BYTES} (move detail to docs/)"


def test_nothing_names_files_outside_the_repository():
    offending = []
    for path in _walk(ROOT):
        in_docs = path.relative_to(ROOT).parts[0] == "docs"
        if not in_docs and path.suffix not in TEXT_SUFFIXES and path.name not in TEXT_NAMES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for needle in FORBIDDEN:
            for number, line in enumerate(text.splitlines(), 1):
                if needle in line:
                    offending.append(f"{path.relative_to(ROOT)}:{number}: {needle}")
    assert not offending, "text that names files outside the repository:\n" + "\n".join(offending)


def test_the_link_finder_sees_what_it_should():
    text = (
        "See [a](docs/a.md), [b](b.md#part), ![img](static/x.png), [web](https://example.com), "
        "[mail](mailto:x@example.com), [here](#anchor), `[code](not/a/link.md)`.\n"
        "```\n[fenced](not/either.md)\n```\n"
    )
    assert relative_links(text) == ["docs/a.md", "b.md#part", "static/x.png"]
