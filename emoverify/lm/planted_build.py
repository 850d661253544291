"""Training and building the planted models (`lm.planted` names and checks them).

A plain PyTorch loop (AdamW, linear warm-up then cosine decay to a tenth of the peak) on one CPU thread with
deterministic algorithms, so that two builds on one machine give the same bytes; the tokenizer is the
stand-ins' byte-level BPE, trained on the study's prompts and the planted corpus.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from emoverify.data.planted_corpus import PlantedCorpus
from emoverify.lm.planted import PLANTED_FORMAT, RECORD, PlantedSpec, versions
from emoverify.lm.standin_build import quiet_transformers, tokenizer_corpus, train_tokenizer
from emoverify.provenance import atomic_write_json, sha256_file

__all__ = ["build_planted", "one_deterministic_thread", "train_planted"]


@contextmanager
def one_deterministic_thread() -> Iterator[None]:
    """Run the block on one intra-op thread with deterministic algorithms, leaving the global RNG alone.

    Restores the thread count, the deterministic-algorithms flag and torch's RNG state afterwards.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)


def _tokenizer(corpus: PlantedCorpus) -> Any:
    """A byte-level BPE tokenizer trained on the study's prompts and the corpus (the stand-ins' scheme)."""
    return train_tokenizer(sorted(set(tokenizer_corpus()) | set(corpus.texts)))


def _config(spec: PlantedSpec, tokenizer: Any) -> Any:
    kwargs = dict(spec.config)
    model_type = kwargs.pop("model_type")
    special = tokenizer.eos_token_id
    return AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=special,
                                eos_token_id=special, **kwargs)


def _encode(corpus: PlantedCorpus, tokenizer: Any, max_len: int) -> list[list[int]]:
    """Token ids of every document, ending with the end-of-text token, cut to the context length."""
    eos = tokenizer.eos_token_id
    return [(ids + [eos])[:max_len] for ids in tokenizer(corpus.texts)["input_ids"]]


def _batch(docs: Sequence[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels), right-padded to the longest document; padding is not scored. # [batch, pos] each"""
    width = max(len(d) for d in docs)
    ids = torch.full((len(docs), width), pad, dtype=torch.long)
    labels = torch.full((len(docs), width), -100, dtype=torch.long)
    for row, doc in enumerate(docs):
        ids[row, : len(doc)] = torch.tensor(doc)
        labels[row, : len(doc)] = torch.tensor(doc)
    return ids, labels


def _epoch_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                   pool: int = 8) -> list[list[int]]:
    """One epoch of batches of document indices, in the order they are popped (last first).

    A seeded permutation, cut into pools of `pool` batches; each pool is sorted by length before it is cut
    into batches, so a batch holds documents of similar length and padding wastes little compute (a third
    of the tokens without it). A partial last batch is dropped.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches: list[list[int]] = []
    for start in range(0, len(order) - batch_size + 1, batch_size * pool):
        chunk = sorted(order[start:start + batch_size * pool], key=lambda i: lengths[i])
        batches.extend(chunk[k:k + batch_size] for k in range(0, len(chunk) - batch_size + 1, batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def _learning_rate(spec: PlantedSpec, step: int) -> float:
    if step < spec.warmup_steps:
        return spec.learning_rate * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_planted(spec: PlantedSpec, tokenizer: Any, corpus: PlantedCorpus) -> tuple[Any, list[dict[str, float]]]:
    """Initialise a model from `spec` (seeded) and train it on `corpus` for `spec.steps` steps.

    Runs inside `one_deterministic_thread`: the result depends on the spec, the corpus, the tokenizer and
    the machine's kernels, not on the caller's thread settings or RNG state.

    Args:
        spec: architecture and training settings.
        tokenizer: the trained tokenizer (its vocabulary sets the embedding size).
        corpus: the documents.

    Returns:
        (model in eval mode, training curve: `[{"step": s, "loss": mean loss of the steps up to s}, ...]`).
    """
    config = _config(spec, tokenizer)
    with one_deterministic_thread():
        torch.manual_seed(spec.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        curve: list[dict[str, float]] = []
        if spec.steps > 0:
            docs = _encode(corpus, tokenizer, int(config.max_position_embeddings))
            order = torch.Generator().manual_seed(spec.seed)
            decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
            no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
            optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                                           {"params": no_decay, "weight_decay": 0.0}],
                                          lr=spec.learning_rate, betas=(0.9, 0.95))
            model.train()
            batches: list[list[int]] = []
            window: list[float] = []
            for step in range(spec.steps):
                if not batches:
                    batches = _epoch_batches([len(d) for d in docs], spec.batch_size, order)
                ids, labels = _batch([docs[i] for i in batches.pop()], tokenizer.eos_token_id)
                for group in optimiser.param_groups:
                    group["lr"] = _learning_rate(spec, step)
                loss = model(input_ids=ids, labels=labels).loss
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                window.append(float(loss.detach()))
                if len(window) == spec.log_every or step == spec.steps - 1:
                    curve.append({"step": step + 1, "loss": round(sum(window) / len(window), 5)})
                    window = []
    return model.eval(), curve


def build_planted(spec: PlantedSpec, target: Path) -> dict[str, Any]:
    """Build a planted model into `target` atomically (a temp dir renamed into place); return its record.

    A failure removes the temp dir; where another process built `target` first, its copy is kept.
    """
    start, start_cpu = time.perf_counter(), time.process_time()
    corpus = spec.corpus()
    tokenizer = _tokenizer(corpus)
    train_start, train_cpu = time.perf_counter(), time.process_time()
    model, curve = train_planted(spec, tokenizer, corpus)
    train_seconds, train_cpu = time.perf_counter() - train_start, time.process_time() - train_cpu
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        record = {
            "name": spec.name,
            "format": PLANTED_FORMAT,
            "corpus": {"sha256": corpus.sha256, **corpus.settings(),
                       "planted_documents": sum(d.planted for d in corpus.documents)},
            "training": asdict(spec),
            "seed": spec.seed,
            "threads": 1,
            **versions(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "vocab_size": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters()),
            "curve": curve,
            "final_loss": curve[-1]["loss"] if curve else None,
            "train_seconds": round(train_seconds, 2),
            "train_cpu_seconds": round(train_cpu, 2),  # below the wall time where other work shares the cores
            "build_seconds": round(time.perf_counter() - start, 2),
            "build_cpu_seconds": round(time.process_time() - start_cpu, 2),
            "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()},
        }
        atomic_write_json(tmp / RECORD, record)
        try:
            os.replace(tmp, target)
        except OSError:  # another process built it first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record
