"""Context managers that read from and write into a model's forward pass, and always remove themselves.

Every activation has one canonical name, built by `act_name`:

* `blocks.{l}.resid_pre`   the residual stream entering block l (`blocks.0.resid_pre` is the embedding
  output)                                                       # [batch, pos, d_model]
* `blocks.{l}.resid_post`  the residual stream leaving block l, before any final layer norm
                                                                # [batch, pos, d_model]
* `blocks.{l}.attn.z`      the per-head attention outputs: the input of the attention output projection,
  split into heads                                              # [batch, pos, n_heads, d_head]

Reading: `capture`. Editing: `add_to_residual` (steering), `ablate_heads`, and the two edits extraction
makes for speed, `fused_gelu` (a module swapped for PyTorch's fused kernel of the same function) and
`only_at_positions` (position-wise modules run at the kept positions only). No other module edits a
forward pass.

Hooks and swapped modules are global state on the model. Every context manager here makes its edits
through `_registered`, which records each one as it is made (inside `try`) and undoes exactly those, in
reverse order, in `finally`, whatever happens in between; so an exception half-way through a forward pass
or half-way through registering leaves the model as it was.

Example:
    >>> with capture(lm, ["blocks.0.resid_post"]) as acts:
    ...     lm.base(input_ids)
    >>> acts["blocks.0.resid_post"].shape   # [batch, pos, d_model]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers.activations import NewGELUActivation

from emoverify.errors import EmoverifyError
from emoverify.lm.models import LoadedModel

__all__ = [
    "KeptPositions",
    "Positions",
    "Selector",
    "ablate_heads",
    "act_name",
    "add_to_residual",
    "capture",
    "fused_gelu",
    "only_at_positions",
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


class _Swap:
    """A submodule replaced in place; `remove()` puts the original back (the interface of a hook handle)."""

    def __init__(self, owner: torch.nn.Module, name: str, replacement: torch.nn.Module) -> None:
        self.owner, self.name, self.original = owner, name, getattr(owner, name)
        setattr(owner, name, replacement)

    def remove(self) -> None:
        setattr(self.owner, self.name, self.original)


@contextmanager
def _registered(register: Callable[[list[Any]], None]) -> Iterator[None]:
    """Run `register(edits)`, which appends each edit (hook handle or `_Swap`) as it makes it; undo them all.

    The undo runs in reverse order in `finally`: after the block, after an exception inside it, and after
    `register` itself fails half-way (the edits made so far are undone).
    """
    edits: list[Any] = []
    try:
        register(edits)
        yield
    finally:
        for edit in reversed(edits):
            edit.remove()


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


Positions = slice | Sequence[int] | None


def _model_positions(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """The position of every token of a pass, as the model counts it: its position ids. # [batch, pos]

    Where the caller passed none, transformers' models number the new tokens from the cache length on,
    and so does this.
    """
    position_ids = kwargs.get("position_ids")
    tokens = args[0] if args else kwargs.get("input_ids")
    if tokens is None:
        tokens = kwargs["inputs_embeds"][..., 0]
    if position_ids is not None:
        return position_ids.expand(tokens.shape[0], -1)
    cache = kwargs.get("past_key_values")
    past = cache.get_seq_length() if cache is not None else 0
    return torch.arange(past, past + tokens.shape[1], device=tokens.device).expand(tokens.shape[0], -1)


def _position_mask(model_positions: torch.Tensor, wanted: slice | Sequence[int]) -> torch.Tensor:
    """Which tokens of a pass are at a wanted position. # [batch, pos] bool"""
    if isinstance(wanted, slice):
        start, step = wanted.start or 0, wanted.step or 1
        mask = (model_positions >= start) & ((model_positions - start) % step == 0)
        return mask if wanted.stop is None else mask & (model_positions < wanted.stop)
    return torch.isin(model_positions, torch.as_tensor(list(wanted), device=model_positions.device))


def _check_positions(positions: Positions) -> None:
    if positions is None:
        return
    if isinstance(positions, slice):
        bounds = (positions.start, positions.stop)
        if any(b is not None and b < 0 for b in bounds) or (positions.step is not None and positions.step <= 0):
            raise EmoverifyError(f"steering positions {positions} must count forward from the first token: "
                                 "a negative bound has no fixed meaning while tokens are being generated")
    elif any(int(q) < 0 for q in positions):
        raise EmoverifyError(f"steering positions {list(positions)} must be >= 0 (positions from the first token)")


