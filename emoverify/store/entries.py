"""Entries: a directory of safetensors files and a manifest, addressed by the key they were made from.

See the package docstring (`emoverify.store`) for the layout and the checks.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

import emoverify
from emoverify.errors import ArtifactError, EmoverifyError
from emoverify.provenance import atomic_write_bytes, atomic_write_json, environment, sha256_bytes, utc_now
from emoverify.store.locking import exclusive, lock_path, sweep_once
from emoverify.store.memo import MEMO, signature

__all__ = ["MANIFEST", "STORE_FORMAT", "Entry", "EntryCheck", "cached_entry", "entry_dir", "plain_name",
           "read_entry", "write_entry"]

# Bumped when the layout or the manifest of an entry changes; part of every canonical key.
STORE_FORMAT = 2
MANIFEST = "manifest.json"
_SUFFIX = ".safetensors"
# What a reader may require of an entry beyond its hashes (its shape, its records' agreement with its files):
# raises ArtifactError with what is wrong.
EntryCheck = Callable[["Entry"], None]


@dataclass(frozen=True)
class Entry:
    """The contents of one entry: what a computation hands the store and what a read gives back.

    Attributes:
        files: file name (without `.safetensors`) -> its named arrays; read back read-only.
        record: JSON-able values: small results, labels, what the arrays mean.
        provenance: filled by the store (key, environment, timing) beside what the computation gives.
        metadata: file name -> string metadata written into that file's safetensors header (so a file is
            self-describing on its own, and covered by the file's sha256); read back, so a check can compare
            what the manifest says with what the hashed files say (an activation group's prompt ids).
        directory: where the entry lives; None before it is stored.
        from_cache: True when read back rather than computed in this call.
    """

    files: Mapping[str, Mapping[str, np.ndarray]]
    record: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    directory: Path | None = None
    from_cache: bool = False


def plain_name(name: str, what: str) -> str:
    """`name`, if it can be one path component inside the store (no separator, not hidden, not empty)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise EmoverifyError(f"{what} {name!r} must be a plain name, e.g. 'steering-sweep'")
    return name


def _canonical(namespace: Sequence[str], key: Mapping[str, Any]) -> str:
    try:
        return json.dumps({"namespace": list(namespace), "store_format": STORE_FORMAT, "key": key}, sort_keys=True,
                          allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise EmoverifyError(f"the key of {'/'.join(namespace)!r} must be plain JSON (str, numbers without NaN, "
                             f"lists, dicts); put arrays in as array_digest(array): {err}") from None


def entry_dir(root: str | os.PathLike[str], namespace: Sequence[str], key: Mapping[str, Any]) -> Path:
    """Where the entry for `key` lives under `root` (whether or not it exists yet)."""
    parts = [plain_name(part, "store namespace") for part in namespace]
    return Path(root).joinpath(*parts) / sha256_bytes(_canonical(namespace, key).encode())[:16]


def _read_only(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    for array in arrays.values():
        array.flags.writeable = False
    return dict(arrays)


def read_entry(
    root: str | os.PathLike[str], namespace: Sequence[str], key: Mapping[str, Any], check: EntryCheck | None = None
) -> Entry:
    """The stored entry for `key`, after checking its key, its manifest's and every file's sha256 (or from the
    memo), and then `check(entry)` if given.

    Raises:
        ArtifactError: absent, partial, corrupt, of the wrong shape, or stored under another key; the message
            says which.
    """
    canonical = _canonical(namespace, key)
    directory = entry_dir(root, namespace, key)
    memo_key = _memo_key(directory, canonical)
    entry = MEMO.get(memo_key, lambda entry: signature(_entry_paths(directory, entry.files)))
    if entry is None:
        entry = _read_verified(directory, canonical, memo_key)
    if check is not None:
        check(entry)
    return entry


def _read_verified(directory: Path, canonical: str, memo_key: tuple[str, str, str]) -> Entry:
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"no stored entry in {directory}" + (" (incomplete: no manifest, an interrupted write)"
                                                                 if directory.is_dir() else ""))
    manifest_stat = signature([manifest_path])
    try:
        manifest = json.loads(manifest_path.read_text())
        stored_key, listed = manifest["canonical_key"], dict(manifest["files"])
        record, provenance, sealed = dict(manifest["record"]), dict(manifest["provenance"]), manifest["sha256"]
        names = {name: plain_name(name, "file name") for name in listed}
    except (ValueError, KeyError, TypeError, EmoverifyError) as err:
        raise ArtifactError(f"{manifest_path} is unreadable ({type(err).__name__}: {err})") from None
    if stored_key != canonical:
        raise ArtifactError(f"{manifest_path} was stored under another key (a hash-prefix collision or an "
                            "edited file)")
    if _seal(manifest) != sealed:
        raise ArtifactError(f"{manifest_path} does not match its own sha256: its record or file list was edited")
    # Taken before the bytes are read: a file changed from here on shows as a change at the next read.
    files_stat = signature(_entry_paths(directory, listed)[1:])
    files, metadata = {}, {}
    for name, expected in sorted(listed.items()):
        path = directory / f"{names[name]}{_SUFFIX}"
        try:
            blob = path.read_bytes()
        except OSError:
            raise ArtifactError(f"{path} is missing") from None
        digest = sha256_bytes(blob)
        if not isinstance(expected, Mapping) or digest != expected.get("sha256"):
            recorded = str(expected.get("sha256") if isinstance(expected, Mapping) else expected)
            raise ArtifactError(f"{path} does not match its manifest (sha256 {digest[:12]}… != {recorded[:12]}…): "
                                "corrupt or partial")
        try:
            files[name], metadata[name] = _read_only(load(blob)), _header_metadata(blob)
        except (SafetensorError, ValueError, TypeError, AttributeError) as err:  # hashed, yet not safetensors
            raise ArtifactError(f"{path} is not a readable safetensors file ({err})") from None
    entry = Entry(files=files, record=record, provenance={**provenance, "directory": str(directory)},
                  metadata=metadata, directory=directory, from_cache=True)
    if manifest_stat is not None and files_stat is not None:
        MEMO.put(memo_key, manifest_stat + files_stat, entry)
    return entry


def _header_metadata(blob: bytes) -> dict[str, str]:
    """The string metadata in a safetensors file's header (8 bytes of length, then the JSON header)."""
    length = int.from_bytes(blob[:8], "little")
    metadata = json.loads(blob[8:8 + length]).get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError("its header metadata is not a map")
    return {str(k): str(v) for k, v in metadata.items()}


def _seal(manifest: Mapping[str, Any]) -> str:
    """sha256 of a manifest's content (all but the seal itself), so an edited record is caught like a damaged file."""
    content = {k: v for k, v in manifest.items() if k != "sha256"}
    return sha256_bytes(json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=True).encode())


def _memo_key(directory: Path, canonical: str) -> tuple[str, str, str]:
    return "entry", str(directory.resolve()), sha256_bytes(canonical.encode())


def _entry_paths(directory: Path, names: Iterable[str]) -> list[Path]:
    """The manifest, then each file of an entry, in name order: what its stat signature covers."""
    return [directory / MANIFEST] + [directory / f"{name}{_SUFFIX}" for name in sorted(names)]


def _jsonable(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(value), allow_nan=True))
    except (TypeError, ValueError) as err:
        raise EmoverifyError(f"the {what} must be JSON-able; put arrays in the files: {err}") from None


