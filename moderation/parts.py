"""The parts of a prompt the text check judges on their own, beside the whole.

A harmful clause inside a long, harmless prompt (a cinematographer's shot list, a scene that turns at its end)
is diluted when the prompt is read as one text: the embedding and the n-grams average it away. Judged alone,
the clause scores as it would if the user had typed only it; the strictest reading of the prompt decides.

Pure functions. The parts are a partition of the prompt: its sentences, in any script's punctuation, and a long
sentence's clauses (commas, dashes, colons); a piece of a few words is joined to the one before it, so no part
is judged out of all context. Their number is bounded (MAX_PARTS): beyond it, neighbouring pieces are merged
into windows, so the work a prompt can cause stays bounded whatever its length. Being a partition, the parts
together are as long as the prompt: the text model embeds them instead of the whole (moderation.textmodel).
"""

from __future__ import annotations

import re

MAX_PARTS = 12
# A sentence longer than this many words (or characters, in scripts without spaces) is split into clauses.
CLAUSE_WORDS = 12
CLAUSE_CHARS = 40
# A piece shorter than this (words, or characters without spaces) is joined to its neighbour.
MIN_WORDS = 3
MIN_CHARS = 6

# A sentence ends at . ! ? ; … followed by a space, or at the full stops of Chinese, Japanese, Hindi, Arabic.
_SENTENCE = re.compile(r"(?<=[.!?;…])\s+|(?<=[。！？；।؟\n])")
_CLAUSE = re.compile(r"(?<=[,，、،:：])\s*|\s+(?=[-–—]+\s)")


def _spaced(text: str) -> bool:
    return " " in text.strip()


def _long(sentence: str) -> bool:
    if _spaced(sentence):
        return len(sentence.split()) > CLAUSE_WORDS
    return len(sentence) > CLAUSE_CHARS


def _short(piece: str) -> bool:
    if _spaced(piece):
        return len(piece.split()) < MIN_WORDS
    return len(piece.strip()) < MIN_CHARS


def _pieces(prompt: str) -> list[str]:
    out: list[str] = []
    for sentence in _SENTENCE.split(prompt):
        if not sentence.strip():
            continue
        for piece in _CLAUSE.split(sentence) if _long(sentence) else [sentence]:
            if not piece.strip():
                continue
            if out and (_short(piece) or _short(out[-1])):
                sep = " " if _spaced(out[-1]) or _spaced(piece) else ""
                out[-1] = f"{out[-1]}{sep}{piece.strip()}"
            else:
                out.append(piece.strip())
    return out


def split(prompt: str) -> list[str]:
    """The prompt's parts, in order; empty when the prompt is one part (it is judged whole, as it is)."""
    pieces = _pieces(prompt)
    if len(pieces) > MAX_PARTS:
        size = -(-len(pieces) // MAX_PARTS)
        pieces = [" ".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]
    return pieces if len(pieces) > 1 else []
