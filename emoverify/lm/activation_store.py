"""The activation store: extraction's arrays kept, found again and checked; and the layer convention.

One entry of the store (`emoverify.store`) per model x dataset x extraction settings, one safetensors file
per emotion group (the paper's 3 models give 3 x 4 = 12 files per dataset, as ACT-1 counts them)::

    <root>/activations/<dataset>/<model-slug>/<key>/<emotion>.safetensors   sentence_end, emotion_token:
                                                                            [n, n_layers + 1, d_model] float32
    <root>/activations/<dataset>/<model-slug>/<key>/manifest.json           provenance, throughput, sha256s

`<key>` addresses the content: the first 16 hex of the sha256 of everything the arrays depend on (the
model reference and a sha256 of its weight files, the dataset's sha256, the extraction settings, this
format). Another model, weights, dataset or dtype is another entry beside it. A read checks every file's
sha256 and the manifest's own (once per process while the files stay unchanged: see the store), then the
entry's shape (`_check_activations`): four groups of two float32 arrays `[n, n_layers + 1, d_model]` whose
`n` is the number of prompt ids the manifest gives, those ids equal to the ones in each file's own
safetensors metadata (which the file's sha256 covers), and the throughput and settings readers print. A
missing, partial, corrupt or misshapen entry is extracted again, with a warning when something was there;
two runs extracting the same entry at once take turns (the store's lock), and the second reads the first's.

The layer convention: a *block index* `l` (0..n_layers-1) names a transformer block, as `hooks.act_name`
does; a *stored index* `i` (0..n_layers) indexes the layer axis of stored activations, where 0 is the
embedding output and `i` the output of block `i - 1`, before the final layer norm. `stored_index` and
`block_index` convert.

This module imports no torch, so reading stored activations (what every claim does) never loads a model
library; extraction (`lm.extraction`) is imported only when an entry has to be computed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from huggingface_hub import try_to_load_from_cache

import emoverify
from emoverify.data import EMOTIONS, dataset_sha256, load_dataset
from emoverify.errors import ArtifactError, EmoverifyError
from emoverify.lm.checkpoints import cache_root, model_slug
from emoverify.lm.standins import drawn_weights_sha256, ensure_standin
from emoverify.paper import split_seed
from emoverify.provenance import environment, sha256_bytes
from emoverify.store import Entry, EntryCheck, cached_entry, entry_dir, file_sha256, read_entry

if TYPE_CHECKING:
    import torch

    from emoverify.lm.models import LoadedModel

__all__ = [
    "ACTIVATIONS_FORMAT",
    "SITES",
    "ActivationSet",
    "EmotionGroup",
    "activation_key",
    "block_index",
    "cached_activations",
    "ensure_activations",
    "group_dir",
    "load_activations",
    "stored_index",
    "weights_fingerprint",
]

SITES = ("sentence_end", "emotion_token")
# Bumped when the stored arrays or their meaning change, so older entries are not read.
ACTIVATIONS_FORMAT = 1
LAYERS = "index 0: embedding output; index i: output of block i-1, before the final layer norm"


def stored_index(block: int, n_layers: int | None = None) -> int:
    """The stored index of block `block`'s output: `block + 1` (0 is the embedding output).

    Example:
        >>> stored_index(0), stored_index(11, n_layers=12)
        (1, 12)
    """
    if block < 0 or (n_layers is not None and block >= n_layers):
        bound = f" of a model of {n_layers} blocks" if n_layers is not None else ""
        raise EmoverifyError(f"block {block} is not a block index{bound} (0 is the first block)")
    return block + 1


def block_index(stored: int, n_layers: int | None = None) -> int:
    """The block whose output is at stored index `stored`: `stored - 1`; stored index 0 (the embedding) is none.

    Example:
        >>> block_index(1), block_index(12, n_layers=12)
        (0, 11)
    """
    if stored < 1 or (n_layers is not None and stored > n_layers):
        bound = f" (1..{n_layers})" if n_layers is not None else ""
        raise EmoverifyError(f"stored index {stored} is not a block output{bound}: 0 is the embedding output")
    return stored - 1


@dataclass(frozen=True)
class EmotionGroup:
    """The stored activations of one emotion's prompts (read-only arrays)."""

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
    """One model x dataset: the four emotion groups and the manifest record that describes them.

    Attributes:
        manifest: the entry's record: model provenance and config, dataset, settings, throughput,
            environment, and per group its prompt ids and shape.
        directory: the entry's directory in the store.
        cache_key: the entry's address in the store, 16 hex of the sha256 of its key (model reference, weights
            fingerprint, dataset, settings): what results computed from these activations are keyed by; None
            for a set not read from the store (nothing computed from it is stored then).
    """

    model_ref: str
    dataset: str
    manifest: dict[str, Any]
    groups: dict[str, EmotionGroup]
    directory: Path
    cache_key: str | None = None

    @property
    def n_layers(self) -> int:
        return next(iter(self.groups.values())).sentence_end.shape[1] - 1

    @property
    def d_model(self) -> int:
        return next(iter(self.groups.values())).sentence_end.shape[2]