def write_entry(
    root: str | os.PathLike[str], namespace: Sequence[str], key: Mapping[str, Any], contents: Entry
) -> Entry:
    """Store `contents` as the entry for `key` (replacing whatever is there) and return it as a read would.

    Holds the entry's lock (`locking.exclusive`) while writing, so two processes never interleave their files.
    """
    directory = entry_dir(root, namespace, key)
    with exclusive(lock_path(directory), str(directory)):
        return _write_locked(root, namespace, key, contents)


def _write_locked(root: str | os.PathLike[str], namespace: Sequence[str], key: Mapping[str, Any],
                  contents: Entry) -> Entry:
    canonical = _canonical(namespace, key)
    directory = entry_dir(root, namespace, key)
    what = "/".join(namespace)
    record = _jsonable(contents.record, f"record of {what!r}")
    provenance = _jsonable({"key": dict(key), "namespace": list(namespace), "store_format": STORE_FORMAT,
                            "emoverify_version": emoverify.__version__, "environment": environment(),
                            "created": utc_now(), **dict(contents.provenance)}, f"provenance of {what!r}")
    sweep_once(root)
    # Whatever is there is replaced whole: under the lock no one else writes here, so files of an older or
    # damaged entry, and temporary files of a killed writer, are debris.
    if directory.is_symlink() or directory.is_file():
        directory.unlink()
    elif directory.exists():
        shutil.rmtree(directory)
    listed, files, metadata = {}, {}, {}
    for name, arrays in sorted(contents.files.items()):
        arrays = {k: np.ascontiguousarray(a) for k, a in arrays.items()}
        metadata[name] = {str(k): str(v) for k, v in contents.metadata.get(name, {}).items()}
        blob = save(arrays, metadata=metadata[name] or None)
        atomic_write_bytes(directory / f"{plain_name(name, 'file name')}{_SUFFIX}", blob)
        listed[name] = {"sha256": sha256_bytes(blob), "bytes": len(blob)}
        files[name] = _read_only(load(blob))  # what a read returns: the stored bytes, not the caller's arrays
    # Last: its presence marks a complete entry.
    manifest = {"store_format": STORE_FORMAT, "canonical_key": canonical, "files": listed, "record": record,
                "provenance": provenance}
    atomic_write_json(directory / MANIFEST, {**manifest, "sha256": _seal(manifest)})
    entry = Entry(files=files, record=record, provenance={**provenance, "directory": str(directory)},
                  metadata=metadata, directory=directory, from_cache=False)
    # What this process wrote needs no second check while the files stay as written.
    written = signature(_entry_paths(directory, files))
    MEMO.put(_memo_key(directory, canonical), written, replace(entry, from_cache=True))
    return entry


