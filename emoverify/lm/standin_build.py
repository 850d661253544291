"""Building a stand-in checkpoint: seeded random weights, a tokenizer trained on the prompts, saved atomically.

`lm.standins` says what a stand-in is and where it lives, and calls `build_standin` when it is absent or
damaged. This module holds what needs torch, transformers and tokenizers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
from tokenizers.models import BPE
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from emoverify.data import DATASETS, load_dataset
from emoverify.lm.standins import STANDIN_FORMAT, STANDIN_SEED, standin_spec
from emoverify.provenance import atomic_write_json, pause_for_fault_injection, sha256_file, terminate_raises

__all__ = ["build_standin", "quiet_transformers", "tokenizer_corpus", "train_tokenizer"]

_TOKENIZER_VOCAB = 8192
_SPECIAL = "<|endoftext|>"


def tokenizer_corpus() -> list[str]:
    """Texts the stand-in tokenizer is trained on: every prompt of every packaged dataset."""
    texts: list[str] = []
    for name in DATASETS:
        texts.extend(load_dataset(name)["text"].tolist())
    return sorted(set(texts))


def train_tokenizer(corpus: list[str]) -> Any:
    """A byte-level BPE tokenizer (the GPT-2 scheme) trained on `corpus`, wrapped for `save_pretrained`."""
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=_TOKENIZER_VOCAB, special_tokens=[_SPECIAL], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=_SPECIAL, eos_token=_SPECIAL,
                                   unk_token=_SPECIAL, pad_token=_SPECIAL)


def build_standin(ref: str, target: Path) -> None:
    """Write a stand-in checkpoint directory atomically: built in a temp dir, then renamed.

    The caller (`standins.ensure_standin`) holds the stand-in's lock. The temporary directory is removed if
    the build fails, is interrupted or is sent SIGTERM; one left by SIGKILL is swept by a later
    `ensure_standin` (`standins.sweep_abandoned_builds`). The record lists every file's sha256 (weights,
    configuration, tokenizer), so damage to any of them means a rebuild, not a model loaded from it.
    """
    spec, _ = standin_spec(ref)
    spec = dict(spec)
    model_type = spec.pop("model_type")
    config = AutoConfig.for_model(model_type, **spec)
    torch.manual_seed(STANDIN_SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tokenizer = train_tokenizer(tokenizer_corpus())
    target.parent.mkdir(parents=True, exist_ok=True)
    with terminate_raises():
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the cache may be shared
            with quiet_transformers():
                model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            record = {"ref": ref, "seed": STANDIN_SEED, "format": STANDIN_FORMAT, "torch": torch.__version__,
                      "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}}
            atomic_write_json(tmp / "standin.json", record)
            pause_for_fault_injection("standin-build")  # the test hook (tests/test_faults.py); else a no-op
            try:
                os.replace(tmp, target)
            except OSError:
                if not target.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # built meanwhile by an emoverify without the lock
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load progress bars; emoverify shows its own."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
