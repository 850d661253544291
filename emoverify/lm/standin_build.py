"""Building a stand-in checkpoint: seeded random weights, a tokenizer trained on the prompts, saved atomically;
and drawing a seeded stand-in's weights at load time, checked against the sha256 of its first draw.

`lm.standins` says what a stand-in is and where it lives, and calls `build_standin` when it is absent or
damaged. This module holds what needs torch, transformers and tokenizers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
from tokenizers.models import BPE
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from emoverify.data import DATASETS, load_dataset
from emoverify.errors import EmoverifyError
from emoverify.lm.standins import (
    STANDIN_FORMAT,
    STANDIN_SEED,
    draw_record_path,
    ensure_standin,
    recorded_draw,
    standin_spec,
)
from emoverify.paper import split_seed
from emoverify.provenance import atomic_write_json, pause_for_fault_injection, sha256_file, terminate_raises, utc_now

__all__ = ["build_standin", "draw_standin", "quiet_transformers", "tokenizer_corpus", "train_tokenizer",
           "weights_sha256"]

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


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the parameters and buffers as loaded (names, shapes, dtypes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def draw_standin(ref: str) -> Any:
    """A seeded stand-in's model (`standin:gpt2~seed1`): seed 0's configuration, weights drawn on the CPU by the
    architecture's initialiser under the seed (the global RNG is left as it was), in eval mode.

    The draw's sha256 is compared with the one recorded at the seed's first draw (`lm.standins.draw_record_path`)
    and recorded when there is none: a draw that differs from its record is an `EmoverifyError`, since the
    activations stored under that record's sha256 would then name weights that were not the ones used.
    """
    base, seed = split_seed(ref)
    if seed == 0:
        raise EmoverifyError(f"{ref!r} is a stored stand-in: load it from its checkpoint, not by a draw")
    config = AutoConfig.from_pretrained(ensure_standin(base))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    digest, recorded, record = weights_sha256(model), recorded_draw(ref), draw_record_path(ref)
    if recorded is None:
        atomic_write_json(record, {"ref": ref, "seed": seed, "weights_sha256": digest, "drawn": utc_now(),
                                   "torch": torch.__version__, "transformers": transformers.__version__})
    elif recorded != digest:
        raise EmoverifyError(f"drawing {ref!r} is not deterministic here: its weights hash to {digest[:12]}…, but "
                             f"its first draw recorded {recorded[:12]}… ({record}); activations stored under that "
                             "record would name other weights. Find what changed the draw (a patched initialiser, "
                             "a different library build) before deleting the record.")
    return model


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