def weights_fingerprint(model_ref: str) -> str:
    """sha256 over the checkpoint's weight files, without loading the model (the key needs it).

    A seeded stand-in (`standin:gpt2~seed1`) has no weight files: its fingerprint is the sha256 of the weights
    its seed draws, recorded at the first draw and checked at every later one (`lm.standins`).
    """
    if split_seed(model_ref)[1]:
        return drawn_weights_sha256(model_ref)
    standin = model_ref.startswith(("standin:", "tiny:"))
    if standin:
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
    # Digest records (see `file_sha256`): beside a stand-in's weights, which live in emoverify's own cache;
    # in that cache for anyone else's (the Hugging Face cache, a user's directory), which we do not write in.
    record_dir = None if standin else cache_root() / "file-digests"
    digests = "".join(f"{p.name}:{file_sha256(p, remember=True, record_dir=record_dir)};" for p in files)
    return sha256_bytes(digests.encode()) if files else "unresolved"


def _dtype_name(dtype: str | torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _settings(dtype: str | torch.dtype) -> dict[str, Any]:
    return {"dtype": _dtype_name(dtype), "sites": list(SITES), "padding_side": "right",
            "gelu_new": "torch.nn.functional.gelu(approximate='tanh')"}


def activation_key(model_ref: str, dataset: str, dtype: str | torch.dtype = "float32") -> dict[str, Any]:
    """Everything the activations of `model_ref` on `dataset` depend on: the key of their store entry."""
    return {"model_ref": model_ref, "weights": weights_fingerprint(model_ref),
            "dataset_sha256": dataset_sha256(dataset), "format": ACTIVATIONS_FORMAT, "settings": _settings(dtype)}


def _namespace(dataset: str, model_ref: str) -> tuple[str, str, str]:
    return "activations", dataset, model_slug(model_ref)


def group_dir(out: str | os.PathLike[str], dataset: str, model_ref: str, dtype: str | torch.dtype = "float32") -> Path:
    """The store directory of `model_ref`'s activations on `dataset` (whether or not they exist yet)."""
    return entry_dir(out, _namespace(dataset, model_ref), activation_key(model_ref, dataset, dtype))


def _as_activation_set(entry: Entry, model_ref: str, dataset: str) -> ActivationSet:
    """The entry as an `ActivationSet`; the entry has passed `_check_activations`."""
    groups = {emotion: EmotionGroup(emotion=emotion, ids=tuple(entry.record["groups"][emotion]["ids"]),
                                    sentence_end=entry.files[emotion]["sentence_end"],
                                    emotion_token=entry.files[emotion]["emotion_token"])
              for emotion in EMOTIONS}
    assert entry.directory is not None  # a stored entry always has one
    return ActivationSet(model_ref=model_ref, dataset=dataset, manifest=dict(entry.record), groups=groups,
                         directory=entry.directory, cache_key=entry.directory.name)


# What the CLI and the claims read from an activation manifest besides the groups: (section, field).
_READ_FROM_MANIFEST = (("throughput", "samples_per_s"), ("throughput", "tokens_per_s"), ("settings", "device"),
                       ("environment", "platform"), ("environment", "cpu_count"))


def _check_activations(model_ref: str, dataset: str) -> EntryCheck:
    """What a reader of `model_ref`'s activations on `dataset` needs of an entry besides its hashes.

    The manifest's hash covers its record, but a record consistent with itself may still disagree with the
    files: each file's own metadata (covered by the file's hash) repeats the group's prompt ids, emotion,
    dataset and model, and must say what the manifest says.
    """

    def check(entry: Entry) -> None:
        where = entry.directory
        try:
            read = {(a, b): entry.record[a][b] for a, b in _READ_FROM_MANIFEST}
            described = {emotion: dict(entry.record["groups"][emotion]) for emotion in EMOTIONS}
        except (KeyError, TypeError, ValueError) as err:
            raise ArtifactError(f"the manifest in {where} lacks what a reader needs ({type(err).__name__}: "
                                f"{err})") from None
        speeds = [read["throughput", k] for k in ("samples_per_s", "tokens_per_s")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in speeds):
            raise ArtifactError(f"the manifest in {where} gives a throughput that is not a positive number: {speeds}")
        shapes = set()
        for emotion in EMOTIONS:
            arrays, ids = entry.files.get(emotion), described[emotion].get("ids")
            if arrays is None or set(arrays) != set(SITES):
                raise ArtifactError(f"{where} holds no {emotion} group with arrays {list(SITES)}")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ArtifactError(f"the manifest in {where} gives no list of prompt ids for {emotion}")
            try:
                own = json.loads(entry.metadata.get(emotion, {}).get("emoverify", "null"))
                own = (own["ids"], own["emotion"], own["dataset"], own["model_ref"])
            except (ValueError, KeyError, TypeError):
                raise ArtifactError(f"{where}/{emotion}.safetensors carries no readable metadata") from None
            if own != (ids, emotion, dataset, model_ref):
                raise ArtifactError(f"{where}/{emotion}.safetensors disagrees with the manifest about its prompt "
                                    f"ids, emotion, dataset or model: {_difference(own[0], ids)}")
            for site, array in arrays.items():
                if array.dtype != np.float32 or array.ndim != 3 or array.shape[0] != len(ids):
                    raise ArtifactError(f"{where}/{emotion}.safetensors: {site} is {array.dtype} {array.shape}, "
                                        f"not float32 [{len(ids)}, n_layers + 1, d_model]")
                shapes.add(array.shape[1:])
        if len(shapes) != 1:
            raise ArtifactError(f"{where}: the groups disagree about [n_layers + 1, d_model]: {sorted(shapes)}")

    return check


def _difference(own: Any, described: Any) -> str:
    """Where two id lists first differ, for the warning."""
    if isinstance(own, list) and isinstance(described, list):
        for i, (a, b) in enumerate(zip(own, described, strict=False)):
            if a != b:
                return f"id {i} is {a!r} in the file, {b!r} in the manifest"
        if len(own) != len(described):
            return f"{len(own)} ids in the file, {len(described)} in the manifest"
        return "the ids agree; the emotion, dataset or model does not"
    return f"{own!r:.60} in the file, {described!r:.60} in the manifest"


def load_activations(
    out: str | os.PathLike[str], dataset: str, model_ref: str, dtype: str | torch.dtype = "float32"
) -> ActivationSet:
    """Read a model x dataset from the store after checking every file against its manifest.

    Raises:
        ArtifactError: nothing stored for these inputs, or a file is missing, unreadable, fails its sha256, or
            the entry is misshapen (`_check_activations`).
    """
    fix = f"run `python -m emoverify run --models {model_ref} --dataset {dataset}` to recompute it"
    key = activation_key(model_ref, dataset, dtype)
    directory = entry_dir(out, _namespace(dataset, model_ref), key)
    if not directory.exists():
        raise ArtifactError(f"no activations for {model_ref} on {dataset} in {directory}: {fix}")
    try:
        entry = read_entry(out, _namespace(dataset, model_ref), key, _check_activations(model_ref, dataset))
        return _as_activation_set(entry, model_ref, dataset)
    except ArtifactError as err:
        raise ArtifactError(f"{err}; {fix}") from None


def cached_activations(
    model_ref: str, dataset: str, out: str | os.PathLike[str] = "artifacts", dtype: str | torch.dtype = "float32"
) -> ActivationSet | None:
    """The stored activations if they are intact and were made from the same inputs, else `None`."""
    try:
        return load_activations(out, dataset, model_ref, dtype)
    except ArtifactError:
        return None


def ensure_activations(
    model_ref: str,
    dataset: str,
    out: str | os.PathLike[str] = "artifacts",
    device: str = "cpu",
    batch_size: int = 32,
    dtype: str | torch.dtype = "float32",
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
        dtype: model dtype, `"float32"` or a `torch.dtype` (stored arrays are always float32).
        lm: an already-loaded model to reuse (the CLI loads each model once for both datasets).
        progress: show a tqdm bar.
    """
    key = activation_key(model_ref, dataset, dtype)
    entry = cached_entry(out, _namespace(dataset, model_ref), key,
                         lambda: _extract(model_ref, dataset, device, batch_size, dtype, lm, progress),
                         check=_check_activations(model_ref, dataset))
    return _as_activation_set(entry, model_ref, dataset)


def _extract(
    model_ref: str,
    dataset: str,
    device: str,
    batch_size: int,
    dtype: str | torch.dtype,
    lm: LoadedModel | None,
    progress: bool,
) -> Entry:
    """Run the extraction and lay its arrays out as a store entry: one file per emotion group."""
    # local import: extraction needs torch and the model code; reading the store must not load them.
    import torch

    from emoverify.lm.extraction import extract_residuals
    from emoverify.lm.models import load_model

    if lm is None:
        lm = load_model(model_ref, device=device, dtype=getattr(torch, _dtype_name(dtype)))
    frame = load_dataset(dataset)
    spans = list(zip(frame["span_start"].tolist(), frame["span_end"].tolist(), strict=True))
    arrays, timing = extract_residuals(lm, frame["text"].tolist(), spans, frame["id"].tolist(),
                                       batch_size=batch_size, progress=progress)  # [n, 2, L + 1, d]
    files, metadata, groups = {}, {}, {}
    for emotion in EMOTIONS:
        rows = np.flatnonzero(frame["emotion"].to_numpy() == emotion)
        ids = frame["id"].to_numpy()[rows].tolist()
        files[emotion] = {"sentence_end": arrays[rows, 0], "emotion_token": arrays[rows, 1]}
        # One metadata key: safetensors writes a map's keys in no fixed order, and the files must be
        # byte-identical across runs.
        metadata[emotion] = {"emoverify": json.dumps({"emotion": emotion, "dataset": dataset,
                                                      "model_ref": model_ref, "ids": ids}, sort_keys=True)}
        groups[emotion] = {"ids": ids, "shape": list(arrays[rows, 0].shape)}
    record = {
        "model": {k: v for k, v in lm.provenance.items() if k != "config"},
        "config": lm.provenance["config"],
        "dataset": {"name": dataset, "sha256": dataset_sha256(dataset), "n": len(frame)},
        "settings": {**_settings(dtype), "batch_size": batch_size, "device": str(lm.device),
                     "format": ACTIVATIONS_FORMAT},
        "layers": LAYERS,
        "throughput": timing,
        "seed": None,  # extraction is deterministic: no sampling, dropout off (eval mode)
        "emoverify_version": emoverify.__version__,
        "environment": environment(),
        "groups": groups,
    }
    return Entry(files=files, record=record, metadata=metadata)
