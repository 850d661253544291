"""SUB-2/SUB-3's analysis on synthetic models: threads change nothing, a planted map is found, and a result
read back from the store reports the same figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import emoverify.analysis.threads
from emoverify.analysis.alignment import RESULT_TYPES, AlignmentSettings, NeutralAlignment, neutral_space_alignment
from emoverify.analysis.alignment_report import pair_report
from emoverify.analysis.design import Design
from emoverify.analysis.result_parts import from_parts, to_parts
from emoverify.store import Result, cached_result

EMOTIONS = ("gratitude", "anger", "apology", "neutral")
FRAMES = Design.matched_frames(36, EMOTIONS)
SETTINGS = AlignmentSettings(n_bootstrap=1000, n_permutations=1000, n_refit=1000, n_pairing_shuffles=20,
                             n_completions=200)


def _groups(shared: bool, n: int = 36, d: int = 120, rank: int = 12) -> list[dict[str, np.ndarray]]:
    """Three models of the same prompts, whose residuals lie near a rank-12 subspace of R^120 (so 36
    neutral prompts span it); with `shared`, B and C are linear images of A plus noise."""
    rng = np.random.default_rng(0)
    embed = rng.standard_normal((rank, d))
    centres = {e: 2.0 * rng.standard_normal(rank) for e in EMOTIONS}
    latent = {e: centres[e] + rng.standard_normal((n, rank)) for e in EMOTIONS}
    models = []
    for m in range(3):
        w = np.eye(d) if m == 0 else rng.standard_normal((d, d)) / np.sqrt(d)
        own = rng.standard_normal((rank, d))  # an unrelated model's embedding of its own latents
        models.append({e: (latent[e] @ embed @ w if shared else rng.standard_normal((n, rank)) @ own)
                       + 0.01 * rng.standard_normal((n, d)) for e in EMOTIONS})
    return models


def _reports(result: NeutralAlignment) -> dict[tuple[int, int], dict]:
    return {(p.source, p.target): pair_report(result, p) for p in result.pairs}


def _assert_same(a: NeutralAlignment, b: NeutralAlignment) -> None:
    assert _reports(a) == _reports(b)
    (arrays_a, record_a), (arrays_b, record_b) = to_parts(a), to_parts(b)
    assert record_a == record_b and arrays_a.keys() == arrays_b.keys()
    for name, values in arrays_a.items():
        np.testing.assert_array_equal(values, arrays_b[name], err_msg=name)


def test_the_figures_do_not_depend_on_the_number_of_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    groups = _groups(shared=True)
    threaded = neutral_space_alignment(groups, FRAMES, "neutral", seed=3, settings=SETTINGS)
    monkeypatch.setattr(emoverify.analysis.threads.os, "cpu_count", lambda: 1)
    serial = neutral_space_alignment(groups, FRAMES, "neutral", seed=3, settings=SETTINGS)
    _assert_same(threaded, serial)


def test_a_planted_map_is_recovered_and_an_unrelated_model_is_not() -> None:
    result = neutral_space_alignment(_groups(shared=True), FRAMES, "neutral", seed=1, settings=SETTINGS)
    core = pair_report(result, result.pair(0, 1))
    assert core["after_lstsq"] > 0.95 and core["held_out"]["r2_held_out_half"] > 0.9
    assert core["before_vector_cos2"] < 0.1  # the map, not the raw coordinates, carries the agreement
    assert core["pairing_shuffled_after_mean"] < core["after_lstsq"] - 0.5  # wrong pairs learn nothing
    unrelated = neutral_space_alignment(_groups(shared=False), FRAMES, "neutral", seed=1, settings=SETTINGS)
    other = pair_report(unrelated, unrelated.pair(0, 1))
    assert other["after_lstsq"] < 0.2 and other["held_out"]["r2_held_out_half"] < 0.2
    # the label-permutation null of an exact map is not low: shuffled groups map as well as emotions do
    assert core["permutation_percentile_after"] < 95
    assert "permutation_null" in pair_report(result, result.pair(1, 0))  # reverse pairs: no permutation null


def test_a_stored_result_reads_back_as_the_same_figures(tmp_path: Path) -> None:
    groups = _groups(shared=True, n=20)
    held_out = [{e: x[:6] + 0.1 for e, x in g.items()} for g in _groups(shared=True, n=20)]
    settings = AlignmentSettings(n_bootstrap=50, n_permutations=40, n_refit=30, n_pairing_shuffles=5,
                                 n_completions=10, pca_k=10)
    fresh = neutral_space_alignment(groups, Design.matched_frames(20, EMOTIONS), "neutral", seed=2, settings=settings,
                                    held_out=held_out)
    assert fresh.pair(0, 1).held_out.unseen is not None

    def stored() -> Result:
        return cached_result(tmp_path, "neutral-alignment", {"test": 1}, lambda: Result(*to_parts(fresh)))

    first, second = stored(), stored()
    assert not first.from_cache and second.from_cache
    for result in (first, second):
        _assert_same(from_parts(result.arrays, result.record, RESULT_TYPES), fresh)
