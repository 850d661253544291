"""Loading the paper's three models (or stand-ins for them) and one adapter per architecture.

A model reference (`ref`) is one of:

* a hub id (`gpt2`, `EleutherAI/pythia-160m`, `EleutherAI/gpt-neo-125M`), optionally `id@revision`;
* a local directory holding a `from_pretrained` checkpoint;
* `standin:gpt2`, `standin:pythia-160m`, `standin:gpt-neo-125M`: the published configuration exactly,
  seeded random weights and a byte-level BPE tokenizer trained here; built once into a cache directory
  and loaded back through the same `from_pretrained` path as a real checkpoint;
* `tiny:gpt2`, `tiny:pythia`, `tiny:gpt-neo`: the same architectures at 2 layers and small width, for tests.

The adapter (`Architecture`) is the only place that knows where each architecture keeps its blocks,
its final layer norm and its attention output projection. `hooks.py` reaches into models through it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from emoverify.errors import EmoverifyError, WeightsUnavailable
from emoverify.provenance import atomic_write_json, sha256_bytes, sha256_file, sha256_file_once

__all__ = [
    "ARCHITECTURES",
    "PAPER_MODELS",
    "Architecture",
    "LoadedModel",
    "PaperModel",
    "fetch_command",
    "load_model",
    "load_tokenizer",
    "model_slug",
    "standin_dir",
    "weights_available",
]

# Bumped when the way stand-ins are built changes, so old cache directories are not reused.
STANDIN_FORMAT = 1
STANDIN_SEED = 0
_TOKENIZER_VOCAB = 8192
_SPECIAL = "<|endoftext|>"


@dataclass(frozen=True)
class PaperModel:
    """One of the paper's models: the name claims use, its hub id and its random-init stand-in."""

    name: str
    hub_id: str
    standin: str


PAPER_MODELS: dict[str, PaperModel] = {
    m.name: m
    for m in (
        PaperModel("gpt2", "gpt2", "standin:gpt2"),
        PaperModel("pythia-160m", "EleutherAI/pythia-160m", "standin:pythia-160m"),
        PaperModel("gpt-neo-125M", "EleutherAI/gpt-neo-125M", "standin:gpt-neo-125M"),
    )
}


@dataclass(frozen=True)
class Architecture:
    """Where one architecture keeps what later phases hook.

    Attributes:
        model_type: `config.model_type` as transformers names it.
        base: attribute of the causal-LM wrapper that holds the model without the LM head.
        blocks: attribute of the base model holding the `ModuleList` of blocks.
        final_norm: attribute of the base model holding the final layer norm.
        attn_out_proj: dotted path, inside one block, of the attention output projection; its input is
            the concatenation of the per-head outputs `[batch, pos, n_heads * d_head]`.
        mlp: dotted path, inside one block, of the MLP (a position-wise map `[batch, pos, d_model]`).
    """

    model_type: str
    base: str
    blocks: str
    final_norm: str
    attn_out_proj: str
    mlp: str = "mlp"


ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in (
        Architecture("gpt2", "transformer", "h", "ln_f", "attn.c_proj"),
        Architecture("gpt_neox", "gpt_neox", "layers", "final_layer_norm", "attention.dense"),
        Architecture("gpt_neo", "transformer", "h", "ln_f", "attn.attention.out_proj"),
    )
}


