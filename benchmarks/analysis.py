"""Benchmark: Phases 3 and 6 (vectors, subspaces, alignment) for the three models from cached activations.

Runs every VEC/SUB computation with its controls (1,000 permutations, 1,000 bootstrap draws) plus the
MiniLM positive control, times each, and writes `benchmarks/results/analysis.json` and `analysis.md`
with the machine it ran on. Activations must already be in the store (`python -m emoverify run ...`).

    python benchmarks/analysis.py                 # stand-ins (the null model)
    python benchmarks/analysis.py --models real   # the paper's models, where their weights are
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_info

from emoverify import subspace_claims, vector_claims
from emoverify.claims import ClaimContext
from emoverify.control_claims import minilm_positive_control
from emoverify.provenance import atomic_write_json, atomic_write_text, environment, utc_now
from emoverify.subspace_claims import load_views, neutral_alignment, procrustes_gain, raw_overlap
from emoverify.vector_claims import emotion_vector_cosines

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


def _timed(name: str, func: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    _FIGURE_SECONDS[0] = 0.0
    start = time.perf_counter()
    measurement = func(*args, **kwargs)
    seconds = time.perf_counter() - start
    figures = _FIGURE_SECONDS[0]
    print(f"{name:<40} {seconds - figures:7.2f} s + figures {figures:5.2f} s  {measurement.label}")
    return {"seconds": round(seconds, 3), "compute_seconds": round(seconds - figures, 3),
            "figure_seconds": round(figures, 3), "value": measurement.value, "interval": measurement.interval,
            "label": measurement.label, "figures": list(measurement.figures)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=("standin", "real"), default="standin")
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args()
    ctx = ClaimContext(artifacts_dir=Path(args.artifacts), figures_dir=Path("reports/figures/benchmark"),
                       model_source=args.models)
    start = time.perf_counter()
    for dataset in ("baseline", "extended"):  # load once, outside the timings
        load_views(ctx, MODELS, dataset, "sentence_end", "last")
    load_seconds = time.perf_counter() - start
    results: dict[str, Any] = {}
    for model in MODELS:
        results[f"VEC sentence_end {model}"] = _timed(f"VEC sentence_end {model}", emotion_vector_cosines, ctx, model)
    results["VEC-3 emotion_token pythia-160m"] = _timed(
        "VEC-3 emotion_token pythia-160m", emotion_vector_cosines, ctx, "pythia-160m", site="emotion_token",
        pairs=[["gratitude", "anger"], ["gratitude", "apology"]], order="pairs")
    results["SUB-1 raw overlap"] = _timed("SUB-1 raw overlap", raw_overlap, ctx, MODELS)
    results["SUB-2 neutral alignment"] = _timed("SUB-2 neutral alignment", neutral_alignment, ctx, MODELS)
    results["SUB-3 Procrustes (memoised core)"] = _timed("SUB-3 Procrustes", procrustes_gain, ctx, MODELS)
    analysis_seconds = time.perf_counter() - start - load_seconds
    compute_seconds = sum(r["compute_seconds"] for r in results.values())
    if not args.skip_minilm:
        results["CTRL MiniLM probe"] = _timed("CTRL MiniLM probe", minilm_positive_control, ctx)
    record = {"generated": utc_now(), "model_source": args.models, "environment": environment(),
              "load_seconds": round(load_seconds, 3), "analysis_seconds": round(analysis_seconds, 3),
              "compute_seconds": round(compute_seconds, 3),
              "figure_seconds": round(analysis_seconds - compute_seconds, 3),
              "threads": {"cpu_count": os.cpu_count(), "blas": threadpool_info()},
              "n_bootstrap": 1000, "n_permutations": 1000, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "analysis.json", record)
    env = record["environment"]
    lines = [f"# Analysis benchmark ({args.models} models)", "",
             f"{record['generated']}, {env['platform']}, {env['cpu_count']} CPUs, numpy "
             f"{env['libraries']['numpy']}. Activations loaded in {load_seconds:.1f} s; Phases 3 and 6 with "
             f"controls (1,000 permutations, 1,000 bootstrap draws) in {analysis_seconds:.1f} s: "
             f"{compute_seconds:.1f} s of computation and {analysis_seconds - compute_seconds:.1f} s drawing "
             "their figures (matplotlib). The MiniLM control, which runs a model, is timed apart.", "",
             "| computation | compute s | figures s | measured |", "|---|---:|---:|---|"]
    lines += [f"| {name} | {res['compute_seconds']:.2f} | {res['figure_seconds']:.2f} | {res['label']} |"
              for name, res in results.items()]
    atomic_write_text(RESULTS / "analysis.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
