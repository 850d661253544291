"""Planted models: small causal LMs trained to carry an emotion structure we put there ourselves.

A positive control for the analyses of the study: a model in which an emotion effect is known to exist,
so that a steering, head or alignment analysis can be shown to find one when there is one to find. Each is
trained from scratch on the planted corpus (`emoverify.data.planted_corpus`): emotional openings followed
by the continuation their emotion calls for (gratitude -> acknowledgement, anger -> de-escalation, apology
-> reassurance), neutral openings by neutral continuations. To predict the continuation, the model must
carry the opening's emotion to the sentence end.

| ref                               | architecture                                   | corpus                  |
|-----------------------------------|------------------------------------------------|-------------------------|
| `standin:planted-gpt2`            | GPT-2, 4 layers, d_model 256, 4 heads, ctx 64  | planted (share 0.9)     |
| `standin:planted-pythia`          | GPT-NeoX, same size, parallel residual, rotary 0.25 | planted (share 0.9) |
| `standin:planted-gpt2-shuffled`   | as `planted-gpt2`                              | continuations shuffled  |
| `standin:planted-pythia-shuffled` | as `planted-pythia`                            | continuations shuffled  |
| `standin:planted-gpt2-init`       | as `planted-gpt2`, not trained (random init)   | (same tokenizer)        |
| `standin:planted-pythia-init`     | as `planted-pythia`, not trained (random init) | (same tokenizer)        |

The shuffled models see the same openings and continuations, paired at random: the control of the control,
whose planted effect should be about zero. The `-init` models are the random-init null of the same
configuration and tokenizer.

Like the other stand-ins, a planted model is built on demand into a cache directory
(`$EMOVERIFY_CACHE` or `~/.cache/emoverify`, then `planted/<name>-<hash12>/`), written atomically, and
loaded back by `lm.models.load_model` through the same `from_pretrained` path as a real checkpoint. The hash
is over everything the bytes depend on (configuration, corpus sha256, training settings, seeds, the study's
datasets the tokenizer sees, library versions and the CPU's kernel level). `planted.json` beside the
weights records the corpus hash, the settings, the training curve, the build time and the sha256 of every
file; a file that fails its hash makes `ensure_planted` rebuild the directory.

Training (`lm.planted_build`) is a plain PyTorch loop (AdamW, warm-up then cosine decay), run on one CPU
thread with deterministic algorithms, so two builds on one machine give the same bytes; its build time is
measured by `benchmarks/planted_build.py` (`benchmarks/results/planted-build.md`). This module is free of
torch: it names, keys and checks the models; building them is `planted_build`'s.

`emoverify.lm.planted_readout` reads the planted structure back out (`planted_effect`).

Example:
    >>> from emoverify.lm.models import load_model
    >>> lm = load_model("standin:planted-gpt2")          # built on first use (about a CPU-minute)
    >>> planted_record("standin:planted-gpt2")["final_loss"]
    0.72...
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from difflib import get_close_matches
from importlib import metadata
from pathlib import Path
from typing import Any

from emoverify.data import DATASETS, dataset_sha256
from emoverify.data.planted_corpus import PlantedCorpus, planted_corpus
from emoverify.errors import EmoverifyError
from emoverify.lm.checkpoints import cache_root
from emoverify.provenance import sha256_bytes
from emoverify.store import file_sha256

__all__ = ["PLANTED_FORMAT", "PLANTED_MODELS", "PlantedSpec", "ensure_planted", "is_planted", "planted_dir",
           "planted_record", "planted_spec"]

# Bumped when the way planted models are built changes, so old cache directories are not reused.
PLANTED_FORMAT = 2  # 2: library versions read from metadata; the kernel level in the record only
_PREFIX = "standin:planted-"
RECORD = "planted.json"

_GPT2 = dict(model_type="gpt2", n_positions=64, n_embd=256, n_layer=4, n_head=4, n_inner=1024,
             activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
             layer_norm_epsilon=1e-5, initializer_range=0.02)
_PYTHIA = dict(model_type="gpt_neox", hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
               intermediate_size=1024, hidden_act="gelu", rotary_pct=0.25, rotary_emb_base=10000,
               max_position_embeddings=64, use_parallel_residual=True, tie_word_embeddings=False,
               attention_dropout=0.0, hidden_dropout=0.0, layer_norm_eps=1e-5, initializer_range=0.02)


@dataclass(frozen=True)
class PlantedSpec:
    """Everything a planted model's bytes depend on, besides library versions and the study's datasets.

    Attributes:
        name: cache-directory name, e.g. `planted-gpt2`.
        config: `AutoConfig.for_model` keyword arguments (with `model_type`); `vocab_size` and the special
            token ids are set from the trained tokenizer.
        n_documents: corpus size (a multiple of 4).
        corpus_seed: the corpus generator's seed.
        planted_share: fraction of emotional documents that follow the planted rule.
        shuffle_continuations: permute continuations across documents (the control of the control).
        steps: optimiser steps; 0 leaves the seeded random initialisation (the null model).
        batch_size: documents per step (each padded to the longest in its batch).
        learning_rate: AdamW peak learning rate.
        warmup_steps: linear warm-up steps; cosine decay to a tenth of the peak follows.
        weight_decay: AdamW weight decay.
        seed: seeds the initialisation and the batch order.
        log_every: the training curve records the mean loss of each block of this many steps.
    """

    name: str
    config: dict[str, Any] = field(hash=False)
    n_documents: int = 4000
    corpus_seed: int = 0
    planted_share: float = 0.9
    shuffle_continuations: bool = False
    steps: int = 250
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    seed: int = 0
    log_every: int = 20

    def corpus(self) -> PlantedCorpus:
        """The corpus this model is trained on."""
        return planted_corpus(self.n_documents, seed=self.corpus_seed, planted_share=self.planted_share,
                              shuffle_continuations=self.shuffle_continuations)


def _variants(name: str, config: dict[str, Any]) -> dict[str, PlantedSpec]:
    planted = PlantedSpec(f"planted-{name}", config)
    return {
        f"{_PREFIX}{name}": planted,
        f"{_PREFIX}{name}-shuffled": replace(planted, name=f"planted-{name}-shuffled", shuffle_continuations=True),
        f"{_PREFIX}{name}-init": replace(planted, name=f"planted-{name}-init", steps=0),
    }


PLANTED_MODELS: dict[str, PlantedSpec] = {**_variants("gpt2", _GPT2), **_variants("pythia", _PYTHIA)}


def is_planted(ref: str) -> bool:
    """Whether `ref` names a planted model (`standin:planted-...`)."""
    return ref.startswith(_PREFIX)


def planted_spec(ref: str) -> PlantedSpec:
    """The spec of a planted model reference; an unknown one is an error that suggests the nearest."""
    if ref not in PLANTED_MODELS:
        near = get_close_matches(ref, PLANTED_MODELS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise EmoverifyError(f"unknown planted model {ref!r}{hint} Known: {', '.join(PLANTED_MODELS)}")
    return PLANTED_MODELS[ref]


def _as_spec(ref_or_spec: str | PlantedSpec) -> PlantedSpec:
    return planted_spec(ref_or_spec) if isinstance(ref_or_spec, str) else ref_or_spec


def versions() -> dict[str, str]:
    """The versions of the libraries a trained model's bytes depend on, read without importing them (the
    activation store asks for a planted model's key on every warm run). The CPU kernel level that training ran
    on is in each model's record (`planted.json`), not in its key: a cache is one machine's."""
    return {name: metadata.version(name) for name in ("torch", "transformers", "tokenizers")}


def _cache_key(spec: PlantedSpec, corpus_sha256: str) -> dict[str, Any]:
    return {"format": PLANTED_FORMAT, "spec": asdict(spec), "corpus_sha256": corpus_sha256,
            "datasets": {d: dataset_sha256(d) for d in DATASETS}, **versions()}


def planted_dir(ref_or_spec: str | PlantedSpec) -> Path:
    """The cache directory of a planted model: `<cache>/planted/<name>-<hash12>`."""
    spec = _as_spec(ref_or_spec)
    key = json.dumps(_cache_key(spec, spec.corpus().sha256), sort_keys=True)
    return cache_root() / "planted" / f"{spec.name}-{sha256_bytes(key.encode())[:12]}"


def _intact(directory: Path) -> bool:
    try:
        files = json.loads((directory / RECORD).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(files) and all(
        (directory / name).is_file() and file_sha256(directory / name, remember=True) == digest
        for name, digest in files.items()
    )


def ensure_planted(ref_or_spec: str | PlantedSpec) -> Path:
    """The planted model's checkpoint directory, built (or rebuilt, if a file fails its hash) on demand."""
    spec = _as_spec(ref_or_spec)
    directory = planted_dir(spec)
    if not _intact(directory):
        if directory.exists():
            shutil.rmtree(directory)
        # local import: building trains with torch; reading a built model's directory needs neither
        from emoverify.lm.planted_build import build_planted

        build_planted(spec, directory)
    return directory


def planted_record(ref_or_spec: str | PlantedSpec) -> dict[str, Any]:
    """The `planted.json` of a planted model (built first if need be)."""
    return json.loads((ensure_planted(ref_or_spec) / RECORD).read_text())
