"""The geometry claims resample the dataset's frames.

The design comes from the dataset's `frame` column; VEC-1..3, SUB-1 and SUB-2/3 draw frames (every class of a
frame together, the same frames in every model), shuffle labels within frames, and on synthetic data whose
frames dominate the residuals (as sentences dominate emotion words) report intervals that contain their
estimates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emoverify.analysis import alignment_draws, raw_overlap
from emoverify.analysis.alignment import AlignmentSettings, neutral_space_alignment
from emoverify.analysis.alignment_report import pair_report
from emoverify.analysis.design import Design, Permutations, Resamples
from emoverify.computations import _design
from emoverify.computations import vectors as vector_claims
from emoverify.computations._design import dataset_design, shared_design
from emoverify.computations.registry import ClaimContext
from emoverify.data import EMOTIONS, load_dataset
from emoverify.errors import EmoverifyError
from emoverify.lm.activation_store import ActivationSet, EmotionGroup

N_FRAMES = 70  # baseline's frames: the synthetic prompts take baseline's ids


def _ids(n: int = N_FRAMES) -> dict[str, tuple[str, ...]]:
    return {e: tuple(f"{e}-{i:03d}" for i in range(1, n + 1)) for e in EMOTIONS}


def _frame_data(rng: np.random.Generator, d: int, n: int = N_FRAMES, layers: int = 1,
                frame_scale: float = 10.0) -> dict[str, np.ndarray]:
    """Class means, plus frame effects shared by a frame's four prompts (`frame_scale` times the noise), plus
    noise. # [n, layers, d] per class"""
    frames = frame_scale * rng.standard_normal((n, layers, d))
    return {e: rng.standard_normal((1, layers, d)) + frames + rng.standard_normal((n, layers, d)) for e in EMOTIONS}


def _assert_frame_draws(draws: Resamples) -> None:
    """Every class has the same frames in every draw."""
    per_class = draws.counts.reshape(draws.n_draws, len(EMOTIONS), -1)  # [B, C, n]
    assert draws.design.unit == "frame"
    np.testing.assert_array_equal(per_class, np.broadcast_to(per_class[:, :1], per_class.shape))


def _assert_within_frames(shuffles: Permutations) -> None:
    """Each frame's prompts carry every label once under every shuffle."""
    n = shuffles.design.n_units
    per_frame = np.swapaxes(shuffles.labels.reshape(shuffles.n_draws, len(EMOTIONS), n), 1, 2)  # [P, n, C]
    np.testing.assert_array_equal(np.sort(per_frame, axis=2), np.broadcast_to(np.arange(4), per_frame.shape))


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    """Record what `module.name` returns."""
    seen: list[Any] = []
    original: Callable[..., Any] = getattr(module, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(module, name, recorded)
    return seen


# --- the design the dataset declares -----------------------------------------------------------------------

def test_the_baseline_dataset_declares_its_frames() -> None:
    table = load_dataset("baseline")
    ids = {e: tuple(table.loc[table["emotion"] == e, "id"]) for e in EMOTIONS}
    design = dataset_design("baseline", ids)
    assert (design.unit, design.n_units, design.classes) == ("frame", 70, EMOTIONS)
    assert shared_design("baseline", {"a": ids, "b": ids}) == design


def test_prompts_out_of_frame_order_or_unknown_are_refused() -> None:
    ids = _ids()
    swapped = {**ids, "anger": (ids["anger"][1], ids["anger"][0], *ids["anger"][2:])}
    with pytest.raises(EmoverifyError, match="row 0 is frame 'f002' where class 'gratitude' has 'f001'"):
        dataset_design("baseline", swapped)
    with pytest.raises(EmoverifyError, match="not in dataset 'baseline'.*anger-099"):
        dataset_design("baseline", {**ids, "anger": (*ids["anger"][:-1], "anger-099")})
    with pytest.raises(EmoverifyError, match="b and a have different resampling designs"):
        shared_design("baseline", {"a": ids, "b": {e: x[:60] for e, x in ids.items()}})


def test_a_dataset_without_frames_declares_independent_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_design, "load_dataset", lambda name: load_dataset("baseline").drop(columns="frame"))
    _design._frames_of.cache_clear()
    try:
        design = dataset_design("no-frames", _ids())
    finally:
        _design._frames_of.cache_clear()
    assert (design.unit, design.n_units, design.sizes) == ("prompt", 280, (70, 70, 70, 70))


# --- VEC -----------------------------------------------------------------------------------------------------