def _published_config(name: str) -> dict[str, Any]:
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


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM ready for extraction and interventions, with what is needed to cite it.

    Attributes:
        ref: the reference it was loaded from.
        model: the `transformers` causal LM, in eval mode.
        tokenizer: its tokenizer (right padding, a pad token set).
        arch: the architecture adapter.
        provenance: `ref`, `source` (hub/local/standin/tiny), `revision`, `weights_sha256`, `config`,
            `dtype`, `device`.
    """

    ref: str
    model: Any
    tokenizer: Any
    arch: Architecture
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> torch.nn.Module:
        """The model without its LM head (extraction runs this: a third fewer FLOPs)."""
        return getattr(self.model, self.arch.base)

    @property
    def blocks(self) -> torch.nn.ModuleList:
        return getattr(self.base, self.arch.blocks)

    @property
    def final_norm(self) -> torch.nn.Module:
        return getattr(self.base, self.arch.final_norm)

    def attn_out_proj(self, layer: int) -> torch.nn.Module:
        return self.blocks[layer].get_submodule(self.arch.attn_out_proj)

    def mlp(self, layer: int) -> torch.nn.Module:
        return self.blocks[layer].get_submodule(self.arch.mlp)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def n_heads(self) -> int:
        return int(self.model.config.num_attention_heads)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def slug(self) -> str:
        return model_slug(self.ref)


def model_slug(ref: str) -> str:
    """A file-system name for a model reference: `EleutherAI/pythia-160m` -> `EleutherAI--pythia-160m`."""
    if os.path.isdir(ref) and not ref.startswith(("standin:", "tiny:")):
        ref = "local-" + Path(ref).resolve().name
    return ref.replace("/", "--").replace(":", "-").replace("@", "--rev-")


def _split_revision(ref: str) -> tuple[str, str | None]:
    if "@" in ref and not os.path.isdir(ref):
        repo, revision = ref.split("@", 1)
        return repo, revision
    return ref, None


def fetch_command(ref: str) -> str:
    """The command that puts `ref`'s weights where `from_pretrained` finds them offline."""
    repo, revision = _split_revision(ref)
    rev = f" --revision {revision}" if revision else ""
    return f"hf download {repo}{rev}"


def _cache_root() -> Path:
    return Path(os.environ.get("EMOVERIFY_CACHE", Path.home() / ".cache" / "emoverify"))


def _hub_cached(repo: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, filename, revision=revision), str)

    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    return cached("config.json") and any(cached(w) for w in weights)


def weights_available(ref: str) -> bool:
    """Whether `ref` can be loaded without the network. Never touches the network."""
    if ref.startswith(("standin:", "tiny:")):
        return True
    if os.path.isdir(ref):
        return (Path(ref) / "config.json").is_file()
    repo, revision = _split_revision(ref)
    return _hub_cached(repo, revision)


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def weights_unavailable(ref: str) -> WeightsUnavailable:
    command = fetch_command(ref)
    return WeightsUnavailable(
        f"weights for {ref!r} are not on this machine and the model hub cannot be reached. "
        f"On a machine with network access run `{command}` (then copy ~/.cache/huggingface here), "
        f"or pass a local checkpoint directory instead of {ref!r}; "
        f"`--models standin:...` runs the pipeline on random-init stand-ins.",
        ref=ref,
        fetch_command=command,
    )


def check_weights(refs: list[str]) -> None:
    """Fail at once, before any work, if some model cannot be had: cached, local, or hub reachable."""
    missing = [ref for ref in refs if not weights_available(ref)]
    if missing and not _hub_reachable():
        raise weights_unavailable(missing[0])


# --------------------------------------------------------------------------------------------------
# Stand-ins


def _tokenizer_corpus() -> list[str]:
    """Texts the stand-in tokenizer is trained on: every prompt of every packaged dataset."""
    from emoverify.data import DATASETS, load_dataset

    texts: list[str] = []
    for name in DATASETS:
        texts.extend(load_dataset(name)["text"].tolist())
    return sorted(set(texts))


