"""Reading a planted structure back out of a model: the planted effect and the separability of emotions.

The planted effect (`planted_effect`) is read off one next-token distribution: right after an opening, how
much probability mass does the model put on the first tokens of each continuation class
(`CONTINUATION_OPENERS`)? For each emotion, the mass on its own class after its openings minus the same mass
after neutral openings: about 0 for a model without the structure (untrained, or trained on shuffled
continuations), up to the planted share for one that learnt it.

Separability: the residual stream at each prompt's last token (`sentence_end_residuals`) and the ratio of
between-class to within-class scatter (`analysis.probes.between_within_ratio`), a scale-free number a random-init model
holds near (k - 1) / (n - k).

Example:
    >>> lm = load_model("standin:planted-pythia")
    >>> planted_effect(lm).effect                # on the study's baseline prompts
    {'gratitude': 0.70..., 'anger': 0.77..., 'apology': 0.80...}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emoverify.data import load_dataset
from emoverify.data.planted_corpus import CONTINUATION_CLASS, CONTINUATION_CLASSES, CONTINUATION_OPENERS, EMOTIONS
from emoverify.errors import EmoverifyError
from emoverify.lm.hooks import act_name, capture

__all__ = [
    "PlantedEffect",
    "continuation_first_tokens",
    "continuation_mass",
    "planted_effect",
    "sentence_end_residuals",
]


def continuation_first_tokens(tokenizer: Any) -> dict[str, list[int]]:
    """The token ids a continuation of each class can begin with (after the space that follows an opening).

    Raises:
        EmoverifyError: two classes share a first token, so their mass could not be told apart.
    """
    tokens = {cls: sorted({tokenizer(" " + opener)["input_ids"][0] for opener in openers})
              for cls, openers in CONTINUATION_OPENERS.items()}
    seen: dict[int, str] = {}
    for cls, ids in tokens.items():
        for token in ids:
            if token in seen:
                raise EmoverifyError(f"continuation classes {seen[token]!r} and {cls!r} share the first token "
                                     f"{tokenizer.decode([token])!r}")
            seen[token] = cls
    return tokens


def _encoded(lm: Any, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, index of each text's last token). # [n, pos], [n, pos], [n]"""
    enc = lm.tokenizer(list(texts), return_tensors="pt", padding=True)
    mask = enc["attention_mask"].to(lm.device)
    return enc["input_ids"].to(lm.device), mask, mask.sum(1) - 1


@torch.no_grad()
def continuation_mass(lm: Any, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """Next-token probability mass on each continuation class's first tokens, right after each text.

    Args:
        lm: a `LoadedModel` (right padding, as `load_model` sets it).
        texts: openings, e.g. the study's prompts.
        batch_size: texts per forward pass (the logits of a batch are `[batch, pos, vocab]`).

    Returns:
        # [n_texts, 4] mass on `CONTINUATION_CLASSES` (acknowledgement, de-escalation, reassurance, neutral).
    """
    tokens = continuation_first_tokens(lm.tokenizer)
    rows = []
    for start in range(0, len(texts), batch_size):
        ids, mask, last = _encoded(lm, texts[start:start + batch_size])
        logits = lm.model(input_ids=ids, attention_mask=mask).logits  # [batch, pos, vocab]
        probs = torch.softmax(logits[torch.arange(len(ids)), last].float(), dim=-1)  # [batch, vocab]
        rows.append(torch.stack([probs[:, tokens[cls]].sum(-1) for cls in CONTINUATION_CLASSES], dim=1))
    return torch.cat(rows).cpu().numpy()


@dataclass(frozen=True)
class PlantedEffect:
    """How much each emotion moves the next-token distribution towards its continuation class.

    Attributes:
        mass: mean mass per opening emotion (rows, `EMOTIONS`) on each continuation class (columns,
            `CONTINUATION_CLASSES`). # [4, 4]
        effect: for each emotion, mass on its own continuation class after its openings minus the same
            mass after neutral openings (the planted effect; about 0 where there is none).
        n: openings per emotion.
    """

    mass: np.ndarray
    effect: dict[str, float]
    n: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"mass": {e: dict(zip(CONTINUATION_CLASSES, np.round(row.astype(float), 4).tolist(), strict=True))
                         for e, row in zip(EMOTIONS, self.mass, strict=True)},
                "effect": {e: round(v, 4) for e, v in self.effect.items()}, "n": self.n}


def planted_effect(lm: Any, texts: Sequence[str] | None = None, emotions: Sequence[str] | None = None) -> PlantedEffect:
    """The planted effect of a model, measured on openings (default: the study's `baseline` prompts).

    Args:
        lm: a `LoadedModel`.
        texts: openings; with `emotions`, their classes. Default: `load_dataset("baseline")`.
        emotions: the class of each text.
    """
    if texts is None:
        df = load_dataset("baseline")
        texts, emotions = df["text"].tolist(), df["emotion"].tolist()
    if emotions is None or len(emotions) != len(texts):
        raise EmoverifyError("planted_effect needs one emotion per text")
    mass = continuation_mass(lm, texts)  # [n, 4]
    labels = np.asarray(emotions)
    means = np.stack([mass[labels == e].mean(axis=0) for e in EMOTIONS])  # [4, 4]
    neutral = EMOTIONS.index("neutral")
    effect = {e: float(means[i, CONTINUATION_CLASSES.index(CONTINUATION_CLASS[e])]
                       - means[neutral, CONTINUATION_CLASSES.index(CONTINUATION_CLASS[e])])
              for i, e in enumerate(EMOTIONS) if e != "neutral"}
    return PlantedEffect(means, effect, {e: int((labels == e).sum()) for e in EMOTIONS})


@torch.no_grad()
def sentence_end_residuals(lm: Any, texts: Sequence[str], layer: int = -1, batch_size: int = 32) -> np.ndarray:
    """The residual stream leaving block `layer` at each text's last token. # [n_texts, d_model]"""
    name = act_name("resid_post", layer, lm.n_layers)
    rows = []
    for start in range(0, len(texts), batch_size):
        ids, mask, last = _encoded(lm, texts[start:start + batch_size])
        with capture(lm, [name]) as acts:
            lm.base(input_ids=ids, attention_mask=mask)
        rows.append(acts[name][torch.arange(len(ids)), last])  # [batch, d_model]
    return torch.cat(rows).float().cpu().numpy()
