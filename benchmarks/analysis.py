"""Benchmark: Phases 3 and 6 (vectors, subspaces, alignment) for the three models from cached activations.

Runs every VEC/SUB computation with its controls (1,000 permutations, 1,000 bootstrap draws) plus the
MiniLM positive control, times each, and writes `benchmarks/results/analysis.json` and `analysis.md`
with the machine it ran on. Activations must already be in the store (`python -m emoverify run ...`).
SUB-1..3 keep their analyses in the result store: each timed run of them starts from an empty one (the
activations linked in), and their reading back from a filled store is timed apart.

    python benchmarks/analysis.py                 # stand-ins (the null model)
    python benchmarks/analysis.py --models real   # the paper's models, where their weights are
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from threadpoolctl import threadpool_info

from emoverify.computations import subspace as subspace_claims
from emoverify.computations import vectors as vector_claims
from emoverify.computations.controls import fit_probes
from emoverify.computations.registry import ClaimContext, Measurement
from emoverify.computations.subspace import load_views, neutral_alignment, procrustes_gain, raw_overlap
from emoverify.computations.vectors import emotion_vector_cosines
from emoverify.provenance import atomic_write_json, atomic_write_text, environment, utc_now

MODELS = ["gpt2", "pythia-160m", "gpt-neo-125M"]
RESULTS = Path(__file__).parent / "results"


_FIGURE_SECONDS = [0.0]


def _time_figures(module: Any, name: str) -> None:
    """Wrap a figure function as a claim module imported it, adding its time to `_FIGURE_SECONDS`."""
    original = getattr(module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _FIGURE_SECONDS[0] += time.perf_counter() - start

    setattr(module, name, timed)


for _module, _name in ((vector_claims, "cosine_heatmaps"), (subspace_claims, "overlap_bars")):
    _time_figures(_module, _name)


def _minilm_fits(ctx: ClaimContext) -> Measurement:
    """CTRL-MINILM's probe fits themselves, not the store's copy that the claim reads (features are read)."""
    result = fit_probes(ctx, "extended", n_folds=5, n_label_shuffles=20, include_standins=True)
    return Measurement(value=result.record["value"], label=result.record["label"])


@contextmanager
def _empty_result_store(ctx: ClaimContext) -> Iterator[ClaimContext]:
    """`ctx` on a temporary artifact root that links in everything of the real one but the stored results.

    The activation memo is shared (`dataclasses.replace`), so nothing is loaded again.
    """
    with tempfile.TemporaryDirectory(prefix="emoverify-bench-") as tmp:
        for entry in ctx.artifacts_dir.iterdir():
            if entry.name != "results":  # emoverify.store keeps results under <root>/results/
                (Path(tmp) / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
        yield dataclasses.replace(ctx, artifacts_dir=Path(tmp))


def _run(func: Any, ctx: ClaimContext, *args: Any, **kwargs: Any) -> tuple[float, float, Any]:
    """(compute seconds, figure seconds, measurement) of one call."""
    _FIGURE_SECONDS[0] = 0.0
    start = time.perf_counter()
    measurement = func(ctx, *args, **kwargs)
    seconds = time.perf_counter() - start
    return seconds - _FIGURE_SECONDS[0], _FIGURE_SECONDS[0], measurement


def _timed(name: str, repeats: int, func: Any, ctx: ClaimContext, *args: Any,
           store: Literal["kept", "empty", "filled"] = "kept", **kwargs: Any) -> dict[str, Any]:
    """Run `func` `repeats` times and report the median run.

    `store`: "kept" runs on `ctx` as it is; "empty" starts each run from an empty result store, so SUB-1..3
    compute their analyses; "filled" lets one untimed run fill a store, and the timed runs read it back.
    """
    if store == "kept":
        runs = [_run(func, ctx, *args, **kwargs) for _ in range(repeats)]
    elif store == "empty":
        runs = []
        for _ in range(repeats):
            with _empty_result_store(ctx) as empty:
                runs.append(_run(func, empty, *args, **kwargs))
    else:
        with _empty_result_store(ctx) as filled:
            func(filled, *args, **kwargs)
            runs = [_run(func, filled, *args, **kwargs) for _ in range(repeats)]
    measurement = runs[-1][2]
    compute, figures = (float(np.median([r[i] for r in runs])) for i in (0, 1))
    print(f"{name:<40} {compute:7.2f} s (min {min(r[0] for r in runs):.2f}) + figures {figures:5.2f} s  "
          f"{measurement.label}")
    return {"seconds": round(compute + figures, 3), "compute_seconds": round(compute, 3),
            "compute_seconds_all": [round(r[0], 3) for r in runs], "figure_seconds": round(figures, 3),
            "figure_seconds_all": [round(r[1], 3) for r in runs], "value": measurement.value,
            "interval": measurement.interval, "label": measurement.label, "figures": list(measurement.figures)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=("standin", "real"), default="standin")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each computation; the median is reported")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write analysis.{json,md}")
    args = parser.parse_args()
    ctx = ClaimContext(artifacts_dir=Path(args.artifacts), figures_dir=Path("reports/figures/benchmark"),
                       model_source=args.models)
    start = time.perf_counter()
    for dataset in ("baseline", "extended"):  # load once, outside the timings
        load_views(ctx, MODELS, dataset, "sentence_end", "last")
    load_seconds = time.perf_counter() - start
    results: dict[str, Any] = {}
    reps = args.repeats
    for model in MODELS:
        results[f"VEC sentence_end {model}"] = _timed(f"VEC sentence_end {model}", reps, emotion_vector_cosines,
                                                      ctx, model)
    results["VEC-3 emotion_token pythia-160m"] = _timed(
        "VEC-3 emotion_token pythia-160m", reps, emotion_vector_cosines, ctx, "pythia-160m", site="emotion_token",
        pairs=[["gratitude", "anger"], ["gratitude", "apology"]], order="pairs")
    results["SUB-1 raw overlap"] = _timed("SUB-1 raw overlap", reps, raw_overlap, ctx, MODELS, store="empty")
    # SUB-2 computes the analysis SUB-3 shares; SUB-3 is timed reading it back from the store.
    results["SUB-2 + SUB-3 neutral alignment"] = _timed("SUB-2 + SUB-3 neutral alignment", reps, neutral_alignment,
                                                        ctx, MODELS, store="empty")
    results["SUB-3 Procrustes (stored analysis)"] = _timed("SUB-3 Procrustes (stored analysis)", reps,
                                                           procrustes_gain, ctx, MODELS, store="filled")
    stored = {name: _timed(f"{name} (stored)", reps, func, ctx, MODELS, store="filled")
              for name, func in (("SUB-1 raw overlap", raw_overlap), ("SUB-2 neutral alignment", neutral_alignment))}
    compute_seconds = sum(r["compute_seconds"] for r in results.values())
    analysis_seconds = compute_seconds + sum(r["figure_seconds"] for r in results.values())
    if not args.skip_minilm:
        results["CTRL MiniLM probe"] = _timed("CTRL MiniLM probe", 1, _minilm_fits, ctx)
    record = {"generated": utc_now(), "model_source": args.models, "environment": environment(),
              "load_seconds": round(load_seconds, 3), "analysis_seconds": round(analysis_seconds, 3),
              "compute_seconds": round(compute_seconds, 3),
              "figure_seconds": round(analysis_seconds - compute_seconds, 3),
              "threads": {"cpu_count": os.cpu_count(), "blas": threadpool_info()},
              "n_bootstrap": 1000, "n_permutations": 1000, "repeats": reps, "results": results,
              "read_from_result_store": stored}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "analysis.json", record)
    env = record["environment"]
    lines = [f"# Analysis benchmark ({args.models} models)", "",
             f"{record['generated']}, {env['platform']}, {env['cpu_count']} CPUs, numpy "
             f"{env['libraries']['numpy']}. Activations loaded in {load_seconds:.1f} s; Phases 3 and 6 with "
             f"controls (1,000 permutations, 1,000 bootstrap draws) in {analysis_seconds:.1f} s: "
             f"{compute_seconds:.1f} s of computation and {analysis_seconds - compute_seconds:.1f} s drawing "
             f"their figures (matplotlib); medians of {reps} runs each. The MiniLM control, which runs a model, "
             "is timed apart (one run). SUB-1..3 compute from an empty result store in each run; reading their "
             "analyses back from a filled one is timed below the table.", "",
             "| computation | compute s (median) | runs | figures s | measured |", "|---|---:|---|---:|---|"]
    lines += [f"| {name} | {res['compute_seconds']:.2f} | "
              f"{' '.join(f'{x:.2f}' for x in res.get('compute_seconds_all', []))} | {res['figure_seconds']:.2f} | "
              f"{res['label']} |" for name, res in results.items()]
    lines += ["", "| read from the result store | compute s (median) | runs | figures s |", "|---|---:|---|---:|"]
    lines += [f"| {name} | {res['compute_seconds']:.2f} | {' '.join(f'{x:.2f}' for x in res['compute_seconds_all'])} "
              f"| {res['figure_seconds']:.2f} |" for name, res in stored.items()]
    atomic_write_text(args.out / "analysis.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
