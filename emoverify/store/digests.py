"""Digests: of files (remembered while the file is unchanged) and of arrays (how an array enters a key)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from emoverify.errors import ArtifactError
from emoverify.provenance import atomic_write_json, sha256_bytes, sha256_file
from emoverify.store.memo import MEMO, signature

__all__ = ["array_digest", "file_sha256"]


def _record_path(path: Path, record_dir: Path | None) -> Path:
    if record_dir is None:
        return path.parent / f".{path.name}.sha256.json"
    return record_dir / f"{sha256_bytes(str(path).encode())[:32]}.json"


def _record(path: Path, stat: tuple[int, ...], digest: str) -> dict[str, object]:
    """A digest record, sealed by a sha256 of its content, so a damaged record is not trusted."""
    content = {"file": str(path), "stat": list(stat), "sha256": digest}
    return {**content, "seal": sha256_bytes(json.dumps(content, sort_keys=True).encode())}


def file_sha256(
    path: str | os.PathLike[str], remember: bool = False, record_dir: str | os.PathLike[str] | None = None
) -> str:
    """sha256 of a file's bytes, read again only when the file has changed.

    In one process the digest is kept (in the store's memo) with the file's stat signature: device, inode,
    size, mtime_ns and ctime_ns. With `remember`, the signature and the digest are also written, atomically,
    to a record sealed by a sha256 of its content, and a later process trusts that record while the file's
    signature still equals it; any difference, an unreadable or damaged record (its seal fails) or one for
    another path means the bytes are hashed again (and the record rewritten). The record is
    `.<name>.sha256.json` beside the file, or with `record_dir`, a file named by the path's hash in that
    directory (for files in directories that are not ours to write in: the Hugging Face cache, a user's
    checkpoint). Where the record cannot be written, only the memo applies.

    The trade-off: a file whose bytes change while all five stay the same is trusted. Ordinary writes,
    truncations, copies, renames onto it and restored backups all change at least one (ctime cannot be set
    back by a user), so what escapes is damage below the file system (bit rot, a disk written directly);
    the digest is then that of the file as it was recorded. Use it for large inputs hashed for a cache key
    or an integrity check that would otherwise read hundreds of MB on every run: model weights.
    """
    path = Path(path).resolve()
    stat = signature([path])  # before reading: a change while hashing shows as a change next time
    if stat is None:
        raise ArtifactError(f"{path} does not exist")
    digest = MEMO.get(("file", str(path)), lambda _: stat)
    if digest is not None:
        return digest
    record_path = _record_path(path, Path(record_dir) if record_dir is not None else None)
    if remember:
        try:
            record = json.loads(record_path.read_text())
            if record == _record(path, stat[0], record["sha256"]):  # this file, as it is now, and sealed
                digest = str(record["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            digest = None
    if digest is None:
        digest = sha256_file(path)
        if remember:
            try:
                atomic_write_json(record_path, _record(path, stat[0], digest))
            except OSError:
                pass  # a read-only directory: the in-process memo still applies
    MEMO.put(("file", str(path)), stat, digest)
    return digest


def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes: how an input array (a steering vector) enters a key."""
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.str}:{array.shape};".encode()
    return sha256_bytes(header + array.tobytes())
