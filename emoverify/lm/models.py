"""Loading the paper's three models (or stand-ins for them) and one adapter per architecture.

A model reference (`ref`) is one of:

* a hub id (`gpt2`, `EleutherAI/pythia-160m`, `EleutherAI/gpt-neo-125M`), optionally `id@revision`;
* a local directory holding a `from_pretrained` checkpoint;
* `standin:gpt2`, `standin:pythia-160m`, `standin:gpt-neo-125M`: the published configuration exactly,
  seeded random weights and a byte-level BPE tokenizer trained here; built once into a cache directory
  and loaded back through the same `from_pretrained` path as a real checkpoint;
* `tiny:gpt2`, `tiny:pythia`, `tiny:gpt-neo`: the same architectures at 2 layers and small width, for tests;
* either kind with `~seed<N>` (`standin:gpt2~seed1`): weights drawn from seed N at load time, checked against
  the sha256 of the seed's first draw; seed 0's configuration and tokenizer (`lm.standins`).

The adapter (`Architecture`) is the only place that knows where each architecture keeps its blocks,
its final layer norm and its attention output projection. `hooks.py` reaches into models through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from emoverify.errors import EmoverifyError
from emoverify.lm.checkpoints import (
    hub_reachable,
    model_slug,
    split_revision,
    weights_available,
    weights_unavailable,
)
from emoverify.lm.standin_build import draw_standin, quiet_transformers, weights_sha256
from emoverify.lm.standins import ensure_standin
from emoverify.paper import split_seed

__all__ = ["ARCHITECTURES", "Architecture", "LoadedModel", "load_model", "load_tokenizer", "weights_sha256"]


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




def load_tokenizer(ref: str) -> Any:
    """The tokenizer of `ref`, right-padded, with a pad token (the EOS token where none is defined)."""
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
    repo, revision = split_revision(ref)
    if not weights_available(ref) and not hub_reachable():
        raise weights_unavailable(ref)
    return repo, revision, "hub"


def load_model(ref: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a model reference (hub id, local directory, `standin:*`, `tiny:*`, seeded or not) for extraction.

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
    seed = split_seed(ref)[1]
    try:
        if seed:  # drawn, on the CPU in float32 as the record was, then converted
            model = draw_standin(ref).to(dtype)
        else:
            with quiet_transformers():
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
        "seed": seed if source in ("standin", "tiny") else None,  # weights drawn from this seed (0: stored)
        "revision": revision or getattr(config, "_commit_hash", None),
        "weights_sha256": weights_sha256(model),
        "config": config.to_diff_dict(),
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "tokenizer_vocab": len(tokenizer),
    }
    return LoadedModel(ref=ref, model=model, tokenizer=tokenizer, arch=arch, provenance=provenance)
