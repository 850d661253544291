"""Emotion vectors (Phase 3, 3.5) and their pairwise cosines, as pure functions over arrays.

Every function takes per-emotion arrays whose first axis is the prompt and whose last axis is the
residual dimension; anything between (usually the layer axis) is carried through. Nothing here knows
about models, hooks or the artifact store: `geometry_claims.py` adapts an `ActivationSet` to these.

Definitions (the paper is silent on them; the claim files cite these names):

- `class_mean`: the mean residual of each emotion's prompts, no reference subtracted.
- `centred`: the class mean minus the mean of the class means of all classes given (the four classes,
  neutral included), so a direction every class shares, such as Pythia's huge dimensions, cancels.
- `neutral_diff`: the class mean minus the neutral class mean. On `sentence_end` residuals this is the
  sentence-end emotion vector; on `emotion_token` residuals it is the token-based vector: the mean over
  emotion-e prompts of the residual at the last token of the emotion span, minus the mean over neutral
  prompts of the residual at their matched span.

Outlier dimensions: a dimension is an outlier at a layer when its mean absolute activation over all
prompts exceeds `k` times the median of that quantity over all dimensions (`k = 10` by default).
Removing one sets it to zero in every vector, so cosines are computed over the remaining dimensions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np

from emoverify.errors import EmoverifyError

__all__ = [
    "DEFAULT_OUTLIER_FACTOR",
    "PairwiseCosines",
    "VectorKind",
    "class_means",
    "cosine",
    "drop_dimensions",
    "emotion_pairs",
    "emotion_vectors",
    "outlier_dimensions",
    "pairwise_cosines",
]

VectorKind = Literal["class_mean", "centred", "neutral_diff"]
VECTOR_KINDS: tuple[VectorKind, ...] = ("class_mean", "centred", "neutral_diff")

# Pythia-160M's largest residual dimensions sit one to two orders of magnitude above the median;
# 10x keeps ordinary heavy-tailed dimensions and catches those.
DEFAULT_OUTLIER_FACTOR = 10.0


@dataclass(frozen=True)
class PairwiseCosines:
    """Cosines between every pair of emotion vectors.

    Attributes:
        pairs: the emotion pairs, in the order of the last axis of `values`.
        values: cosine of each pair. # [..., n_pairs]
    """

    pairs: tuple[tuple[str, str], ...]
    values: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """`{"gratitude/anger": values[..., 0], ...}`."""
        return {f"{a}/{b}": self.values[..., i] for i, (a, b) in enumerate(self.pairs)}


def class_means(groups: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mean over prompts of each class's residuals.

    Args:
        groups: emotion -> residuals. # [n_e, ..., d]

    Returns:
        emotion -> class mean. # [..., d]
    """
    means = {}
    for emotion, acts in groups.items():
        if acts.shape[0] == 0:
            raise EmoverifyError(f"class {emotion!r} has no prompts; an emotion vector needs at least one")
        means[emotion] = np.asarray(acts, dtype=np.float64).mean(axis=0)
    return means


def emotion_vectors(
    means: Mapping[str, np.ndarray], kind: VectorKind, reference: str = "neutral"
) -> dict[str, np.ndarray]:
    """Emotion vectors of one kind from class means (see the module docstring for the kinds).

    Args:
        means: class -> class mean, the reference class included. # [..., d]
        kind: `class_mean`, `centred` or `neutral_diff`.
        reference: the reference class; it is left out of the result.

    Returns:
        emotion -> vector, for every class except `reference`. # [..., d]
    """
    if reference not in means:
        raise EmoverifyError(f"reference class {reference!r} missing; classes: {sorted(means)}")
    emotions = [e for e in means if e != reference]
    if kind == "class_mean":
        return {e: means[e] for e in emotions}
    if kind == "centred":
        grand = np.mean([means[c] for c in means], axis=0)  # [..., d] mean of class means, all classes
        return {e: means[e] - grand for e in emotions}
    if kind == "neutral_diff":
        return {e: means[e] - means[reference] for e in emotions}
    raise EmoverifyError(f"unknown vector kind {kind!r}; expected one of {VECTOR_KINDS}")


def outlier_dimensions(acts: np.ndarray, factor: float = DEFAULT_OUTLIER_FACTOR) -> np.ndarray:
    """Dimensions whose mean |activation| exceeds `factor` x the median over dimensions.

    Args:
        acts: residuals of all prompts, every class pooled. # [n, ..., d]
        factor: the multiple of the median that marks an outlier.

    Returns:
        Boolean mask, True for an outlier dimension. # [..., d]
    """
    scale = np.abs(np.asarray(acts, dtype=np.float64)).mean(axis=0)  # [..., d]
    median = np.median(scale, axis=-1, keepdims=True)  # [..., 1]
    return scale > factor * median


def drop_dimensions(vectors: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """Zero the masked dimensions in every vector (cosines then run over the rest)."""
    return {e: np.where(mask, 0.0, v) for e, v in vectors.items()}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine along the last axis, broadcasting the others; 0 where either vector is 0."""
    num = np.sum(a * b, axis=-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def emotion_pairs(emotions: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """All unordered pairs, in the order the emotions are given."""
    return tuple(combinations(emotions, 2))


def pairwise_cosines(vectors: Mapping[str, np.ndarray]) -> PairwiseCosines:
    """Cosine between every pair of emotion vectors.

    Args:
        vectors: emotion -> vector, insertion order kept. # [..., d]

    Returns:
        `PairwiseCosines` with values # [..., n_pairs]
    """
    pairs = emotion_pairs(list(vectors))
    if not pairs:
        raise EmoverifyError("pairwise cosines need at least two emotion vectors")
    values = np.stack([cosine(vectors[a], vectors[b]) for a, b in pairs], axis=-1)
    return PairwiseCosines(pairs=pairs, values=values)
