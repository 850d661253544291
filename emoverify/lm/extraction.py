"""Phase 2: residual-stream extraction, from prompts to arrays.

For a batch of prompts, one pass records the residual stream after the embedding and after every block
at two positions of each prompt (`SITES`):

* `sentence_end`: the last real token (padding-aware);
* `emotion_token`: the last token of the prompt's emotion span (for a neutral prompt, its matched span;
  see `emoverify/data/README.md`).

The layer axis is the stored one (`lm.activation_store.stored_index`): 0 is the embedding output, `l + 1`
the output of block `l`, before the final layer norm (so the last entry differs from
`output_hidden_states[-1]`, which transformers returns after the final norm). The model runs without its
LM head; the last block's output projection and MLP run only at the two kept positions
(`hooks.only_at_positions`), and `gelu_new` as PyTorch's fused kernel of the same formula (`hooks.fused_gelu`:
float rounding, recorded in the store's settings). Prompts are tokenized as the model's tokenizer does by
default (no BOS token is prepended) and position ids follow the attention mask, so a prompt gives the same
activations alone or in a left- or right-padded batch.

Where the arrays are kept, and how they are found again, is `lm.activation_store`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from emoverify.errors import EmoverifyError
from emoverify.lm import hooks
from emoverify.lm.activation_store import SITES, block_index
from emoverify.lm.hooks import KeptPositions, act_name, capture, only_at_positions
from emoverify.lm.models import LoadedModel
from emoverify.provenance import pause_for_fault_injection

__all__ = ["SITES", "EncodedPrompts", "encode_prompts", "extract_residuals"]


@dataclass(frozen=True)
class EncodedPrompts:
    """Tokenized prompts with the two positions extraction reads."""

    input_ids: torch.Tensor  # [batch, pos]
    attention_mask: torch.Tensor  # [batch, pos]
    position_ids: torch.Tensor  # [batch, pos]
    sentence_end: torch.Tensor  # [batch] index of the last real token
    emotion_token: torch.Tensor  # [batch] index of the last token of the emotion span


def _span_token(offsets: Sequence[tuple[int, int]], start: int, end: int, prompt_id: str) -> int:
    """Index of the last token whose characters overlap [start, end)."""
    hits = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    if not hits:
        raise EmoverifyError(f"prompt {prompt_id}: no token covers its emotion span [{start}, {end})")
    return hits[-1]


def encode_prompts(
    tokenizer: Any,
    texts: Sequence[str],
    spans: Sequence[tuple[int, int]],
    ids: Sequence[str] | None = None,
    padding_side: str = "right",
) -> EncodedPrompts:
    """Tokenize prompts, pad them, and locate the sentence end and the emotion token of each."""
    ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
    # One batched call: the fast tokenizer encodes the list in Rust, per-prompt calls cost ~0.5 ms each.
    enc = tokenizer(list(texts), return_offsets_mapping=True, add_special_tokens=True)
    rows, emotion_index = [], []
    for row, offsets, (start, end), prompt_id in zip(enc["input_ids"], enc["offset_mapping"], spans, ids,
                                                     strict=True):
        if not row:
            raise EmoverifyError(f"prompt {prompt_id} tokenizes to nothing")
        rows.append(row)
        emotion_index.append(_span_token(offsets, start, end, prompt_id))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    shift = []
    for i, row in enumerate(rows):
        offset = width - len(row) if padding_side == "left" else 0
        input_ids[i, offset : offset + len(row)] = torch.tensor(row)
        mask[i, offset : offset + len(row)] = 1
        shift.append(offset)
    shift_t = torch.tensor(shift)
    lengths = torch.tensor([len(r) for r in rows])
    return EncodedPrompts(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
        sentence_end=shift_t + lengths - 1,
        emotion_token=shift_t + torch.tensor(emotion_index),
    )


# Batches whose captures are kept on the device before one copy to the host (bounded memory: a batch of 32
# holds 32 x 2 x 13 x 768 floats, 2.5 MB, for the paper's models).
_PENDING_BATCHES = 16


def _stored_names(n_layers: int) -> list[str]:
    """The activation at each stored index: 0 is the embedding output (block 0's input), i is block i-1's output."""
    return [act_name("resid_pre", 0, n_layers) if i == 0 else act_name("resid_post", block_index(i), n_layers)
            for i in range(n_layers + 1)]


def extract_residuals(
    lm: LoadedModel,
    texts: Sequence[str],
    spans: Sequence[tuple[int, int]],
    ids: Sequence[str] | None = None,
    batch_size: int = 32,
    padding_side: str = "right",
    progress: bool = False,
    fused_gelu: bool = True,
) -> tuple[np.ndarray, dict[str, float]]:
    """Residual stream at the sentence end and the emotion token, for every layer.

    Prompts are batched by length (less padding) and run through the model without its LM head under
    `torch.inference_mode()`; hooks keep only the two positions of each prompt, and the last block's
    output projection and MLP run only at those positions (`hooks.only_at_positions`). With `fused_gelu`,
    `gelu_new` runs as PyTorch's fused kernel of the same formula (`hooks.fused_gelu`).

    Returns:
        `[n, 2, n_layers + 1, d_model]` float32 in input order (axis 1: `SITES`), and the timing:
        `seconds`, `samples_per_s`, `tokens_per_s`, `tokens`.
    """
    ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
    encoded = encode_prompts(lm.tokenizer, texts, spans, ids, padding_side)
    lengths = encoded.attention_mask.sum(-1)
    order = torch.argsort(lengths, descending=True, stable=True)
    names = _stored_names(lm.n_layers)
    out = np.empty((len(texts), 2, lm.n_layers + 1, lm.d_model), dtype=np.float32)
    kept = KeptPositions()

    def gather(t: torch.Tensor, name: str) -> torch.Tensor:
        return t[kept.rows, kept.index]  # [batch, 2, d_model]

    device = lm.device
    last = lm.n_layers - 1
    # Results stay on the device until a few batches have gathered, so a GPU is not stalled by a copy
    # to the host after every batch.
    pending: list[tuple[np.ndarray, torch.Tensor]] = []

    def flush() -> None:
        for rows_np, stacked in pending:
            out[rows_np] = stacked.float().cpu().numpy()
        pending.clear()

    start = time.perf_counter()
    with (
        torch.inference_mode(),
        hooks.fused_gelu(lm) if fused_gelu else nullcontext(),
        capture(lm, names, select=gather) as acts,
        only_at_positions([lm.attn_out_proj(last), lm.mlp(last)], kept),
    ):
        batches = range(0, len(texts), batch_size)
        for lo in tqdm(batches, desc=f"extract {lm.ref}", unit="batch", disable=not progress, leave=False):
            rows = order[lo : lo + batch_size]
            width = int(lengths[rows].max()) if padding_side == "right" else encoded.input_ids.shape[1]
            cols = slice(0, width) if padding_side == "right" else slice(None)
            kept.rows = torch.arange(len(rows), device=device)[:, None]
            kept.index = torch.stack(
                [encoded.sentence_end[rows], encoded.emotion_token[rows]], dim=1
            ).to(device)
            lm.base(
                input_ids=encoded.input_ids[rows, cols].to(device),
                attention_mask=encoded.attention_mask[rows, cols].to(device),
                position_ids=encoded.position_ids[rows, cols].to(device),
                use_cache=False,
            )
            pending.append((rows.numpy(), torch.stack([acts[n] for n in names], dim=2)))  # [b, 2, L+1, d]
            if len(pending) >= _PENDING_BATCHES:
                flush()
            if lo == 0:
                pause_for_fault_injection("extraction")  # the test hook (tests/test_faults.py); else a no-op
        flush()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    tokens = int(lengths.sum())
    timing = {"seconds": seconds, "samples_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds,
              "tokens": tokens, "batch_size": batch_size}
    return out, timing