def cached_entry(
    root: str | os.PathLike[str],
    namespace: Sequence[str],
    key: Mapping[str, Any],
    compute: Callable[[], Entry],
    refresh: bool = False,
    check: EntryCheck | None = None,
) -> Entry:
    """The entry for `key`: read back if stored and intact, else computed by `compute()` and stored.

    Reading takes no lock. Computing and writing hold the entry's lock, and the entry is read once more
    under it: a process that finds another computing the same entry waits for it and reads its result, so
    two runs never write one entry at once and neither computes what the other just stored. Something there
    that fails its checks is recomputed with a warning that says what was wrong; a missing entry silently.

    Args:
        root: store root (`artifacts/`).
        namespace: where in the store, plain names: `("results", "minilm-probe")`.
        key: everything the entry depends on (plain JSON: see the module docstring).
        compute: makes the contents; called only when nothing intact is stored. If it raises, nothing is
            written and the error propagates.
        refresh: recompute even if a stored entry is intact.
        check: what a reader needs of the entry besides its hashes (`EntryCheck`); a stored entry that fails
            it is recomputed, a computed one that fails it is an error.
    """
    if not refresh:
        try:
            return read_entry(root, namespace, key, check)
        except ArtifactError:
            pass  # perhaps being written by another process right now: look again under the lock
    directory = entry_dir(root, namespace, key)
    what = "/".join(namespace)
    with exclusive(lock_path(directory), str(directory)):
        if not refresh:
            try:
                return read_entry(root, namespace, key, check)
            except ArtifactError as err:
                if directory.exists() or directory.is_symlink():
                    warnings.warn(f"recomputing {what}: {err}", stacklevel=3)
        start = time.perf_counter()
        contents = compute()
        seconds = round(time.perf_counter() - start, 3)
        entry = _write_locked(root, namespace, key,
                              replace(contents, provenance={"compute_seconds": seconds, **dict(contents.provenance)}))
    if check is not None:
        check(entry)
    return entry
