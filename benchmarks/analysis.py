"""Benchmark: Phases 3 and 6 (vectors, subspaces, alignment) for the three models from cached activations.

Runs every VEC/SUB computation with its controls (1,000 permutations, 1,000 bootstrap draws) plus the
MiniLM positive control, times each, and writes `benchmarks/results/analysis.json` and `analysis.md`
with the machine it ran on. Activations must already be in the store (`python -m emoverify run ...`).

    python benchmarks/analysis.py                 # stand-ins (the null model)
    python benchmarks/analysis.py --models real   # the paper's models, where their weights are
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from emoverify.claims import ClaimContext
from emoverify.control_claims import minilm_positive_control
from emoverify.provenance import atomic_write_json, atomic_write_text, environment, utc_now
from emoverify.subspace_claims import load_views, neutral_alignment, procrustes_gain, raw_overlap
from emoverify.vector_claims import emotion_vector_cosines

MODELS = ["gpt2", "pythia-160m", "gpt-neo-125M"]
RESULTS = Path(__file__).parent / "results"


def _timed(name: str, func: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    start = time.perf_counter()
    measurement = func(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"{name:<40} {seconds:7.2f} s  {measurement.label}")
    return {"seconds": round(seconds, 3), "value": measurement.value, "interval": measurement.interval,
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
    if not args.skip_minilm:
        results["CTRL MiniLM probe"] = _timed("CTRL MiniLM probe", minilm_positive_control, ctx)
    record = {"generated": utc_now(), "model_source": args.models, "environment": environment(),
              "load_seconds": round(load_seconds, 3), "analysis_seconds": round(analysis_seconds, 3),
              "n_bootstrap": 1000, "n_permutations": 1000, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "analysis.json", record)
    env = record["environment"]
    lines = [f"# Analysis benchmark ({args.models} models)", "",
             f"{record['generated']}, {env['platform']}, {env['cpu_count']} CPUs, numpy "
             f"{env['libraries']['numpy']}. Activations loaded in {load_seconds:.1f} s; Phases 3 and 6 with "
             f"controls (1,000 permutations, 1,000 bootstrap draws) in {analysis_seconds:.1f} s.", "",
             "| computation | seconds | measured |", "|---|---:|---|"]
    lines += [f"| {name} | {res['seconds']:.2f} | {res['label']} |" for name, res in results.items()]
    atomic_write_text(RESULTS / "analysis.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
