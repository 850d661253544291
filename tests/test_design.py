"""`emoverify.analysis.design`: the declared unit, its resamples' shapes and meaning, intervals and the null rule."""

from __future__ import annotations

import numpy as np
import pytest

from emoverify.analysis.design import Design, bootstrap_units, jackknife_units, permute_labels
from emoverify.analysis.intervals import (
    bca_acceleration,
    bca_bounds,
    diagnostic,
    percentile_in_null,
    permutation_p_value,
    reported_interval,
)
from emoverify.analysis.resampling import permutation_weights, weighted_means
from emoverify.errors import EmoverifyError

CLASSES = ("gratitude", "anger", "apology", "neutral")


def test_a_matched_design_pools_its_classes_class_major() -> None:
    design = Design.matched_frames(3, CLASSES)
    assert (design.unit, design.n_units, design.n_total, design.offsets) == ("frame", 3, 12, (0, 3, 6, 9))
    np.testing.assert_array_equal(design.labels, np.repeat(np.arange(4), 3))
    assert design == Design.from_frames({c: ["f001", "f002", "f003"] for c in CLASSES})
    assert design.to_json() == {"unit": "frame", "n_units": 3, "classes": list(CLASSES),
                                "per_class": dict.fromkeys(CLASSES, 3)}


@pytest.mark.parametrize(("frames", "message"), [
    ({"gratitude": ["f1", "f2", "f3"], "anger": ["f1", "f3", "f2"]},
     "class 'anger' row 1 is frame 'f3' where class 'gratitude' has 'f2'"),
    ({"gratitude": ["f1", "f2", "f3"], "anger": ["f1", "f2"]},
     "class 'anger' has 2 rows and class 'gratitude' 3: frame 'f3' (row 2 of 'gratitude') is missing from 'anger'"),
    ({"gratitude": ["f1", "f2"], "anger": ["f1", "f2", "f9"]}, "frame 'f9' (row 2 of 'anger') is missing from"),
    ({"gratitude": ["f1", "f1"], "anger": ["f1", "f1"]}, "frame 'f1' appears twice in class 'gratitude'"),
    ({"gratitude": []}, "class 'gratitude' has no rows"),
])
def test_from_frames_names_the_first_mismatch(frames: dict[str, list[str]], message: str) -> None:
    with pytest.raises(EmoverifyError, match="not matched frames") as error:
        Design.from_frames(frames)
    assert message in str(error.value)


def test_a_frame_bootstrap_draws_the_same_frames_in_every_class() -> None:
    design = Design.matched_frames(10, CLASSES)
    acts = np.random.default_rng(0).standard_normal((design.n_total, 5))  # [n_total, d]
    draws = bootstrap_units(design, 20, np.random.default_rng(1))
    per_class = draws.counts.reshape(20, 4, 10)  # [B, C, n]
    assert np.all(per_class == per_class[:, :1]) and np.all(per_class.sum(axis=2) == 10)
    means = weighted_means(draws.weights(), acts)  # [B, C, d]
    rows = draws.rows()  # [B, 40]
    for c, name in enumerate(CLASSES):
        class_acts = acts[10 * c:10 * (c + 1)]
        np.testing.assert_allclose(means[:, c], weighted_means(draws.class_weights(name), class_acts))
        np.testing.assert_allclose(means[:, c], class_acts[draws.class_rows(name)].mean(axis=1))
        np.testing.assert_array_equal(rows[:, 10 * c:10 * (c + 1)], draws.class_rows("gratitude") + 10 * c)
    emotions = draws.rows(CLASSES[:3])  # [B, 30] into the pool of the three emotions, as SUB-1 resamples
    np.testing.assert_array_equal(emotions, rows[:, :30])
    with pytest.raises(EmoverifyError, match="design's order"):
        draws.rows(("neutral", "anger"))
    with pytest.raises(ValueError):
        draws.counts[0, 0] = 5.0  # shared by every model: read-only


def test_an_independent_bootstrap_resamples_each_class_on_its_own() -> None:
    design = Design.independent({"anger": 30, "neutral": 40})
    assert (design.unit, design.n_units) == ("prompt", 70)
    draws = bootstrap_units(design, 50, np.random.default_rng(2))
    assert np.all(draws.counts[:, :30].sum(axis=1) == 30) and np.all(draws.counts[:, 30:].sum(axis=1) == 40)
    assert draws.class_rows("anger").shape == (50, 30) and draws.class_rows("neutral").shape == (50, 40)
    np.testing.assert_allclose(draws.weights().sum(axis=2), 1.0)


def test_within_frame_shuffles_permute_each_frames_labels() -> None:
    design = Design.matched_frames(25, CLASSES)
    shuffles = permute_labels(design, 200, np.random.default_rng(3))
    per_frame = np.swapaxes(shuffles.labels.reshape(200, 4, 25), 1, 2)  # [P, n, C]: labels of a frame's prompts
    np.testing.assert_array_equal(np.sort(per_frame, axis=2), np.broadcast_to(np.arange(4), per_frame.shape))
    assert 0.2 < np.mean(per_frame[..., 0] == 0) < 0.3  # a prompt keeps its label a quarter of the time
    weights = shuffles.weights()  # [P, C, n_total]
    np.testing.assert_allclose(weights.sum(axis=2), 1.0)
    neutral = shuffles.class_rows("neutral")  # [P, n]
    assert neutral.shape == (200, 25) and np.all(np.diff(neutral, axis=1) > 0)
    np.testing.assert_array_equal(np.sort(neutral % 25, axis=1), np.broadcast_to(np.arange(25), neutral.shape))


