"""Benchmark: a warm `pytest claims/`, where every slow result is already in the store.

Runs `pytest claims -q` `--runs` times, each in a fresh interpreter (as a user types it), and records for
each run the wall time from outside, the seconds of each claim (from the status file it writes), the load
average before and after (the VM is shared; a loaded machine runs slower), and which heavy libraries the
run imported (a warm run should import no torch). The first run may fill the store and is reported apart;
the warm figure is the median of the others. With `--compare DIR`, another checkout (its own code and
`artifacts/`, e.g. an export of an older commit) runs alternately with this one, in turn first and second,
so a drift of the machine's speed falls on both alike.

    python benchmarks/claims_warm.py                       # paper mode (the default of `pytest claims/`)
    python benchmarks/claims_warm.py --models standin --runs 4
    python benchmarks/claims_warm.py -k "not SUB"          # a subset, as pytest's -k selects it
    python benchmarks/claims_warm.py --compare /tmp/before # this checkout against another, interleaved

Writes `benchmarks/results/<--name, default claims-warm>[-standin].{json,md}` (`--out` for another directory).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from emoverify.provenance import atomic_write_json, atomic_write_text, environment, machine, utc_now

ROOT = Path(__file__).resolve().parents[1]
# Run inside the child: pytest as `python -m pytest` runs it, then which heavy libraries it imported.
_CHILD = """
import json, sys
import pytest
code = pytest.main(sys.argv[1:])
heavy = ("torch", "transformers", "sklearn", "matplotlib", "scipy")
print("BENCH " + json.dumps({"exit": int(code), "imported": [m for m in heavy if m in sys.modules]}))
"""


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def run_once(root: Path, models: str, select: str | None, status: Path) -> dict[str, Any]:
    """One `pytest claims -q` of the checkout at `root`, in a fresh interpreter: wall time, per-claim seconds,
    load, imports."""
    args = ["claims", "-q", "-p", "no:cacheprovider", f"--emoverify-models={models}",
            f"--emoverify-status={status}"] + (["-k", select] if select else [])
    load_before = _load()
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"pytest did not finish:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    child = json.loads(line.removeprefix("BENCH "))
    claims = {c["id"]: c["seconds"] for c in json.loads(status.read_text())["claims"]}
    return {"wall_seconds": round(wall, 2), "claim_seconds": claims, "pytest_exit": child["exit"],
            "imported": child["imported"], "load_before": round(load_before, 2), "load_after": round(_load(), 2)}


def _markdown(report: dict[str, Any]) -> str:
    where = report["machine"]
    lines = [f"# Warm `pytest claims/` ({report['models']} mode)", "",
             f"{report['generated']}, {where['cpu']}, {where['usable_cpus']} usable CPUs, {where['platform']}. "
             f"Selection: {report['select'] or 'all claims'}. {report['note']}", ""]
    for label, checkout in report["checkouts"].items():
        runs = checkout["runs"]
        ids = sorted(runs[0]["claim_seconds"])
        lines += [f"## {label}: {checkout['root']}", "",
                  f"**Warm wall time, median of {len(runs) - 1} runs after the first: "
                  f"{checkout['warm_median_seconds']} s** (first run {runs[0]['wall_seconds']} s).", "",
                  "| run | wall s | load before / after | imported |", "|---:|---:|---|---|"]
        lines += [f"| {i + 1} | {r['wall_seconds']} | {r['load_before']} / {r['load_after']} | "
                  f"{', '.join(r['imported']) or '-'} |" for i, r in enumerate(runs)]
        lines += ["", "Seconds per claim (computation and controls, as the status file records them):", "",
                  "| claim | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |",
                  "|---|" + "---:|" * len(runs)]
        lines += [f"| {cid} | " + " | ".join(str(r["claim_seconds"].get(cid, "")) for r in runs) + " |"
                  for cid in ids]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=("real", "standin"), default="real")
    parser.add_argument("--runs", type=int, default=3, help="runs in all; the first is reported apart")
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression")
    parser.add_argument("--note", default="", help="free text kept with the results")
    parser.add_argument("--root", default=str(ROOT), help="the checkout to run (default: this one)")
    parser.add_argument("--compare", default=None, help="another checkout to run alternately with it")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="claims-warm", help="stem of the result files")
    args = parser.parse_args()
    checkouts = {"this checkout": Path(args.root)}
    if args.compare:
        checkouts["compared with"] = Path(args.compare)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(max(2, args.runs)):
            order = list(checkouts.items())
            for label, root in order if i % 2 == 0 else order[::-1]:  # neither always goes first
                runs[label].append(run_once(root, args.models, args.select, Path(tmp) / "claim-status.json"))
                print(f"{label} run {i + 1}: {runs[label][-1]['wall_seconds']} s "
                      f"(load {runs[label][-1]['load_before']}), imported {runs[label][-1]['imported']}")
    report = {"benchmark": "claims-warm", "generated": utc_now(), "models": args.models, "select": args.select,
              "note": args.note, "machine": machine(), "environment": environment(),
              "checkouts": {label: {"root": str(root), "runs": runs[label],
                                    "warm_median_seconds": round(statistics.median(
                                        r["wall_seconds"] for r in runs[label][1:]), 2)}
                            for label, root in checkouts.items()}}
    stem = Path(args.out) / (args.name + ("-standin" if args.models == "standin" else ""))
    atomic_write_json(stem.with_suffix(".json"), report)
    atomic_write_text(stem.with_suffix(".md"), _markdown(report))
    for label, checkout in report["checkouts"].items():
        print(f"{label}: warm median {checkout['warm_median_seconds']} s")
    print(f"-> {stem}.md")


if __name__ == "__main__":
    main()
