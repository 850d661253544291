"""SUB-1's analysis on synthetic models: a shared subspace overlaps fully, unrelated ones at chance."""

from __future__ import annotations

import numpy as np

from emoverify.analysis.design import Design
from emoverify.analysis.raw_overlap import raw_subspace_overlap

EMOTIONS = ("gratitude", "anger", "apology", "neutral")


def _residuals(n: int = 40, d: int = 60, layers: int = 3) -> list[dict[str, np.ndarray]]:
    """Model 0 and 1 share their residuals up to noise; model 2 draws its own."""
    rng = np.random.default_rng(0)
    base = {e: rng.standard_normal((n, layers, d)) + rng.standard_normal(d) for e in EMOTIONS}
    return [base, {e: x + 1e-6 * rng.standard_normal(x.shape) for e, x in base.items()},
            {e: rng.standard_normal((n, layers, d)) for e in EMOTIONS}]


def test_a_shared_subspace_overlaps_fully_and_an_unrelated_one_at_chance() -> None:
    result = raw_subspace_overlap(_residuals(), Design.matched_frames(40, EMOTIONS), "neutral", layer=2, k=10,
                                  k_sweep=(3, 10, 200), seed=0, n_bootstrap=20, n_permutations=30)
    assert result.k_sweep == (3, 10) and result.n_prompts == 120 and result.d == 60
    shared, unrelated = result.pairs[0], result.pairs[1]
    assert (shared.a, shared.b, unrelated.a, unrelated.b) == (0, 1, 0, 2)
    assert shared.pca.mean_cos2 > 0.999 and shared.span.mean_cos2 > 0.999
    assert np.all(shared.by_layer > 0.999) and np.all(shared.bootstrap > 0.999)
    assert abs(unrelated.pca.mean_cos2 - 10 / 60) < 0.1  # chance is k/d
    assert shared.bootstrap.shape == (20,) and shared.span_null.shape == (30,) and shared.jackknife.shape == (40,)
    assert result.unit == "frame" and np.all(result.jackknife_strata == 0)
    assert np.median(shared.span_null) < shared.span.mean_cos2  # shuffled labels span other directions
