"""Run numpy work on CPU threads: LAPACK, BLAS and most ufuncs release the GIL.

Each worker runs with one BLAS thread, so workers do not oversubscribe the cores and every result is
computed single-threaded, the same whatever the number of workers. A `thread_map` inside a worker runs
serially: pools do not nest, and threadpoolctl's limit is process-wide, so only the outermost call sets it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from threadpoolctl import threadpool_limits

__all__ = ["one_blas_thread", "thread_map"]

T = TypeVar("T")
R = TypeVar("R")
_STATE = threading.local()
_LIMIT_LOCK = threading.Lock()


def _in_worker() -> bool:
    return getattr(_STATE, "in_worker", False)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with one BLAS thread: already so inside a worker, else limited for its duration."""
    if _in_worker():
        yield
        return
    with _LIMIT_LOCK, threadpool_limits(1):
        yield


def thread_map(func: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """`[func(x) for x in items]`, spread over `workers` threads (default: the CPU count), in order."""
    items = list(items)
    workers = min(workers or os.cpu_count() or 1, len(items))
    if _in_worker():
        return [func(x) for x in items]

    def run(x: T) -> R:
        _STATE.in_worker = True
        try:
            return func(x)
        finally:
            _STATE.in_worker = False

    with one_blas_thread():
        if workers <= 1:  # the caller's thread is the one worker: nested calls run serially too
            return [run(x) for x in items]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(run, items))
