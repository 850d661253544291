"""Results: a slow computation's arrays and record, kept as an entry of one file under `results/<kind>/`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emoverify.errors import ArtifactError
from emoverify.store.entries import Entry, EntryCheck, cached_entry, entry_dir, plain_name, read_entry

__all__ = ["Result", "cached_result", "load_result", "result_dir"]


@dataclass(frozen=True)
class Result:
    """What a slow computation returns and the store keeps (an entry with one file, `arrays`).

    Attributes:
        arrays: named numpy arrays (stored in safetensors; any numeric dtype); read-only once stored.
        record: JSON-able values: small results, settings, labels.
        provenance: filled by the store: key, environment, timing, where it is stored.
        from_cache: True when read back rather than computed in this call.
    """

    arrays: Mapping[str, np.ndarray]
    record: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    from_cache: bool = False


def _results_namespace(kind: str) -> tuple[str, str]:
    return "results", plain_name(kind, "result kind")


def _as_result(entry: Entry) -> Result:
    return Result(arrays=entry.files["arrays"], record=entry.record, provenance=entry.provenance,
                  from_cache=entry.from_cache)


def _result_check(kind: str) -> EntryCheck:
    """A result entry holds its one file, `arrays`, whose own (hashed) metadata names the same kind."""

    def check(entry: Entry) -> None:
        if "arrays" not in entry.files:
            raise ArtifactError(f"{entry.directory} holds no arrays file: not a result entry")
        stored_kind = entry.metadata.get("arrays", {}).get("kind")
        if stored_kind != kind:
            raise ArtifactError(f"{entry.directory}/arrays.safetensors says it holds a {stored_kind!r} result, "
                                f"not {kind!r}")

    return check


def result_dir(root: str | os.PathLike[str], kind: str, key: Mapping[str, Any]) -> Path:
    """Where the result of `kind` for `key` lives (whether or not it exists yet)."""
    return entry_dir(root, _results_namespace(kind), key)


def load_result(root: str | os.PathLike[str], kind: str, key: Mapping[str, Any]) -> Result:
    """The stored result for `key`, after checking it.

    Raises:
        ArtifactError: absent, partial, corrupt, not a result of `kind`, or stored under another key; the
            message says which.
    """
    return _as_result(read_entry(root, _results_namespace(kind), key, _result_check(kind)))


def cached_result(
    root: str | os.PathLike[str],
    kind: str,
    key: Mapping[str, Any],
    compute: Callable[[], Result],
    refresh: bool = False,
) -> Result:
    """The result of `compute()` for `key`: read back if stored and intact, else computed and stored.

    Example:
        >>> result = cached_result("artifacts", "steering-sweep",      # doctest: +SKIP
        ...                        key={"model": ref, "weights": digest, "alphas": [-4, 0, 4]},
        ...                        compute=lambda: Result(arrays={"scores": scores}, record={"layers": layers}))

    Args:
        root: artifact root (`artifacts/`).
        kind: what it is, a directory name: "steering-sweep", "head-screen".
        key: everything the result depends on (plain JSON: see the module docstring).
        compute: makes the result; called only when nothing intact is stored. If it raises, nothing is
            written and the error propagates.
        refresh: recompute even if a stored result is intact.
    """

    def contents() -> Entry:
        result = compute()
        return Entry(files={"arrays": result.arrays}, record=result.record, provenance=result.provenance,
                     metadata={"arrays": {"kind": kind}})

    return _as_result(cached_entry(root, _results_namespace(kind), key, contents, refresh=refresh,
                                   check=_result_check(kind)))
