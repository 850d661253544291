"""The geometry claims' intervals and permutation percentiles from two claim status files, side by side.

Reads the status JSON of two `pytest claims` runs (e.g. before and after a change to the resampling) and
prints, for VEC-1..3 and SUB-1..3, one row per figure: the measured value in each run, the reported 95%
interval in each, and the percentile of the observed figure in its label-permutation null in each (VEC: the
cosine; SUB-1: the emotion-vector span, k = 3, as the PCA overlap does not depend on labels; SUB-2: the
after-lstsq figure; SUB-3 has no permutation null). Where the second run's interval does not contain its
estimate, the row gives its bias (median of the draws minus the estimate).

    python benchmarks/resampling_table.py BEFORE.json AFTER.json > table.md
"""

from __future__ import annotations

import argparse
import json
from itertools import combinations
from pathlib import Path
from typing import Any

CLAIMS = ("VEC-1", "VEC-2", "VEC-3", "SUB-1", "SUB-2", "SUB-3")


def _figures(records: dict[str, dict[str, Any]], claim: str,
             ) -> list[tuple[str, float, list[float], float | None, dict | None]]:
    """(figure name, value, reported interval, permutation percentile, interval evidence) per measured figure."""
    record = records[claim]
    details = record["details"]
    if claim.startswith("VEC"):
        pairs = details["value_pairs"]
        return [(pair, value, interval, details["by_pair"][pair]["permutation_percentile"],
                 details["by_pair"][pair].get("bootstrap_interval"))
                for pair, value, interval in zip(pairs, record["measured"], record["interval"], strict=True)]
    by_pair = details["by_pair"]
    if claim == "SUB-1":  # pairs in the order of the models' combinations, as the value lists them
        pairs = ["/".join(pair) for pair in combinations(record["args"]["models"], 2)]
        return [(pair, value, interval, by_pair[pair]["emotion_vector_span_k3"]["permutation_percentile"],
                 by_pair[pair].get("bootstrap_interval"))
                for pair, value, interval in zip(pairs, record["measured"], record["interval"], strict=True)]
    pairs = details["value_pairs"]
    if claim == "SUB-2":
        return [(pair, value, interval, by_pair[pair]["permutation_percentile_after"],
                 by_pair[pair].get("bootstrap_intervals", {}).get("after"))
                for pair, value, interval in zip(pairs, record["measured"], record["interval"], strict=True)]
    # SUB-3's interval evidence: its own details, else (older runs) the gain's in SUB-2's, the same analysis
    shared = records.get("SUB-2", {}).get("details", {}).get("by_pair", {})
    return [(pair, value, interval, None, by_pair[pair].get("bootstrap_interval")
             or shared.get(pair, {}).get("bootstrap_intervals", {}).get("gain"))
            for pair, value, interval in zip(pairs, record["measured"], record["interval"], strict=True)]


def _interval(interval: list[float]) -> str:
    return f"[{interval[0]:.4g}, {interval[1]:.4g}]"


def _percentile(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The markdown table of the geometry claims in two status documents."""
    old = {r["id"]: r for r in before["claims"]}
    new = {r["id"]: r for r in after["claims"]}
    lines = ["| claim | figure | measured (before → after) | 95% interval before | 95% interval after | "
             "permutation percentile before | after | interval method before | after (bias if it excludes the "
             "estimate) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for claim in CLAIMS:
        rows = zip(_figures(old, claim), _figures(new, claim), strict=True)
        for (name, v0, i0, p0, why0), (name1, v1, i1, p1, why1) in rows:
            assert name == name1, (claim, name, name1)
            measured = f"{v0:g}" if v0 == v1 else f"{v0:g} → {v1:g} (CHANGED)"
            lines.append(f"| {claim} | {name} | {measured} | {_interval(i0)} | {_interval(i1)} | {_percentile(p0)} | "
                         f"{_percentile(p1)} | {_method(why0)} | {_method(why1)} |")
    return "\n".join(lines) + "\n"


def _method(why: dict[str, Any] | None) -> str:
    """How the interval was chosen, from the claim's details (the old `bootstrap_interval` or a ReportedInterval)."""
    if not why:
        return "not recorded"
    if "contains_estimate" not in why:  # the old scheme's record: percentile, or basic where shifted
        return why["method"].split(":")[0]
    return why["method"] + ("" if why["contains_estimate"] else f"; excludes the estimate, bias {why['bias']:+.4g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="status JSON of the first run")
    parser.add_argument("after", type=Path, help="status JSON of the second run")
    args = parser.parse_args()
    print(table(*(json.loads(path.read_text(encoding="utf-8")) for path in (args.before, args.after))), end="")


if __name__ == "__main__":
    main()
