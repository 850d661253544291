"""SUB-1..3's analyses go through the result store: read back under the same key, recomputed under another."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from emoverify.computations import subspace
from emoverify.computations import subspace as subspace_claims
from emoverify.computations.registry import ClaimContext
from emoverify.computations.subspace import ModelView, stored_raw_overlap
from emoverify.lm.activation_store import ensure_activations

EMOTIONS = ("gratitude", "anger", "apology", "neutral")


def _views(key: str | None = "acts") -> list[ModelView]:
    rng = np.random.default_rng(0)
    views = []
    for m in range(2):
        every = {e: rng.standard_normal((20, 2, 80)) for e in EMOTIONS}  # [n, n_layers + 1, d]
        views.append(ModelView(name=f"m{m}", ref=f"ref{m}", groups={e: x[:, 1] for e, x in every.items()},
                               all_layers=every, ids={e: tuple(f"{e}-{i:03d}" for i in range(1, 21)) for e in EMOTIONS},
                               layer=1, activations_key=None if key is None else f"{key}{m}"))
    return views


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("recomputed instead of read back")


def test_raw_overlap_is_read_back_and_keyed_by_its_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = ClaimContext(artifacts_dir=tmp_path, figures_dir=None, model_source="standin")
    fresh = stored_raw_overlap(ctx, _views(), "baseline", "sentence_end", 5)
    assert list((tmp_path / "results" / "raw-overlap").iterdir())
    monkeypatch.setattr(subspace_claims, "raw_subspace_overlap", _refuse)
    stored = stored_raw_overlap(ctx, _views(), "baseline", "sentence_end", 5)
    assert stored.pairs[0].pca == fresh.pairs[0].pca
    np.testing.assert_array_equal(stored.pairs[0].bootstrap, fresh.pairs[0].bootstrap)
    for other in (lambda: stored_raw_overlap(dataclasses.replace(ctx, seed=1), _views(), "baseline", "sentence_end", 5),
                  lambda: stored_raw_overlap(ctx, _views("other"), "baseline", "sentence_end", 5),
                  lambda: stored_raw_overlap(ctx, _views(), "baseline", "sentence_end", 6),
                  lambda: stored_raw_overlap(ctx, _views(None), "baseline", "sentence_end", 5)):  # not stored
        with pytest.raises(AssertionError, match="recomputed"):
            other()


def test_views_of_stored_activations_carry_the_entry_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store key of SUB-1..3 holds each model's activation entry: a view without it is never stored (it
    once came from a manifest field the store no longer wrote, and every warm run recomputed SUB-1..3)."""
    stored = {ref: ensure_activations(ref, "baseline", tmp_path) for ref in ("tiny:gpt2", "tiny:pythia")}
    refs = {"gpt2": "tiny:gpt2", "pythia-160m": "tiny:pythia"}
    monkeypatch.setattr(subspace, "activations", lambda ctx, name, dataset: stored[refs[name]])
    views = subspace.load_views(ClaimContext(artifacts_dir=tmp_path), ["gpt2", "pythia-160m"], "baseline",
                                "sentence_end", "last")
    assert [v.activations_key for v in views] == [stored["tiny:gpt2"].cache_key, stored["tiny:pythia"].cache_key]
    assert all(len(v.activations_key) == 16 for v in views) and views[0].activations_key != views[1].activations_key
