"""The null model's range over its seeds, for the geometry claims, from a claim status file.

Reads the status JSON of a `pytest claims` run (a stand-in run, `--emoverify-models=standin`, measures the
claim itself on seed 0 too) and prints, for VEC-1..3 and SUB-1..3, one row per figure: the paper's
expectation, the value of each null seed, their range, and on how many seeds the claim's expectation holds
(the whole claim's, which is what makes it "not diagnostic": `emoverify/analysis/intervals.py`).

    python benchmarks/null_seeds_table.py reports/claim-status.json > table.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

CLAIMS = ("VEC-1", "VEC-2", "VEC-3", "SUB-1", "SUB-2", "SUB-3")


def _figure_names(record: dict[str, Any], n: int) -> list[str]:
    """What each number of the value is: a rank (VEC-1/2 sort their cosines), an emotion pair, a model pair."""
    args = record["args"]
    if args.get("order") == "sorted":
        return ["smallest", "middle", "largest"] if n == 3 else [f"rank {i + 1}" for i in range(n)]
    if args.get("pairs"):
        return ["/".join(pair) for pair in args["pairs"]]
    if args.get("models"):
        return [f"{a} → {b}" for i, a in enumerate(args["models"]) for b in args["models"][i + 1:]]
    return [str(i + 1) for i in range(n)]


def _row_values(value: Any, n: int) -> list[float | None]:
    values = value if isinstance(value, list) else [value]
    return [float(v) if isinstance(v, (int, float)) else None for v in values][:n] + [None] * max(0, n - len(values))


def table(document: dict[str, Any]) -> str:
    records = {r["id"]: r for r in document["claims"] if r.get("id") in CLAIMS}
    seeds_seen = sorted({run["seed"] for r in records.values()
                         for run in (r["controls"].get("null_model") or {}).get("seeds", [])})
    header = ["claim", "figure", "paper expects"] + [f"seed {s}" for s in seeds_seen] + [
        "null range", "seeds on which the claim holds", "null reaches the figure", "verdict of this run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for claim in CLAIMS:
        record = records.get(claim)
        null = (record or {}).get("controls", {}).get("null_model")
        if record is None or not null or not null.get("seeds"):
            lines.append(f"| {claim} | — | — |" + " — |" * (len(header) - 3))
            continue
        runs = {run["seed"]: run for run in null["seeds"]}
        measured = [run for run in null["seeds"] if run["status"] in ("verified", "refuted")]
        n = max((len(run["value"]) if isinstance(run["value"], list) else 1) for run in measured)
        holding = [run["seed"] for run in measured if run.get("holds")]
        reach = f"{len(holding)} of {len(measured)}" + (f" ({', '.join(map(str, holding))})" if holding else "")
        for i, name in enumerate(_figure_names(record, n)):
            cells = []
            for seed in seeds_seen:
                run = runs.get(seed)
                value = _row_values(run["value"], n)[i] if run and run["status"] in ("verified", "refuted") else None
                cells.append("—" if value is None else f"{value:.4f}")
            column = [v for run in measured if (v := _row_values(run["value"], n)[i]) is not None]
            spread = f"{min(column):.4f} – {max(column):.4f}" if column else "—"
            first = i == 0
            lines.append("| " + " | ".join([claim if first else "", name, record["expected_words"] if first else "",
                                            *cells, spread, reach if first else "",
                                            ("yes" if null.get("holds") else "no") if first else "",
                                            record["verdict"] if first else ""]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("status", type=Path, help="a claim status JSON (reports/claim-status.json)")
    args = parser.parse_args()
    print(table(json.loads(args.status.read_text(encoding="utf-8"))), end="")


if __name__ == "__main__":
    main()
