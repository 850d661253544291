"""One writer at a time: a file lock per entry (or per stand-in build), and the sweep of what dead writers left.

The lock is `fcntl.flock` through `filelock`: the kernel releases it when its holder dies, however it dies
(SIGKILL included), so a killed run never leaves a lock that blocks the next. Lock files are empty and stay
in place after release (waiters must share one inode); they are not temporary files and are never swept.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from emoverify.provenance import sweep_stale_temporaries

__all__ = ["exclusive", "lock_path", "sweep_once"]

_LOG = logging.getLogger("emoverify")
# How long to wait quietly before saying that another process holds the lock.
_QUIET_WAIT_S = 2.0
_SWEPT: set[str] = set()


def lock_path(directory: str | os.PathLike[str]) -> Path:
    """The lock of whatever is written at `directory`: the hidden file `.<name>.lock` beside it."""
    directory = Path(directory)
    return directory.parent / f".{directory.name}.lock"


@contextmanager
def exclusive(path: str | os.PathLike[str], what: str, wait: bool = True) -> Iterator[bool]:
    """Hold the file lock at `path` (created, with its directory, if absent) while inside.

    With `wait`, blocks until the lock is free, saying once (a log warning) that it waits for another
    process writing `what`, and yields True. Without, yields False at once if another holds it (and True,
    holding it, otherwise): how a sweep leaves alone what a live process is building.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=_QUIET_WAIT_S if wait else 0)
        acquired = True
    except Timeout:
        acquired = False
    if not acquired and wait:
        _LOG.warning("emoverify: waiting for another process writing %s", what)
        lock.acquire()
        acquired = True
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()


def sweep_once(root: str | os.PathLike[str]) -> None:
    """Remove stale temporary files anywhere under `root`, once per process (see `sweep_stale_temporaries`)."""
    where = str(Path(root).resolve())
    if where not in _SWEPT:
        _SWEPT.add(where)
        sweep_stale_temporaries(where, recursive=True)
