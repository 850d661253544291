"""thread_map: order kept, nesting runs serially (no deadlock, no nested pools), one BLAS thread inside."""

from __future__ import annotations

import threading

from threadpoolctl import threadpool_info

from emoverify.analysis.threads import one_blas_thread, thread_map


def _blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_results_in_order_and_nested_calls_finish_with_one_blas_thread():
    def inner(x: int) -> tuple[int, set[int]]:
        with one_blas_thread():  # inside a worker: no second limit, no lock taken again
            return x * x, _blas_threads()

    def outer(x: int) -> list[tuple[int, set[int]]]:
        return thread_map(inner, range(x))  # nested: runs serially in this worker

    for workers in (1, 2):
        result: list = []
        runner = threading.Thread(target=lambda w=workers, out=result: out.append(thread_map(outer, [3, 1, 2], w)))
        runner.start()
        runner.join(timeout=30)
        assert not runner.is_alive(), f"thread_map deadlocked with {workers} worker(s)"
        [values] = result
        assert [[v for v, _ in row] for row in values] == [[0, 1, 4], [0], [0, 1]]
        assert all(threads == {1} for row in values for _, threads in row if threads)