def test_vector_cosines_draw_frames_and_their_intervals_contain_the_estimates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    acts = _frame_data(rng, d=48, layers=3)  # [70, 3, 48] each
    ctx = ClaimContext(artifacts_dir=tmp_path, figures_dir=None, model_source="standin")
    ref = ctx.model_ref("gpt2")
    synthetic = ActivationSet(
        model_ref=ref, dataset="baseline", manifest={}, directory=tmp_path,
        groups={e: EmotionGroup(emotion=e, ids=_ids()[e], sentence_end=x.astype(np.float32),
                                emotion_token=x.astype(np.float32)) for e, x in acts.items()})
    monkeypatch.setattr(vector_claims, "activations", lambda ctx, name, dataset: synthetic)
    boots = _spy(monkeypatch, vector_claims, "bootstrap_units")
    shuffles = _spy(monkeypatch, vector_claims, "permute_labels")
    measured = vector_claims.emotion_vector_cosines(ctx, "gpt2")
    _assert_frame_draws(boots[0])
    _assert_within_frames(shuffles[0])
    assert measured.details["resampling"]["unit"] == "frame"
    for pair, (lo, hi) in zip(measured.details["by_pair"].values(), measured.interval, strict=True):
        interval = pair["bootstrap_interval"]
        assert interval["method"] == "BCa" and interval["contains_estimate"] and not interval["note"]
        assert lo <= pair["cosine"] <= hi and hi - lo < 0.2  # the frames cancel, in the draws as in the estimate


# --- SUB-1 ---------------------------------------------------------------------------------------------------

def test_raw_overlap_draws_frames_and_shuffles_within_them(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    residuals = [_frame_data(rng, d=30, n=20, layers=2) for _ in range(2)]
    boots = _spy(monkeypatch, raw_overlap, "bootstrap_units")
    shuffles = _spy(monkeypatch, raw_overlap, "permute_labels")
    result = raw_overlap.raw_subspace_overlap(residuals, Design.matched_frames(20, EMOTIONS), "neutral", 1, 5,
                                              (3,), seed=0, n_bootstrap=30, n_permutations=40)
    _assert_frame_draws(boots[0])
    _assert_within_frames(shuffles[0])
    assert result.pairs[0].bootstrap.shape == (30,) and result.pairs[0].jackknife.shape == (20,)
    with pytest.raises(EmoverifyError, match="not the groups"):
        raw_overlap.raw_subspace_overlap(residuals, Design.matched_frames(19, EMOTIONS), "neutral", 1, 5, (3,),
                                         seed=0, n_bootstrap=30, n_permutations=40)


# --- SUB-2, SUB-3 --------------------------------------------------------------------------------------------

def _models_sharing_frames(rng: np.random.Generator, n: int = 40, d: int = 60) -> list[dict[str, np.ndarray]]:
    """Two models of the same prompts: B is a linear image of A plus noise, and the frames dominate A."""
    a = {e: x[:, 0] for e, x in _frame_data(rng, d=d, n=n, frame_scale=5.0).items()}  # [n, d]
    w = rng.standard_normal((d, d)) / np.sqrt(d)
    return [a, {e: x @ w + 0.1 * rng.standard_normal(x.shape) for e, x in a.items()}]


def test_the_alignment_draws_frames_for_every_class_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    design = Design.matched_frames(40, EMOTIONS)
    draws = alignment_draws.draw_alignment(design, "neutral", 2, seed=0, n_bootstrap=50, n_permutations=60,
                                           n_pairing_shuffles=3)
    _assert_frame_draws(draws.bootstrap)
    assert draws.jackknife.n_draws == 40
    labels = np.argmax(draws.permutation, axis=1)  # [P, N]: the class each pooled prompt carries
    _assert_within_frames(Permutations(design=design, labels=labels))
    settings = AlignmentSettings(n_bootstrap=200, n_permutations=50, n_refit=50, n_pairing_shuffles=3,
                                 n_completions=10, pca_k=10)
    result = neutral_space_alignment(_models_sharing_frames(rng), design, "neutral", seed=0, settings=settings)
    assert result.unit == "frame" and result.pair(0, 1).bootstrap.after_jackknife.shape == (40,)
    report = pair_report(result, result.pair(0, 1))
    for name, interval in report["bootstrap_intervals"].items():
        assert interval["method"] == "BCa", name
        assert interval["contains_estimate"] or interval["bias"] != 0.0, name  # never silently off its estimate
    after = report["bootstrap_intervals"]["after"]
    assert after["contains_estimate"] and abs(after["bias"]) < 0.05  # frames cancel in the draws' vectors too
    with pytest.raises(EmoverifyError, match="not the groups"):
        neutral_space_alignment(_models_sharing_frames(rng), Design.matched_frames(39, EMOTIONS), "neutral", seed=0,
                                settings=settings)
