"""Context managers that read from and write into a model's forward pass, and always remove themselves.

Every activation has one canonical name, built by `act_name`:

* `blocks.{l}.resid_pre`   the residual stream entering block l (`blocks.0.resid_pre` is the embedding
  output)                                                       # [batch, pos, d_model]
* `blocks.{l}.resid_post`  the residual stream leaving block l, before any final layer norm
                                                                # [batch, pos, d_model]
* `blocks.{l}.attn.z`      the per-head attention outputs: the input of the attention output projection,
  split into heads                                              # [batch, pos, n_heads, d_head]

Hooks are global state on the model. Each context manager registers its handles inside `try` and removes
exactly those handles in `finally`, whatever happens in between, so an exception half-way through a
forward pass leaves the model as it was.

Example:
    >>> with capture(lm, ["blocks.0.resid_post"]) as acts:
    ...     lm.base(input_ids)
    >>> acts["blocks.0.resid_post"].shape   # [batch, pos, d_model]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from emoverify.errors import EmoverifyError
from emoverify.models import LoadedModel

__all__ = [
    "Selector",
    "ablate_heads",
    "act_name",
    "add_to_residual",
    "capture",
    "parse_act_name",
]

# Reduces a captured activation before it is kept, e.g. to the positions that matter, so a capture of
# every layer does not hold [batch, pos, d_model] for each: (activation, name) -> kept tensor.
Selector = Callable[[torch.Tensor, str], torch.Tensor]

_SITES = ("resid_pre", "resid_post", "attn.z")
_NAME = re.compile(r"^blocks\.(\d+)\.(resid_pre|resid_post|attn\.z)$")


def act_name(site: str, layer: int, n_layers: int) -> str:
    """The canonical name of an activation; negative layers count from the end (-1 is the last block)."""
    if site not in _SITES:
        raise EmoverifyError(f"unknown activation site {site!r}; known: {', '.join(_SITES)}")
    if not -n_layers <= layer < n_layers:
        raise EmoverifyError(f"layer {layer} out of range for a model of {n_layers} blocks")
    return f"blocks.{layer % n_layers}.{site}"


def parse_act_name(name: str) -> tuple[int, str]:
    """(layer, site) of a canonical name."""
    match = _NAME.match(name)
    if match is None:
        raise EmoverifyError(
            f"not an activation name: {name!r}; expected blocks.<layer>.resid_pre|resid_post|attn.z"
        )
    return int(match.group(1)), match.group(2)


def _hidden(output: Any) -> torch.Tensor:
    # transformers >= 5 blocks return a tensor; older ones a tuple whose first entry is the residual.
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def _split_heads(z: torch.Tensor, n_heads: int) -> torch.Tensor:
    return z.unflatten(-1, (n_heads, z.shape[-1] // n_heads))  # [batch, pos, n_heads, d_head]


@contextmanager
def _registered(handles_factory: Callable[[list[Any]], None]) -> Iterator[None]:
    handles: list[Any] = []
    try:
        handles_factory(handles)
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture(lm: LoadedModel, names: Sequence[str], select: Selector | None = None) -> Iterator[dict[str, Any]]:
    """Record the named activations of every forward pass run inside the block.

    Args:
        lm: the loaded model.
        names: canonical activation names (see `act_name`).
        select: optional reduction applied to each activation before it is kept (detached).

    Yields:
        A dict filled during the forward pass: name -> tensor (the last pass's value).
    """
    for name in names:
        parse_act_name(name)
    store: dict[str, Any] = {}

    def keep(name: str, tensor: torch.Tensor) -> None:
        tensor = tensor.detach()
        store[name] = select(tensor, name) if select is not None else tensor

    def register(handles: list[Any]) -> None:
        for name in names:
            layer, site = parse_act_name(name)
            if layer >= lm.n_layers:
                raise EmoverifyError(f"{name}: the model has {lm.n_layers} blocks")
            block = lm.blocks[layer]
            if site == "resid_pre":
                def pre(module, args, kwargs, name=name):
                    keep(name, args[0] if args else kwargs["hidden_states"])
                handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
            elif site == "resid_post":
                def post(module, args, output, name=name):
                    keep(name, _hidden(output))
                handles.append(block.register_forward_hook(post))
            else:
                def z_hook(module, args, name=name):
                    keep(name, _split_heads(args[0], lm.n_heads))
                handles.append(lm.attn_out_proj(layer).register_forward_pre_hook(z_hook))

    with _registered(register):
        yield store


@contextmanager
def add_to_residual(
    lm: LoadedModel,
    layer: int,
    vector: torch.Tensor,
    alpha: float = 1.0,
    positions: slice | Sequence[int] | None = None,
) -> Iterator[None]:
    """Add `alpha * vector` to the residual stream leaving block `layer` (activation steering).

    Args:
        lm: the loaded model.
        layer: block index (negative counts from the end).
        vector: `[d_model]` direction, on any device; moved to the model's.
        alpha: scale.
        positions: token positions to steer (default all, including those generated later).
    """
    layer = parse_act_name(act_name("resid_post", layer, lm.n_layers))[0]
    if vector.shape != (lm.d_model,):
        raise EmoverifyError(f"steering vector has shape {tuple(vector.shape)}, expected ({lm.d_model},)")
    delta = (alpha * vector).to(device=lm.device, dtype=next(lm.model.parameters()).dtype)
    index = slice(None) if positions is None else positions

    def hook(module, args, output):
        hidden = _hidden(output).clone()
        hidden[:, index] += delta
        return _with_hidden(output, hidden)

    def register(handles: list[Any]) -> None:
        handles.append(lm.blocks[layer].register_forward_hook(hook))

    with _registered(register):
        yield


@contextmanager
def ablate_heads(
    lm: LoadedModel,
    layer: int,
    heads: Sequence[int],
    replacement: torch.Tensor | None = None,
) -> Iterator[None]:
    """Replace the outputs of some attention heads before the output projection.

    Args:
        lm: the loaded model.
        layer: block index.
        heads: head indices to ablate.
        replacement: `[n_heads, d_head]` values to put in (e.g. mean activations: mean ablation) or
            `None` for zero ablation.
    """
    layer = parse_act_name(act_name("attn.z", layer, lm.n_layers))[0]
    bad = [h for h in heads if not 0 <= h < lm.n_heads]
    if bad:
        raise EmoverifyError(f"heads {bad} out of range for {lm.n_heads} heads")
    head_index = torch.tensor(list(heads), dtype=torch.long)

    def hook(module, args):
        z = _split_heads(args[0], lm.n_heads).clone()  # [batch, pos, n_heads, d_head]
        if replacement is None:
            z[:, :, head_index] = 0.0
        else:
            z[:, :, head_index] = replacement[head_index].to(z)
        return (z.flatten(-2), *args[1:])

    def register(handles: list[Any]) -> None:
        handles.append(lm.attn_out_proj(layer).register_forward_pre_hook(hook))

    with _registered(register):
        yield
