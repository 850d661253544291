"""Phase 2: residual-stream extraction and the artifact store it writes.

For one model and one dataset, one pass records the residual stream after the embedding and after every
block at two positions of each prompt:

* `sentence_end`: the last real token (padding-aware);
* `emotion_token`: the last token of the prompt's emotion span (for a neutral prompt, its matched span;
  see `emoverify/data/README.md`).

Layout, one file per model x emotion group (the paper's 3 models give 3 x 4 = 12 files per dataset):

    <out>/<dataset>/<model-slug>/<emotion>.safetensors   sentence_end, emotion_token: [n, n_layers + 1, d_model]
    <out>/<dataset>/<model-slug>/manifest.json           provenance, throughput, each file's sha256

Index 0 of the layer axis is the embedding output; index i is the output of block i-1, before the final
layer norm (so the last entry differs from `output_hidden_states[-1]`, which transformers returns after
the final norm). The extraction runs the model without its LM head; the last block's output projection
and MLP run only at the two kept positions, and `gelu_new` as PyTorch's fused kernel of the same formula
(float rounding, ~1e-6 relative; recorded in the manifest's settings). Prompts are tokenized as the
model's tokenizer does by default (no BOS token is prepended) and position ids follow the attention mask,
so a prompt gives the same activations alone or in a left- or right-padded batch.

A re-run with the same inputs (model weights, dataset, settings, code format) reuses the files after
checking every sha256; a missing, partial or corrupted file makes the whole group be recomputed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import try_to_load_from_cache
from safetensors.numpy import load_file, save
from tqdm.auto import tqdm

import emoverify
from emoverify.data import EMOTIONS, dataset_sha256, load_dataset
from emoverify.errors import ArtifactError, EmoverifyError
from emoverify.lm import hooks
from emoverify.lm.hooks import KeptPositions, act_name, capture, only_at_positions
from emoverify.lm.models import LoadedModel, ensure_standin, load_model, model_slug
from emoverify.provenance import (
    atomic_write_bytes,
    atomic_write_json,
    environment,
    sha256_bytes,
    sha256_file,
    sha256_file_once,
)

__all__ = [
    "SITES",
    "ActivationSet",
    "EmotionGroup",
    "EncodedPrompts",
    "cached_activations",
    "encode_prompts",
    "ensure_activations",
    "extract_residuals",
    "group_dir",
    "load_activations",
]

SITES = ("sentence_end", "emotion_token")
# Bumped when the stored arrays or their meaning change, so older caches are recomputed.
STORE_FORMAT = 1


@dataclass(frozen=True)
class EmotionGroup:
    """The stored activations of one emotion's prompts."""

    emotion: str
    ids: tuple[str, ...]
    sentence_end: np.ndarray  # [n, n_layers + 1, d_model] float32
    emotion_token: np.ndarray  # [n, n_layers + 1, d_model] float32

    @cached_property
    def _float64(self) -> dict[str, np.ndarray]:
        return {}

    def float64(self, site: str) -> np.ndarray:
        """The residuals at `site` in float64, what the analyses compute in: converted once, read-only."""
        if site not in SITES:
            raise EmoverifyError(f"unknown site {site!r}; expected one of {SITES}")
        if site not in self._float64:
            converted = np.array(getattr(self, site), dtype=np.float64)
            converted.flags.writeable = False
            self._float64[site] = converted
        return self._float64[site]


@dataclass(frozen=True)
class ActivationSet:
    """One model x dataset: the four emotion groups and the manifest that describes them."""

    model_ref: str
    dataset: str
    manifest: dict[str, Any]
    groups: dict[str, EmotionGroup]

    @property
    def n_layers(self) -> int:
        return next(iter(self.groups.values())).sentence_end.shape[1] - 1

    @property
    def d_model(self) -> int:
        return next(iter(self.groups.values())).sentence_end.shape[2]


@dataclass(frozen=True)
class EncodedPrompts:
    """Tokenized prompts with the two positions extraction reads."""

    input_ids: torch.Tensor  # [batch, pos]
    attention_mask: torch.Tensor  # [batch, pos]
    position_ids: torch.Tensor  # [batch, pos]
    sentence_end: torch.Tensor  # [batch] index of the last real token
    emotion_token: torch.Tensor  # [batch] index of the last token of the emotion span


