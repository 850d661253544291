"""Stand-ins for the paper's models: the published configurations with seeded random weights.

`standin:gpt2`, `standin:pythia-160m` and `standin:gpt-neo-125M` are the exact published configurations
(`published_config`) with weights drawn by the architecture's own initialiser under `STANDIN_SEED`, and a
byte-level BPE tokenizer trained here on the study's prompts. `tiny:gpt2`, `tiny:pythia` and `tiny:gpt-neo`
are the same architectures at 2 layers and width 64, for unit tests. Each is built once into a cache
directory keyed by everything its bytes depend on, checked by sha256 on every use, and loaded back
through the same `from_pretrained` path as a real checkpoint (`lm.models.load_model`).
"""

from __future__ import annotations

import json
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

from emoverify.data import DATASETS, dataset_sha256, load_dataset
from emoverify.errors import EmoverifyError
from emoverify.lm.checkpoints import cache_root, model_slug
from emoverify.paper import PAPER_MODELS
from emoverify.provenance import atomic_write_json, sha256_bytes, sha256_file, sha256_file_once

__all__ = ["STANDIN_FORMAT", "STANDIN_SEED", "ensure_standin", "published_config", "quiet_transformers",
           "standin_dir", "train_tokenizer"]

# Bumped when the way stand-ins are built changes, so old cache directories are not reused.
STANDIN_FORMAT = 1
STANDIN_SEED = 0
_TOKENIZER_VOCAB = 8192
_SPECIAL = "<|endoftext|>"

def published_config(name: str) -> dict[str, Any]:
    """The published `config.json` fields of the paper's models (architecture only, no weights)."""
    if name == "gpt2":
        return dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                    activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
                    layer_norm_epsilon=1e-5, initializer_range=0.02, bos_token_id=50256, eos_token_id=50256)
    if name == "pythia-160m":
        return dict(model_type="gpt_neox", vocab_size=50304, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072, hidden_act="gelu", rotary_pct=0.25,
                    rotary_emb_base=10000, max_position_embeddings=2048, initializer_range=0.02,
                    layer_norm_eps=1e-5, use_parallel_residual=True, tie_word_embeddings=False,
                    attention_dropout=0.0, hidden_dropout=0.0, bos_token_id=0, eos_token_id=0)
    if name == "gpt-neo-125M":
        return dict(model_type="gpt_neo", vocab_size=50257, hidden_size=768, num_layers=12, num_heads=12,
                    attention_types=[[["global", "local"], 6]], window_size=256, max_position_embeddings=2048,
                    intermediate_size=None, activation_function="gelu_new", embed_dropout=0.0,
                    attention_dropout=0.0, resid_dropout=0.0, layer_norm_epsilon=1e-5,
                    initializer_range=0.02, bos_token_id=50256, eos_token_id=50256)
    raise KeyError(name)


_TINY: dict[str, dict[str, Any]] = {
    "gpt2": dict(model_type="gpt2", vocab_size=50257, n_positions=256, n_embd=64, n_layer=2, n_head=4,
                 activation_function="gelu_new", bos_token_id=50256, eos_token_id=50256),
    "pythia": dict(model_type="gpt_neox", vocab_size=50304, hidden_size=64, num_hidden_layers=2,
                   num_attention_heads=4, intermediate_size=256, hidden_act="gelu", rotary_pct=0.25,
                   max_position_embeddings=256, use_parallel_residual=True, tie_word_embeddings=False,
                   bos_token_id=0, eos_token_id=0),
    "gpt-neo": dict(model_type="gpt_neo", vocab_size=50257, hidden_size=64, num_layers=2, num_heads=4,
                    attention_types=[[["global", "local"], 1]], window_size=8, max_position_embeddings=256,
                    activation_function="gelu_new", bos_token_id=50256, eos_token_id=50256),
}



def _tokenizer_corpus() -> list[str]:
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


def _standin_spec(ref: str) -> tuple[dict[str, Any], str]:
    kind, name = ref.split(":", 1)
    if kind == "standin":
        try:
            return published_config(name), name
        except KeyError:
            known = ", ".join(m.standin for m in PAPER_MODELS.values())
            raise EmoverifyError(f"unknown stand-in {ref!r}; known: {known}") from None
    if name not in _TINY:
        known = ", ".join(f"tiny:{n}" for n in _TINY)
        raise EmoverifyError(f"unknown tiny model {ref!r}; known: {known}")
    return dict(_TINY[name]), name


def standin_dir(ref: str) -> Path:
    """The cache directory of a stand-in, keyed by everything its bytes depend on."""
    config, _ = _standin_spec(ref)
    key = json.dumps({"config": config, "seed": STANDIN_SEED, "format": STANDIN_FORMAT,
                      "corpus": [dataset_sha256(d) for d in DATASETS], "torch": torch.__version__},
                     sort_keys=True)
    return cache_root() / "standins" / f"{model_slug(ref)}-{sha256_bytes(key.encode())[:12]}"


def _build_standin(ref: str, target: Path) -> None:
    """Write a stand-in checkpoint directory atomically: built in a temp dir, then renamed."""
    spec, _ = _standin_spec(ref)
    spec = dict(spec)
    model_type = spec.pop("model_type")
    config = AutoConfig.for_model(model_type, **spec)
    torch.manual_seed(STANDIN_SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tokenizer = train_tokenizer(_tokenizer_corpus())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        record = {"ref": ref, "seed": STANDIN_SEED, "format": STANDIN_FORMAT, "torch": torch.__version__,
                  "files": {p.name: sha256_file(p) for p in sorted(tmp.glob("*.safetensors"))}}
        atomic_write_json(tmp / "standin.json", record)
        try:
            os.replace(tmp, target)
        except OSError:  # another process built it first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _standin_intact(directory: Path) -> bool:
    record_path = directory / "standin.json"
    if not record_path.is_file():
        return False
    try:
        files = json.loads(record_path.read_text())["files"]
    except (ValueError, KeyError):
        return False
    return bool(files) and all(
        (directory / name).is_file() and sha256_file_once(directory / name) == digest for name, digest in files.items()
    )


def ensure_standin(ref: str) -> Path:
    """The stand-in's checkpoint directory, built (or rebuilt, if its files fail their hashes) on demand."""
    directory = standin_dir(ref)
    if not _standin_intact(directory):
        if directory.exists():
            shutil.rmtree(directory)
        _build_standin(ref, directory)
    return directory



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
