"""Known answers for emotion vectors, centring and outlier removal; intervals and nulls of frame resamples."""

from __future__ import annotations

import numpy as np
import pytest

from emoverify.analysis.design import Design, bootstrap_units, jackknife_units, permute_labels
from emoverify.analysis.intervals import percentile_in_null, permutation_p_value, reported_interval
from emoverify.analysis.resampling import weighted_means
from emoverify.analysis.vectors import (
    class_means,
    cosine,
    drop_dimensions,
    emotion_vectors,
    outlier_dimensions,
    pairwise_cosines,
)
from emoverify.errors import EmoverifyError


def _groups(rng: np.random.Generator, n: int = 40, d: int = 32, shift: float = 0.0) -> dict[str, np.ndarray]:
    directions = {"gratitude": np.eye(d)[0], "anger": -np.eye(d)[0] + np.eye(d)[1], "apology": np.eye(d)[2]}
    groups = {e: rng.standard_normal((n, d)) * 0.1 + v for e, v in directions.items()}
    groups["neutral"] = rng.standard_normal((n, d)) * 0.1
    return {e: x + shift for e, x in groups.items()}


def test_neutral_diff_recovers_planted_directions() -> None:
    vectors = emotion_vectors(class_means(_groups(np.random.default_rng(0), n=400)), "neutral_diff")
    assert cosine(vectors["gratitude"], np.eye(32)[0]) > 0.99
    pairs = pairwise_cosines(vectors)
    assert pairs.pairs == (("gratitude", "anger"), ("gratitude", "apology"), ("anger", "apology"))
    np.testing.assert_allclose(pairs.values, [-1 / np.sqrt(2), 0.0, 0.0], atol=0.03)


def test_shared_offset_dominates_raw_means_and_cancels_when_centred() -> None:
    means = class_means(_groups(np.random.default_rng(1), shift=50.0))
    raw = pairwise_cosines(emotion_vectors(means, "class_mean")).values
    centred = pairwise_cosines(emotion_vectors(means, "centred")).values
    assert np.all(raw > 0.99)  # a common direction makes every raw cosine ~1
    assert np.all(centred < 0.9)
    np.testing.assert_allclose(sum(emotion_vectors(means, "centred").values()) + (
        means["neutral"] - np.mean(list(means.values()), axis=0)), 0.0, atol=1e-9)


def test_planted_huge_dimension_is_flagged_and_removing_it_restores_cosines() -> None:
    rng = np.random.default_rng(2)
    groups = _groups(rng, n=200)
    for e, x in groups.items():  # dim 7 is huge and differs a little between classes
        x[:, 7] = 300.0 + (5.0 if e != "neutral" else 0.0) + rng.standard_normal(len(x))
    acts = np.concatenate(list(groups.values()))
    mask = outlier_dimensions(acts)
    assert np.flatnonzero(mask).tolist() == [7]
    vectors = emotion_vectors(class_means(groups), "neutral_diff")
    raw = pairwise_cosines(vectors).values
    cleaned = pairwise_cosines(drop_dimensions(vectors, mask)).values
    assert np.all(raw > 0.9)  # dominated by the huge dimension
    np.testing.assert_allclose(cleaned, [-1 / np.sqrt(2), 0.0, 0.0], atol=0.05)


def test_layer_axis_is_carried_through() -> None:
    rng = np.random.default_rng(3)
    groups = {e: rng.standard_normal((10, 4, 8)) for e in ("gratitude", "anger", "apology", "neutral")}
    assert pairwise_cosines(emotion_vectors(class_means(groups), "neutral_diff")).values.shape == (4, 3)
    assert outlier_dimensions(np.concatenate(list(groups.values()))).shape == (4, 8)


def test_unknown_kind_and_missing_reference_are_errors() -> None:
    means = {"gratitude": np.ones(3), "neutral": np.zeros(3)}
    with pytest.raises(EmoverifyError):
        emotion_vectors(means, "raw")  # type: ignore[arg-type]
    with pytest.raises(EmoverifyError):
        emotion_vectors({"gratitude": np.ones(3)}, "neutral_diff")


def test_the_reported_interval_of_a_frame_bootstrap_covers_a_mean_difference_at_the_nominal_rate() -> None:
    """Frames with large effects shared by both classes: the difference of means cancels them, and so does
    every frame draw (both classes of a frame together)."""
    rng = np.random.default_rng(4)
    n, trials = 60, 300
    design = Design.matched_frames(n, ("anger", "neutral"))
    draws_w, jack_w = bootstrap_units(design, 1000, rng).weights(), jackknife_units(design).weights()
    hits = 0
    for _ in range(trials):
        frames = 5.0 * rng.standard_normal(n)  # [n], shared by a frame's two prompts
        pooled = np.concatenate([2.0 + frames + rng.standard_normal(n), frames + rng.standard_normal(n)])  # [2n]
        diff = [m[..., 0] - m[..., 1] for m in (weighted_means(w, pooled) for w in (draws_w, jack_w))]
        estimate = pooled[:n].mean() - pooled[n:].mean()
        interval = reported_interval(diff[0], estimate, diff[1])
        assert interval.method == "BCa" and interval.contains_estimate
        hits += interval.covers(2.0)
    assert 0.89 <= hits / trials <= 0.99


def _mean_difference_null(x: np.ndarray, design: Design, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """Mean of class 1 minus class 0 (class-major pool `x`), and under 500 within-frame shuffles."""
    n = design.n_units
    observed = x[n:].mean() - x[:n].mean()
    means = weighted_means(permute_labels(design, 500, rng).weights(), x)  # [P, 2]
    return observed, means[:, 1] - means[:, 0]


def test_permutation_percentile_of_a_planted_effect_is_high() -> None:
    rng = np.random.default_rng(6)
    design = Design.matched_frames(30, ("neutral", "anger"))
    frames = np.tile(3.0 * rng.standard_normal(30), 2)  # frame effects: three times the noise, twice the effect
    observed, null = _mean_difference_null(rng.standard_normal(60) + frames + design.labels * 1.5, design, rng)
    assert percentile_in_null(observed, null) > 99
    assert permutation_p_value(observed, null) < 0.01


def test_within_frame_permutation_p_values_without_effect_are_roughly_uniform() -> None:
    rng = np.random.default_rng(7)
    design = Design.matched_frames(20, ("neutral", "anger"))
    p_values = np.array([permutation_p_value(*_mean_difference_null(
        rng.standard_normal(40) + np.tile(3.0 * rng.standard_normal(20), 2), design, rng)) for _ in range(200)])
    assert 0.05 < np.mean(p_values < 0.2) < 0.35  # ~0.2 expected
    assert 0.4 < np.median(p_values) < 0.6