def _span_token(offsets: Sequence[tuple[int, int]], start: int, end: int, prompt_id: str) -> int:
    """Index of the last token whose characters overlap [start, end)."""
    hits = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    if not hits:
        raise EmoverifyError(f"prompt {prompt_id}: no token covers its emotion span [{start}, {end})")
    return hits[-1]


def encode_prompts(
    tokenizer: Any,
    texts: Sequence[str],
    spans: Sequence[tuple[int, int]],
    ids: Sequence[str] | None = None,
    padding_side: str = "right",
) -> EncodedPrompts:
    """Tokenize prompts, pad them, and locate the sentence end and the emotion token of each."""
    ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
    # One batched call: the fast tokenizer encodes the list in Rust, per-prompt calls cost ~0.5 ms each.
    enc = tokenizer(list(texts), return_offsets_mapping=True, add_special_tokens=True)
    rows, emotion_index = [], []
    for row, offsets, (start, end), prompt_id in zip(enc["input_ids"], enc["offset_mapping"], spans, ids,
                                                     strict=True):
        if not row:
            raise EmoverifyError(f"prompt {prompt_id} tokenizes to nothing")
        rows.append(row)
        emotion_index.append(_span_token(offsets, start, end, prompt_id))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    shift = []
    for i, row in enumerate(rows):
        offset = width - len(row) if padding_side == "left" else 0
        input_ids[i, offset : offset + len(row)] = torch.tensor(row)
        mask[i, offset : offset + len(row)] = 1
        shift.append(offset)
    shift_t = torch.tensor(shift)
    lengths = torch.tensor([len(r) for r in rows])
    return EncodedPrompts(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
        sentence_end=shift_t + lengths - 1,
        emotion_token=shift_t + torch.tensor(emotion_index),
    )


# Batches whose captures are kept on the device before one copy to the host (bounded memory: a batch of 32
# holds 32 x 2 x 13 x 768 floats, 2.5 MB, for the paper's models).
_PENDING_BATCHES = 16


def extract_residuals(
    lm: LoadedModel,
    texts: Sequence[str],
    spans: Sequence[tuple[int, int]],
    ids: Sequence[str] | None = None,
    batch_size: int = 32,
    padding_side: str = "right",
    progress: bool = False,
    fused_gelu: bool = True,
) -> tuple[np.ndarray, dict[str, float]]:
    """Residual stream at the sentence end and the emotion token, for every layer.

    Prompts are batched by length (less padding) and run through the model without its LM head under
    `torch.inference_mode()`; hooks keep only the two positions of each prompt, and the last block's
    output projection and MLP run only at those positions (`hooks.only_at_positions`). With `fused_gelu`,
    `gelu_new` runs as PyTorch's fused kernel of the same formula (`hooks.fused_gelu`).

    Returns:
        `[n, 2, n_layers + 1, d_model]` float32 in input order (axis 1: `SITES`), and the timing:
        `seconds`, `samples_per_s`, `tokens_per_s`, `tokens`.
    """
    ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
    encoded = encode_prompts(lm.tokenizer, texts, spans, ids, padding_side)
    lengths = encoded.attention_mask.sum(-1)
    order = torch.argsort(lengths, descending=True, stable=True)
    names = [act_name("resid_pre", 0, lm.n_layers)] + [
        act_name("resid_post", layer, lm.n_layers) for layer in range(lm.n_layers)
    ]
    out = np.empty((len(texts), 2, lm.n_layers + 1, lm.d_model), dtype=np.float32)
    kept = KeptPositions()

    def gather(t: torch.Tensor, name: str) -> torch.Tensor:
        return t[kept.rows, kept.index]  # [batch, 2, d_model]

    device = lm.device
    last = lm.n_layers - 1
    # Results stay on the device until a few batches have gathered, so a GPU is not stalled by a copy
    # to the host after every batch.
    pending: list[tuple[np.ndarray, torch.Tensor]] = []

    def flush() -> None:
        for rows_np, stacked in pending:
            out[rows_np] = stacked.float().cpu().numpy()
        pending.clear()

    start = time.perf_counter()
    with (
        torch.inference_mode(),
        hooks.fused_gelu(lm) if fused_gelu else nullcontext(),
        capture(lm, names, select=gather) as acts,
        only_at_positions([lm.attn_out_proj(last), lm.mlp(last)], kept),
    ):
        batches = range(0, len(texts), batch_size)
        for lo in tqdm(batches, desc=f"extract {lm.ref}", unit="batch", disable=not progress, leave=False):
            rows = order[lo : lo + batch_size]
            width = int(lengths[rows].max()) if padding_side == "right" else encoded.input_ids.shape[1]
            cols = slice(0, width) if padding_side == "right" else slice(None)
            kept.rows = torch.arange(len(rows), device=device)[:, None]
            kept.index = torch.stack(
                [encoded.sentence_end[rows], encoded.emotion_token[rows]], dim=1
            ).to(device)
            lm.base(
                input_ids=encoded.input_ids[rows, cols].to(device),
                attention_mask=encoded.attention_mask[rows, cols].to(device),
                position_ids=encoded.position_ids[rows, cols].to(device),
                use_cache=False,
            )
            pending.append((rows.numpy(), torch.stack([acts[n] for n in names], dim=2)))  # [b, 2, L+1, d]
            if len(pending) >= _PENDING_BATCHES:
                flush()
        flush()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    tokens = int(lengths.sum())
    timing = {"seconds": seconds, "samples_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds,
              "tokens": tokens, "batch_size": batch_size}
    return out, timing


