"""Results in the store: computed once, read back only past the hash check, the rest recomputed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emoverify import store
from emoverify.errors import ArtifactError, EmoverifyError
from emoverify.store import Result, array_digest, cached_result, load_result, result_dir

KEY = {"model": "tiny:gpt2", "weights": "ab12", "alphas": [-2.0, 0.0, 2.0], "seed": 0}


class Counter:
    """A computation that counts its calls and returns known arrays."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Result:
        self.calls += 1
        return Result(arrays={"scores": np.arange(12, dtype=np.float32).reshape(3, 4),
                              "tokens": np.array([[1, 2], [3, 4]], dtype=np.int64)},
                      record={"layers": (3, 6), "label": "toy sweep"})


def test_computed_once_then_read_back_equal(tmp_path):
    compute = Counter()
    first = cached_result(tmp_path, "sweep", KEY, compute)
    again = cached_result(tmp_path, "sweep", dict(reversed(list(KEY.items()))), compute)  # key order is irrelevant
    assert compute.calls == 1 and not first.from_cache and again.from_cache
    for name in first.arrays:
        np.testing.assert_array_equal(first.arrays[name], again.arrays[name])
        assert first.arrays[name].dtype == again.arrays[name].dtype
    assert first.record == again.record == {"layers": [3, 6], "label": "toy sweep"}
    assert again.provenance["key"] == KEY and "environment" in again.provenance


def test_another_key_is_another_result(tmp_path):
    compute = Counter()
    cached_result(tmp_path, "sweep", KEY, compute)
    cached_result(tmp_path, "sweep", {**KEY, "seed": 1}, compute)
    cached_result(tmp_path, "other-kind", KEY, compute)
    assert compute.calls == 3


@pytest.mark.parametrize("damage", ["truncate arrays", "flip a byte", "delete arrays", "garble json", "edit key"])
def test_a_damaged_result_is_recomputed_with_a_warning_never_read(tmp_path, damage):
    compute = Counter()
    cached_result(tmp_path, "sweep", KEY, compute)
    directory = result_dir(tmp_path, "sweep", KEY)
    arrays, meta = directory / "arrays.safetensors", directory / "manifest.json"
    if damage == "truncate arrays":
        arrays.write_bytes(arrays.read_bytes()[:-7])
    elif damage == "flip a byte":
        data = bytearray(arrays.read_bytes())
        data[-1] ^= 0xFF
        arrays.write_bytes(bytes(data))
    elif damage == "delete arrays":
        arrays.unlink()
    elif damage == "garble json":
        meta.write_text(meta.read_text()[:40])
    else:
        record = json.loads(meta.read_text())
        record["canonical_key"] = record["canonical_key"].replace('"seed":0', '"seed":9')
        meta.write_text(json.dumps(record))
    with pytest.raises(ArtifactError):
        load_result(tmp_path, "sweep", KEY)
    store.forget()  # a new process: nothing verified yet
    with pytest.raises(ArtifactError):
        load_result(tmp_path, "sweep", KEY)
    with pytest.warns(UserWarning, match="recomputing results/sweep"):
        again = cached_result(tmp_path, "sweep", KEY, compute)
    assert compute.calls == 2 and not again.from_cache
    assert load_result(tmp_path, "sweep", KEY).from_cache  # repaired


def test_an_interrupted_computation_writes_nothing(tmp_path):
    def boom() -> Result:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_result(tmp_path, "sweep", KEY, boom)
    assert not result_dir(tmp_path, "sweep", KEY).exists()
    assert cached_result(tmp_path, "sweep", KEY, Counter()).record["label"] == "toy sweep"


def test_keys_must_be_plain_json_and_arrays_enter_by_digest(tmp_path):
    with pytest.raises(EmoverifyError, match="array_digest"):
        cached_result(tmp_path, "sweep", {"vector": np.zeros(3)}, Counter())
    with pytest.raises(EmoverifyError, match="plain name"):
        result_dir(tmp_path, "../escape", KEY)
    a = np.arange(6, dtype=np.float32)
    assert array_digest(a) != array_digest(a.reshape(2, 3)) != array_digest(a.astype(np.float64))
    assert array_digest(a) == array_digest(a.copy())


def test_refresh_recomputes_an_intact_result(tmp_path):
    compute = Counter()
    cached_result(tmp_path, "sweep", KEY, compute)
    assert not cached_result(tmp_path, "sweep", KEY, compute, refresh=True).from_cache
    assert compute.calls == 2