def _train_tokenizer(corpus: list[str]) -> Any:
    """A byte-level BPE tokenizer (the GPT-2 scheme) trained on `corpus`, wrapped for `save_pretrained`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
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
            return _published_config(name), name
        except KeyError:
            known = ", ".join(m.standin for m in PAPER_MODELS.values())
            raise EmoverifyError(f"unknown stand-in {ref!r}; known: {known}") from None
    if name not in _TINY:
        known = ", ".join(f"tiny:{n}" for n in _TINY)
        raise EmoverifyError(f"unknown tiny model {ref!r}; known: {known}")
    return dict(_TINY[name]), name


def standin_dir(ref: str) -> Path:
    """The cache directory of a stand-in, keyed by everything its bytes depend on."""
    from emoverify.data import DATASETS, dataset_sha256

    config, _ = _standin_spec(ref)
    key = json.dumps({"config": config, "seed": STANDIN_SEED, "format": STANDIN_FORMAT,
                      "corpus": [dataset_sha256(d) for d in DATASETS], "torch": torch.__version__},
                     sort_keys=True)
    return _cache_root() / "standins" / f"{model_slug(ref)}-{sha256_bytes(key.encode())[:12]}"


def _build_standin(ref: str, target: Path) -> None:
    """Write a stand-in checkpoint directory atomically: built in a temp dir, then renamed."""
    from transformers import AutoConfig, AutoModelForCausalLM

    spec, _ = _standin_spec(ref)
    spec = dict(spec)
    model_type = spec.pop("model_type")
    config = AutoConfig.for_model(model_type, **spec)
    torch.manual_seed(STANDIN_SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tokenizer = _train_tokenizer(_tokenizer_corpus())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with _quiet_transformers():
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


# --------------------------------------------------------------------------------------------------
# Loading


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the parameters and buffers as loaded (names, shapes, dtypes and bytes, in name order)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def load_tokenizer(ref: str) -> Any:
    """The tokenizer of `ref`, right-padded, with a pad token (the EOS token where none is defined)."""
    from transformers import AutoTokenizer

    path, revision, _ = _resolve(ref)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=False)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _resolve(ref: str) -> tuple[str, str | None, str]:
    """(path or hub id, revision, source) for `from_pretrained`."""
    if ref.startswith(("standin:", "tiny:")):
        return str(ensure_standin(ref)), None, ref.split(":", 1)[0]
    if os.path.isdir(ref):
        return ref, None, "local"
    repo, revision = _split_revision(ref)
    if not weights_available(ref) and not _hub_reachable():
        raise weights_unavailable(ref)
    return repo, revision, "hub"


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load progress bars; emoverify shows its own."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_model(ref: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a model reference (hub id, local directory, `standin:*`, `tiny:*`) for extraction.

    Args:
        ref: the model reference; a hub id may carry a revision as `id@revision`.
        device: where to put the model (`cpu`, `cuda`, `cuda:1`, `mps`).
        dtype: parameter dtype; float32 unless you accept lower-precision activations.

    Raises:
        WeightsUnavailable: the weights are neither here nor reachable; the message gives the command.
        EmoverifyError: the architecture is not one emoverify knows.

    Example:
        >>> lm = load_model("tiny:gpt2")
        >>> lm.n_layers, lm.d_model
        (2, 64)
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    path, revision, source = _resolve(ref)
    try:
        config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=False)
    except OSError as err:
        if source == "hub":
            raise weights_unavailable(ref) from err
        raise EmoverifyError(f"cannot read a model config from {ref!r}: {err}") from None
    arch = ARCHITECTURES.get(config.model_type)
    if arch is None:
        raise EmoverifyError(
            f"model {ref!r} has architecture {config.model_type!r}; emoverify knows "
            f"{', '.join(sorted(ARCHITECTURES))}. Add an `Architecture` entry in emoverify/models.py for it."
        )
    try:
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(path, revision=revision, dtype=dtype,
                                                         trust_remote_code=False)
    except OSError as err:
        if source == "hub":
            raise weights_unavailable(ref) from err
        raise EmoverifyError(f"cannot load weights from {ref!r}: {err}") from None
    model.eval().to(device)
    tokenizer = load_tokenizer(ref)
    provenance = {
        "ref": ref,
        "source": source,
        "path": path if source in ("local", "standin", "tiny") else None,
        "revision": revision or getattr(config, "_commit_hash", None),
        "weights_sha256": weights_sha256(model),
        "config": config.to_diff_dict(),
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "tokenizer_vocab": len(tokenizer),
    }
    return LoadedModel(ref=ref, model=model, tokenizer=tokenizer, arch=arch, provenance=provenance)
