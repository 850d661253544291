"""Typed results split into arrays and JSON and rebuilt: bit for bit, through the real store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from emoverify.analysis.result_parts import from_parts, to_parts
from emoverify.errors import EmoverifyError
from emoverify.store import Result, cached_result


@dataclass(frozen=True)
class Inner:
    draws: np.ndarray
    mean: float
    null: np.ndarray | None


@dataclass(frozen=True)
class Outer:
    name: str
    sizes: tuple[int, ...]
    inner: tuple[Inner, ...]
    by_key: dict[str, float]
    flag: bool
    missing: Inner | None


def _example() -> Outer:
    rng = np.random.default_rng(0)
    return Outer(name="x", sizes=(3, 4), by_key={"a": 0.1, "b": float("nan")}, flag=True, missing=None,
                 inner=(Inner(draws=rng.standard_normal(5), mean=1 / 3, null=None),
                        Inner(draws=rng.integers(0, 9, size=(2, 3)), mean=np.float64(2.5), null=np.ones(2, bool))))


def _assert_equal(a: Outer, b: Outer) -> None:
    assert (a.name, a.sizes, a.flag, a.missing) == (b.name, b.sizes, b.flag, b.missing)
    assert a.by_key["a"] == b.by_key["a"] and np.isnan(b.by_key["b"])
    for x, y in zip(a.inner, b.inner, strict=True):
        np.testing.assert_array_equal(x.draws, y.draws)
        assert x.draws.dtype == y.draws.dtype and x.mean == y.mean and type(y.mean) is float
        assert (x.null is None) == (y.null is None)
        if x.null is not None:
            np.testing.assert_array_equal(x.null, y.null)


def test_a_result_survives_json_and_the_store(tmp_path: Path) -> None:
    arrays, record = to_parts(_example())
    assert sorted(arrays) == ["inner/0/draws", "inner/1/draws", "inner/1/null"]
    _assert_equal(_example(), from_parts(arrays, json.loads(json.dumps(record)), [Outer, Inner]))
    stored = cached_result(tmp_path, "parts", {"k": 1}, lambda: Result(*to_parts(_example())))
    again = cached_result(tmp_path, "parts", {"k": 1}, lambda: pytest.fail("should have been read back"))
    for result in (stored, again):
        _assert_equal(_example(), from_parts(result.arrays, result.record, [Outer, Inner]))


def test_an_unknown_type_or_value_is_an_error() -> None:
    arrays, record = to_parts(_example())
    with pytest.raises(EmoverifyError, match="Inner"):
        from_parts(arrays, record, [Outer])
    with pytest.raises(EmoverifyError, match="cannot store a set"):
        to_parts(Inner(draws=np.ones(2), mean=1.0, null={1}))  # type: ignore[arg-type]
    with pytest.raises(EmoverifyError, match="0-d"):
        to_parts(Inner(draws=np.array(1.0), mean=1.0, null=None))
