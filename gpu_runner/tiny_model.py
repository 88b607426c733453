"""A tiny, randomly initialised Wan text-to-video pipeline for tests and CPU dev.

The weights are noise, so the "videos" are noise too, but every code path of the
real Wan 2.1 pipeline (tokenizer, UMT5 text encoder, 3D transformer, causal VAE,
UniPC flow scheduler) runs, offline, in well under a second per generation.
"""

from __future__ import annotations

import os
import shutil
import string
import tempfile
import threading
from pathlib import Path

__all__ = ["build_tiny_wan"]

VOCAB_SIZE = 192
# torch's global RNG is shared by all threads: seeded construction must not interleave.
_SEED_LOCK = threading.Lock()


def _tokenizer_vocab() -> list[tuple[str, float]]:
    """T5 layout: <pad>=0, </s>=1, <unk>=2, then pieces; exactly VOCAB_SIZE entries.

    Word-initial pieces score higher than bare characters so segmentation is
    unambiguous (and therefore stable) for the Unigram model.
    """
    chars = [c for c in string.printable if not c.isspace()]  # 94 characters
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + c, -1.0) for c in chars]
    vocab += [(c, -2.0) for c in chars]
    assert len(vocab) == VOCAB_SIZE, len(vocab)
    return vocab


def _make_pipeline():  # -> diffusers.WanPipeline
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    # fork_rng keeps the caller's global RNG untouched; a fixed seed per part makes
    # each part's weights independent of the others and byte-identical across builds.
    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        text_encoder = UMT5EncoderModel(
            UMT5Config(
                vocab_size=VOCAB_SIZE,
                d_model=32,
                d_kv=8,
                d_ff=64,
                num_layers=2,
                num_heads=4,
                relative_attention_num_buckets=8,
                relative_attention_max_distance=32,
                feed_forward_proj="gated-gelu",
            )
        ).eval()

        torch.manual_seed(1)
        # z_dim must stay 16: it has to match the transformer's in/out channels and
        # the 16-entry latents_mean/latents_std defaults of AutoencoderKLWan.
        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],  # sic: diffusers' spelling
        ).eval()

        torch.manual_seed(2)
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16,
            out_channels=16,
            text_dim=32,
            freq_dim=256,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
        ).eval()

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    # transformers 5's T5Tokenizer is a `tokenizers` Unigram model built straight
    # from a (piece, score) list, so no sentencepiece file is needed.
    tokenizer = T5Tokenizer(vocab=_tokenizer_vocab(), extra_ids=0, model_max_length=512)

    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
    )


def _make_readable(root: Path) -> None:
    # mkdtemp makes a 0700 dir and safetensors writes 0600 files; the model may be
    # built by one user and loaded by another (web vs worker).
    os.chmod(root, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


def build_tiny_wan(path: str | Path) -> Path:
    """Build the tiny Wan pipeline into ``path`` (a directory) and return it.

    Safe to call repeatedly and from several processes at once: the model is
    written to a temporary sibling directory and renamed into place, so ``path``
    either does not exist or holds a complete model. If a complete model is
    already there it is left alone.
    """
    target = Path(path).absolute()
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # save_pretrained draws a "Writing model shards" bar; keep worker logs clean.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _make_pipeline().save_pretrained(tmp, safe_serialization=True)
        _make_readable(tmp)
        try:
            # rename(2) is atomic and also replaces an empty directory.
            os.rename(tmp, target)
        except OSError:
            if (target / "model_index.json").is_file():
                return target  # another process won the race with identical bytes
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