def test_an_independent_design_shuffles_as_the_old_permutation_weights() -> None:
    design = Design.independent({"gratitude": 30, "anger": 20, "neutral": 25})
    new = permute_labels(design, 40, np.random.default_rng(5)).weights()
    old = permutation_weights(design.labels, 3, 40, np.random.default_rng(5))
    np.testing.assert_array_equal(new, old)


def test_the_jackknife_leaves_out_one_unit() -> None:
    frames = jackknife_units(Design.matched_frames(6, CLASSES))
    assert frames.n_draws == 6 and np.all(frames.strata == 0)
    np.testing.assert_array_equal(frames.counts.reshape(6, 4, 6), np.broadcast_to(1 - np.eye(6)[:, None], (6, 4, 6)))
    assert frames.rows().shape == (6, 20)
    prompts = jackknife_units(Design.independent({"anger": 3, "neutral": 4}))
    np.testing.assert_array_equal(prompts.strata, [0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(EmoverifyError, match="differ in size"):
        prompts.rows(("anger",))
    with pytest.raises(EmoverifyError, match="at least two"):
        jackknife_units(Design.matched_frames(1, CLASSES))


def test_an_interval_that_contains_its_estimate_has_no_note() -> None:
    draws = np.random.default_rng(6).normal(0.5, 0.1, 2000)
    interval = reported_interval(draws, 0.5)
    assert interval.method == "percentile" and interval.contains_estimate and interval.note == ""
    np.testing.assert_allclose([interval.lo, interval.hi], np.quantile(draws, [0.025, 0.975]))


def test_an_interval_past_its_estimate_is_reported_as_is_with_its_bias() -> None:
    draws = np.linspace(0.2, 0.4, 1001)  # centred 0.15 above an estimate of 0.15
    interval = reported_interval(draws, 0.15)
    assert interval.method == "percentile" and not interval.contains_estimate
    np.testing.assert_allclose([interval.lo, interval.hi], np.quantile(draws, [0.025, 0.975]))  # not switched
    assert interval.bias == pytest.approx(0.15)
    assert "lies below the percentile interval" in interval.note and "+0.15" in interval.note
    assert interval.to_json()["contains_estimate"] is False
    # BCa is undefined with every draw above the estimate: said, and the percentile interval reported.
    bca = reported_interval(draws, 0.15, jackknife=np.linspace(0.1, 0.2, 30))
    assert bca.method == "percentile" and "BCa is undefined: all 1001 draws lie above" in bca.note
    with_nan = reported_interval(np.append(draws, np.nan), 0.3)
    assert with_nan.contains_estimate and "1 of 1002 draws were not finite" in with_nan.note


def test_bca_is_batched_and_its_acceleration_is_efrons() -> None:
    rng = np.random.default_rng(7)
    draws = rng.gamma(3.0, size=(4000, 2, 3))  # [B, 2, 3]
    estimate = np.full((2, 3), 2.8)
    jackknife = rng.gamma(3.0, size=(50, 2, 3))
    lo, hi = bca_bounds(draws, estimate, jackknife)
    for i in range(2):
        for j in range(3):
            one = bca_bounds(draws[:, i, j], estimate[i, j], jackknife[:, i, j])
            np.testing.assert_allclose([lo[i, j], hi[i, j]], [float(one[0]), float(one[1])])
    d = jackknife.mean(axis=0) - jackknife
    np.testing.assert_allclose(bca_acceleration(jackknife), np.sum(d**3, 0) / (6 * np.sum(d**2, 0) ** 1.5))
    assert bca_acceleration(np.ones(10)) == 0.0


def test_permutation_p_values_count_the_observed_shuffle() -> None:
    null = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert permutation_p_value(0.75, null) == pytest.approx(3 / 10)
    assert permutation_p_value(0.75, null, "less") == pytest.approx(8 / 10)
    assert permutation_p_value(0.75, null, "two-sided") == pytest.approx(6 / 10)
    assert permutation_p_value(0.7 * (1 + 1e-15), null) == pytest.approx(4 / 10)  # equal up to rounding: counted
    np.testing.assert_allclose(permutation_p_value(np.array([0.05, 0.95]), null[:, None]), [1.0, 0.1])
    with pytest.raises(EmoverifyError):
        permutation_p_value(0.5, null, "both")  # type: ignore[arg-type]
    assert percentile_in_null(0.5, np.array([0.4, 0.5, 0.6, 0.7])) == pytest.approx(37.5)


def test_a_figure_is_diagnostic_only_outside_the_central_range_of_its_null() -> None:
    null = np.linspace(0.0, 1.0, 401)
    assert diagnostic(1.2, null).diagnostic and diagnostic(-0.1, null).diagnostic
    inside = diagnostic(0.9, null)
    assert not inside.diagnostic and "inside the central 95% range [0.025, 0.975]" in inside.reason
    assert not diagnostic(0.975, null).diagnostic  # on the edge is inside
    seeds_and_completions = [np.array([0.1, 0.2, 0.3]), np.linspace(0.1, 0.3, 50)]
    pooled = diagnostic(0.35, seeds_and_completions)
    assert pooled.diagnostic and pooled.n_draws == 53 and "above" in pooled.reason
    few = diagnostic(0.35, np.array([0.1, 0.2, 0.3]))
    assert "only 3 draws" in few.reason and few.to_json()["n_null_draws"] == 3
    with pytest.raises(EmoverifyError):
        diagnostic(0.5, np.array([np.nan]))
