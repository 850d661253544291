"""SUB-2/SUB-3's analysis on synthetic models: threads change nothing, and a planted map is found."""

from __future__ import annotations

import numpy as np
import pytest

import emoverify.analysis.threads
from emoverify.computations.subspace import ModelView, _alignment_core

EMOTIONS = ("gratitude", "anger", "apology", "neutral")


def _views(shared: bool, n: int = 36, d: int = 120, rank: int = 12) -> list[ModelView]:
    """Three models of the same prompts, whose residuals lie near a rank-12 subspace of R^120 (so 36
    neutral prompts span it); with `shared`, B and C are linear images of A plus noise."""
    rng = np.random.default_rng(0)
    embed = rng.standard_normal((rank, d))
    centres = {e: 2.0 * rng.standard_normal(rank) for e in EMOTIONS}
    latent = {e: centres[e] + rng.standard_normal((n, rank)) for e in EMOTIONS}
    views = []
    for m, name in enumerate(("a", "b", "c")):
        w = np.eye(d) if m == 0 else rng.standard_normal((d, d)) / np.sqrt(d)
        own = rng.standard_normal((rank, d))  # an unrelated model's embedding of its own latents
        groups = {e: (latent[e] @ embed @ w if shared else rng.standard_normal((n, rank)) @ own)
                  + 0.01 * rng.standard_normal((n, d)) for e in EMOTIONS}
        views.append(ModelView(name=name, ref=name, groups=groups,
                               all_layers={e: x[:, None] for e, x in groups.items()},
                               ids={e: tuple(f"{e}{i}" for i in range(n)) for e in EMOTIONS}, layer=0))
    return views


def test_the_figures_do_not_depend_on_the_number_of_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    views = _views(shared=True)
    threaded = _alignment_core(views, seed=3, held_out=None)
    monkeypatch.setattr(emoverify.analysis.threads.os, "cpu_count", lambda: 1)
    serial = _alignment_core(views, seed=3, held_out=None)
    assert threaded == serial


def test_a_planted_map_is_recovered_and_an_unrelated_model_is_not() -> None:
    core = _alignment_core(_views(shared=True), seed=1, held_out=None)["a->b"]
    assert core["after_lstsq"] > 0.95 and core["held_out"]["r2_held_out_half"] > 0.9
    assert core["before_vector_cos2"] < 0.1  # the map, not the raw coordinates, carries the agreement
    assert core["pairing_shuffled_after_mean"] < core["after_lstsq"] - 0.5  # wrong pairs learn nothing
    unrelated = _alignment_core(_views(shared=False), seed=1, held_out=None)["a->b"]
    assert unrelated["after_lstsq"] < 0.2 and unrelated["held_out"]["r2_held_out_half"] < 0.2
    # the label-permutation null of an exact map is not low: shuffled groups map as well as emotions do
    assert core["permutation_percentile_after"] < 95
