"""A content-addressed, hash-checked cache for the results of expensive computations.

Activations have their own store (`activations.py`, one file per model x emotion group, as ACT-1 counts
them). Everything else that is slow to recompute and is read again (a layer x alpha steering sweep, a
screen of every attention head, a batch of generations) goes through `cached_result`::

    result = cached_result("artifacts", "steering-sweep", key={"model": ..., "weights": ..., "alphas": [...]},
                           compute=lambda: Result(arrays={"scores": scores}, record={"layers": layers}))

Layout: `<root>/results/<kind>/<first 16 hex of the key's sha256>/` holding `arrays.safetensors` (the
arrays) and `result.json` (the key, the arrays file's sha256, the record, provenance and timing). The JSON
is written last, each file atomically, so a result is complete exactly when its JSON names an arrays file
that hashes to the recorded sha256. A read checks that, and that the stored key equals the one asked for
(a hash prefix collision, a hand-edited file); anything else (absent, partial, corrupt, from an older
format) is recomputed, with a warning that says why. Nothing is ever read without passing the check.

The key must say everything the result depends on: model reference and weights fingerprint, dataset hash,
settings, seeds, and any input arrays (`array_digest`). The store format and the code version are added here.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save

import emoverify
from emoverify.errors import ArtifactError, EmoverifyError
from emoverify.provenance import atomic_write_bytes, atomic_write_json, environment, sha256_bytes, sha256_file, utc_now

__all__ = ["RESULTS_FORMAT", "Result", "array_digest", "cached_result", "load_result", "result_dir"]

# Bumped when the layout or the meaning of stored results changes; part of every key.
RESULTS_FORMAT = 1


@dataclass(frozen=True)
class Result:
    """What a computation returns and the cache keeps.

    Attributes:
        arrays: named numpy arrays (stored in safetensors; any numeric dtype).
        record: JSON-able values: small results, settings, labels.
        provenance: filled by the cache: key, environment, timing, where it is stored.
        from_cache: True when read back rather than computed in this call.
    """

    arrays: Mapping[str, np.ndarray]
    record: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    from_cache: bool = False


def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes: how an input array (a steering vector) enters a key."""
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.str}:{array.shape};".encode()
    return sha256_bytes(header + array.tobytes())


def _canonical(kind: str, key: Mapping[str, Any]) -> str:
    try:
        return json.dumps({"kind": kind, "results_format": RESULTS_FORMAT, "key": key}, sort_keys=True,
                          allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise EmoverifyError(f"the cache key of {kind!r} must be plain JSON (str, numbers without NaN, lists, "
                             f"dicts); put arrays in as array_digest(array): {err}") from None


def result_dir(root: str | os.PathLike[str], kind: str, key: Mapping[str, Any]) -> Path:
    """Where the result of `kind` for `key` lives (whether or not it exists yet)."""
    if not kind or "/" in kind or kind.startswith("."):
        raise EmoverifyError(f"result kind {kind!r} must be a plain name, e.g. 'steering-sweep'")
    return Path(root) / "results" / kind / sha256_bytes(_canonical(kind, key).encode())[:16]


def load_result(root: str | os.PathLike[str], kind: str, key: Mapping[str, Any]) -> Result:
    """The stored result for `key`, after checking it.

    Raises:
        ArtifactError: absent, partial, corrupt, or stored under another key; the message says which.
    """
    directory = result_dir(root, kind, key)
    meta_path = directory / "result.json"
    if not meta_path.is_file():
        raise ArtifactError(f"no stored {kind} result in {directory}")
    try:
        meta = json.loads(meta_path.read_text())
        stored_key, digest = meta["canonical_key"], meta["arrays_sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise ArtifactError(f"{meta_path} is unreadable ({err})") from None
    if stored_key != _canonical(kind, key):
        raise ArtifactError(f"{meta_path} was stored under another key (a hash-prefix collision or an edited "
                            "file)")
    arrays_path = directory / "arrays.safetensors"
    if not arrays_path.is_file():
        raise ArtifactError(f"{arrays_path} is missing")
    actual = sha256_file(arrays_path)
    if actual != digest:
        raise ArtifactError(f"{arrays_path} does not match its record (sha256 {actual[:12]}… != {digest[:12]}…): "
                            "corrupt or partial")
    return Result(arrays=load_file(str(arrays_path)), record=meta["record"], provenance=meta["provenance"],
                  from_cache=True)


def cached_result(
    root: str | os.PathLike[str],
    kind: str,
    key: Mapping[str, Any],
    compute: Callable[[], Result],
    refresh: bool = False,
) -> Result:
    """The result of `compute()` for `key`: read back if stored and intact, else computed and stored.

    Args:
        root: artifact root (`artifacts/`).
        kind: what it is, a directory name: "steering-sweep", "head-screen".
        key: everything the result depends on (JSON: see the module docstring).
        compute: makes the result; called only when nothing intact is stored. If it raises, nothing is
            written and the error propagates.
        refresh: recompute even if a stored result is intact.
    """
    canonical = _canonical(kind, key)
    if not refresh:
        try:
            return load_result(root, kind, key)
        except ArtifactError as err:
            if (result_dir(root, kind, key) / "result.json").exists():
                warnings.warn(f"recomputing {kind}: {err}", stacklevel=2)
    start = time.perf_counter()
    result = compute()
    seconds = time.perf_counter() - start
    arrays = {name: np.ascontiguousarray(a) for name, a in result.arrays.items()}
    blob = save(arrays, metadata={"kind": kind})
    directory = result_dir(root, kind, key)
    provenance = {"key": dict(key), "kind": kind, "results_format": RESULTS_FORMAT,
                  "emoverify_version": emoverify.__version__, "environment": environment(),
                  "created": utc_now(), "compute_seconds": round(seconds, 3), "directory": str(directory),
                  **dict(result.provenance)}
    try:
        record = json.loads(json.dumps(dict(result.record), allow_nan=True))
    except (TypeError, ValueError) as err:
        raise EmoverifyError(f"the record of {kind!r} must be JSON-able; put arrays in `arrays`: {err}") from None
    atomic_write_bytes(directory / "arrays.safetensors", blob)
    atomic_write_json(directory / "result.json", {"canonical_key": canonical, "arrays_sha256": sha256_bytes(blob),
                                                  "record": record, "provenance": provenance})
    return Result(arrays=arrays, record=record, provenance=provenance, from_cache=False)