# --------------------------------------------------------------------------------------------------
# The store


def group_dir(out: str | os.PathLike[str], dataset: str, model_ref: str) -> Path:
    return Path(out) / dataset / model_slug(model_ref)


def weights_fingerprint(model_ref: str) -> str:
    """sha256 over the checkpoint's weight files, without loading the model (the cache key needs it)."""
    if model_ref.startswith(("standin:", "tiny:")):
        directory = ensure_standin(model_ref)  # built here if absent: extraction needs it next anyway
    elif os.path.isdir(model_ref):
        directory = Path(model_ref)
    else:
        repo, _, revision = model_ref.partition("@")
        config = try_to_load_from_cache(repo, "config.json", revision=revision or None)
        if not isinstance(config, str):
            return "unresolved"
        directory = Path(config).parent
    files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin"))
    return sha256_bytes("".join(f"{p.name}:{sha256_file_once(p)};" for p in files).encode()) if files else "unresolved"


def _cache_key(model_ref: str, dataset: str, settings: dict[str, Any]) -> str:
    record = {"model_ref": model_ref, "weights": weights_fingerprint(model_ref),
              "dataset_sha256": dataset_sha256(dataset), "store_format": STORE_FORMAT, **settings}
    return sha256_bytes(json.dumps(record, sort_keys=True).encode())


def load_activations(out: str | os.PathLike[str], dataset: str, model_ref: str) -> ActivationSet:
    """Read a model x dataset from the store after checking every file against the manifest.

    Raises:
        ArtifactError: the manifest or a file is missing, unreadable, or fails its sha256.
    """
    directory = group_dir(out, dataset, model_ref)
    manifest_path = directory / "manifest.json"
    fix = f"run `python -m emoverify run --models {model_ref} --dataset {dataset}` to recompute it"
    if not manifest_path.is_file():
        raise ArtifactError(f"no activations for {model_ref} on {dataset} in {directory}: {fix}")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError) as err:
        raise ArtifactError(f"{manifest_path} is unreadable ({err}): {fix}") from None
    groups = {}
    for emotion in EMOTIONS:
        entry = files.get(emotion)
        path = directory / f"{emotion}.safetensors"
        if entry is None or not path.is_file():
            raise ArtifactError(f"{path} is missing: {fix}")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise ArtifactError(
                f"{path} does not match its manifest (sha256 {digest[:12]}… != {entry['sha256'][:12]}…): "
                f"the file is corrupt or partial; {fix}"
            )
        arrays = load_file(str(path))
        groups[emotion] = EmotionGroup(emotion=emotion, ids=tuple(entry["ids"]),
                                       sentence_end=arrays["sentence_end"], emotion_token=arrays["emotion_token"])
    return ActivationSet(model_ref=model_ref, dataset=dataset, manifest=manifest, groups=groups)