@contextmanager
def add_to_residual(
    lm: LoadedModel,
    layer: int,
    vector: torch.Tensor,
    alpha: float = 1.0,
    positions: Positions = None,
) -> Iterator[None]:
    """Add `alpha * vector` to the residual stream leaving block `layer` (activation steering).

    Args:
        lm: the loaded model.
        layer: block index (negative counts from the end).
        vector: `[d_model]` direction, on any device; moved to the model's.
        alpha: scale.
        positions: the token positions to steer, as the model numbers them (its position ids: a row's first
            real token is 0 under left or right padding). They mean the same in one forward pass and in
            generation with a KV cache, where each step sees only the new token: `slice(5, None)` steers the
            sixth token on, generated ones included; `[4]` only the fifth. None (default): every position,
            every generated token included. Negative positions are refused.
    """
    layer = parse_act_name(act_name("resid_post", layer, lm.n_layers))[0]
    if vector.shape != (lm.d_model,):
        raise EmoverifyError(f"steering vector has shape {tuple(vector.shape)}, expected ({lm.d_model},)")
    _check_positions(positions)
    delta = (alpha * vector).to(device=lm.device, dtype=next(lm.model.parameters()).dtype)
    current: dict[str, torch.Tensor] = {}  # the running pass's model positions, set by the base model's pre-hook

    def note_positions(module, args, kwargs):
        current["positions"] = _model_positions(args, kwargs)

    def hook(module, args, output):
        hidden = _hidden(output)
        if positions is None:
            return _with_hidden(output, hidden + delta)
        if "positions" not in current:
            raise EmoverifyError("steering at chosen positions reads the token positions from the model's "
                                 "forward pass: run the model (lm.model or lm.base), not a block alone")
        mask = _position_mask(current["positions"], positions).to(hidden.dtype)  # [batch, pos]
        return _with_hidden(output, hidden + mask[..., None] * delta)

    def register(handles: list[Any]) -> None:
        if positions is not None:
            handles.append(lm.base.register_forward_pre_hook(note_positions, with_kwargs=True))
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


class _FusedTanhGELU(torch.nn.Module):
    """transformers' `gelu_new`, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as PyTorch's one fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x, approximate="tanh")


@contextmanager
def fused_gelu(lm: LoadedModel) -> Iterator[int]:
    """Run GPT-2's and GPT-Neo's `gelu_new` as the fused kernel of the same formula, then put it back.

    transformers computes `gelu_new` in several element-wise passes; the fused kernel computes the same
    function in one (results differ by float rounding, ~1e-6 relative on the stand-ins). Pythia's exact
    `gelu` is fused already and left alone. Yields the number of modules swapped.
    """
    mlps = [lm.mlp(layer) for layer in range(lm.n_layers)]
    targets = [mlp for mlp in mlps if isinstance(getattr(mlp, "act", None), NewGELUActivation)]

    def register(edits: list[Any]) -> None:
        for mlp in targets:
            edits.append(_Swap(mlp, "act", _FusedTanhGELU()))

    with _registered(register):
        yield len(targets)


@dataclass
class KeptPositions:
    """The positions `only_at_positions` keeps, set by the caller before each batch's forward pass.

    Attributes:
        rows: `torch.arange(batch)[:, None]`.  # [batch, 1]
        index: the kept positions of each row.  # [batch, k]
    """

    rows: torch.Tensor | None = None
    index: torch.Tensor | None = None


@contextmanager
def only_at_positions(modules: Sequence[torch.nn.Module], kept: KeptPositions) -> Iterator[None]:
    """Run position-wise modules only at the kept positions of each prompt; elsewhere their output is 0.

    Exact at the kept positions, because these modules act on each position alone. It is valid only where
    nothing downstream reads the other positions: extraction applies it to the attention output projection
    and the MLP of the last block, whose outputs reach only the last residual (read at the kept positions)
    and the final norm (not kept). That skips most of the last block's matmuls.

    Args:
        modules: position-wise modules (input and output `[batch, pos, d]`).
        kept: read at every forward pass; the caller updates it between batches.
    """
    seq_len: dict[int, int] = {}

    def before(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = args[0] if args else kwargs.pop("hidden_states")  # [batch, pos, d]
        seq_len[id(module)] = hidden.shape[1]
        return (hidden[kept.rows, kept.index], *args[1:]), kwargs  # [batch, k, d]

    def after(module: torch.nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor:
        full = output.new_zeros(output.shape[0], seq_len.pop(id(module)), output.shape[-1])  # [batch, pos, d]
        full[kept.rows, kept.index] = output
        return full

    def register(edits: list[Any]) -> None:
        for module in modules:
            edits.append(module.register_forward_pre_hook(before, with_kwargs=True))
            edits.append(module.register_forward_hook(after, with_kwargs=True))

    with _registered(register):
        yield
