"""Weighted class means of resampled prompts, and the older per-prompt resampling weights.

`weighted_means` turns any resampling expressed as weights over prompts into each draw's class means with one
`tensordot`: the weights of `analysis.design` (frame bootstrap, within-frame shuffles, jackknife) go through it
unchanged.

`bootstrap_weights` and `permutation_weights` are the per-prompt scheme: each class resampled on its own, labels
shuffled across the pooled prompts. That is the right scheme only for a design without frames, and
`analysis.design` draws it itself (`Design.independent`); the analyses no longer use these two. They stay as the
counter-example of `tests/test_design_calibration.py`, which shows the scheme failing on frame-matched data
(coverage 0.7% of a nominal 95% interval, permutation p-values piled at 1), and `tests/test_design.py` checks
that an independent design's shuffles equal `permutation_weights`'s.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_weights", "permutation_weights", "weighted_means"]


def bootstrap_weights(n: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Resampling weights of `n_draws` bootstrap samples of `n` prompts (the per-prompt scheme, one class).

    Returns:
        counts / n: row b averages prompts as bootstrap draw b does. # [n_draws, n]
    """
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_draws)  # [n_draws, n]
    return counts / n


def permutation_weights(
    labels: np.ndarray, n_classes: int, n_perm: int, rng: np.random.Generator
) -> np.ndarray:
    """Averaging weights of each class under `n_perm` shuffles of the labels across the pool (per-prompt scheme).

    Args:
        labels: integer class of each pooled prompt. # [n]
        n_classes: number of classes (labels are 0..n_classes-1).
        n_perm: number of shuffles.
        rng: the generator.

    Returns:
        weights[p, c, i] = 1/|c| if prompt i has class c under shuffle p, else 0. # [n_perm, n_classes, n]
    """
    labels = np.asarray(labels)
    shuffled = rng.permuted(np.tile(labels, (n_perm, 1)), axis=1)  # [n_perm, n]
    one_hot = shuffled[:, None, :] == np.arange(n_classes)[None, :, None]  # [n_perm, n_classes, n]
    sizes = np.bincount(labels, minlength=n_classes).astype(np.float64)  # [n_classes]
    return one_hot / np.maximum(sizes, 1.0)[None, :, None]


def weighted_means(weights: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """Weighted means of prompts for every draw: `weights @ acts` over the prompt axis.

    Args:
        weights: # [..., n]
        acts: # [n, *features]

    Returns:
        # [..., *features]
    """
    return np.tensordot(weights, np.asarray(acts, dtype=np.float64), axes=([-1], [0]))
