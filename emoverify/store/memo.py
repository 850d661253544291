"""The store's one in-process memo: what was read and verified, kept while its files stay unchanged.

Keyed by content (an entry by its directory and canonical key, a file digest by the file's path), each value
kept with the stat signature (device, inode, size, mtime_ns, ctime_ns) of every file it was verified from,
taken before those files were read. A lookup stats the files again and serves the value only if none changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["MEMO", "Signature", "forget", "signature"]

Signature = tuple[tuple[int, int, int, int, int], ...]


def _stat(path: Path) -> tuple[int, int, int, int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def signature(paths: Sequence[Path]) -> Signature | None:
    """The stat signature of `paths`, or None if one is missing."""
    try:
        return tuple(_stat(p) for p in paths)
    except OSError:
        return None


class Memo:
    """Values verified from files, each served only while those files keep the signature it was verified under."""

    def __init__(self) -> None:
        self._items: dict[tuple[Any, ...], tuple[Signature, Any]] = {}

    def get(self, key: tuple[Any, ...], current: Callable[[Any], Signature | None]) -> Any | None:
        """The value under `key` if `current(value)`, the files' signature now, equals the one it was kept with."""
        item = self._items.get(key)
        if item is None or current(item[1]) != item[0]:
            return None
        return item[1]

    def put(self, key: tuple[Any, ...], signature: Signature | None, value: Any) -> None:
        """Keep `value`, verified from files whose signature was `signature` before they were read."""
        if signature is not None:
            self._items[key] = (signature, value)

    def clear(self) -> None:
        self._items.clear()


MEMO = Memo()


def forget() -> None:
    """Empty the in-process memo (tests; a long-lived process that wants to let go of arrays)."""
    MEMO.clear()