def _settings(dtype: torch.dtype) -> dict[str, Any]:
    return {"dtype": str(dtype).removeprefix("torch."), "sites": list(SITES), "padding_side": "right",
            "gelu_new": "torch.nn.functional.gelu(approximate='tanh')"}


def cached_activations(
    model_ref: str, dataset: str, out: str | os.PathLike[str] = "artifacts", dtype: torch.dtype = torch.float32
) -> ActivationSet | None:
    """The stored activations if they are intact and were made from the same inputs, else `None`."""
    return _stored_under_key(out, dataset, model_ref, _cache_key(model_ref, dataset, _settings(dtype)))


def _stored_under_key(out: str | os.PathLike[str], dataset: str, model_ref: str, key: str) -> ActivationSet | None:
    manifest_path = group_dir(out, dataset, model_ref) / "manifest.json"
    try:
        if json.loads(manifest_path.read_text()).get("cache_key") != key:
            return None
        return load_activations(out, dataset, model_ref)
    except (OSError, ValueError, ArtifactError):
        return None


def ensure_activations(
    model_ref: str,
    dataset: str,
    out: str | os.PathLike[str] = "artifacts",
    device: str = "cpu",
    batch_size: int = 32,
    dtype: torch.dtype = torch.float32,
    lm: LoadedModel | None = None,
    progress: bool = False,
) -> ActivationSet:
    """The activations of `model_ref` on `dataset`: from the store if intact and current, else extracted.

    Args:
        model_ref: hub id, local directory, `standin:*` or `tiny:*`.
        dataset: `baseline` or `extended`.
        out: store root.
        device: where to run the model if extraction is needed.
        batch_size: prompts per forward pass.
        dtype: model dtype (stored arrays are always float32).
        lm: an already-loaded model to reuse (the CLI loads each model once for both datasets).
        progress: show a tqdm bar.
    """
    out = Path(out)
    settings = _settings(dtype)
    key = _cache_key(model_ref, dataset, settings)
    cached = _stored_under_key(out, dataset, model_ref, key)
    if cached is not None:
        return cached
    if lm is None:
        lm = load_model(model_ref, device=device, dtype=dtype)
    frame = load_dataset(dataset)
    spans = list(zip(frame["span_start"].tolist(), frame["span_end"].tolist(), strict=True))
    arrays, timing = extract_residuals(lm, frame["text"].tolist(), spans, frame["id"].tolist(),
                                       batch_size=batch_size, progress=progress)
    directory = group_dir(out, dataset, model_ref)
    files = {}
    for emotion in EMOTIONS:
        rows = np.flatnonzero(frame["emotion"].to_numpy() == emotion)
        ids = frame["id"].to_numpy()[rows].tolist()
        blob = save(
            {"sentence_end": np.ascontiguousarray(arrays[rows, 0]),
             "emotion_token": np.ascontiguousarray(arrays[rows, 1])},
            # One metadata key: safetensors writes a map's keys in no fixed order, and the files must be
            # byte-identical across runs.
            metadata={"emoverify": json.dumps({"emotion": emotion, "dataset": dataset, "model_ref": model_ref,
                                               "ids": ids}, sort_keys=True)},
        )
        atomic_write_bytes(directory / f"{emotion}.safetensors", blob)
        files[emotion] = {"sha256": sha256_bytes(blob), "ids": ids, "shape": list(arrays[rows, 0].shape)}
    manifest = {
        "cache_key": key,
        "model": {k: v for k, v in lm.provenance.items() if k != "config"},
        "config": lm.provenance["config"],
        "dataset": {"name": dataset, "sha256": dataset_sha256(dataset), "n": len(frame)},
        "settings": {**settings, "batch_size": batch_size, "device": str(lm.device), "store_format": STORE_FORMAT},
        "layers": "index 0: embedding output; index i: output of block i-1, before the final layer norm",
        "throughput": timing,
        "seed": None,  # extraction is deterministic: no sampling, dropout off (eval mode)
        "emoverify_version": emoverify.__version__,
        "environment": environment(),
        "files": files,
    }
    atomic_write_json(directory / "manifest.json", manifest)  # last: its presence marks a complete group
    return load_activations(out, dataset, model_ref)
