"""The computations behind the DATA claims (Phase 1): prompt counts, English only, length statistics.

They read the packaged dataset files themselves rather than `load_dataset`, which refuses a file whose
counts or language are wrong: a claim must be able to *measure* a wrong count (and be refuted), not
only fail to load. Each file's hash is still checked against the manifest (`dataset_sha256`), so the
figure is about exactly the file the pipeline uses.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from emoverify.computations.registry import ClaimContext, Measurement, computation
from emoverify.data.lengths import LENGTH_STATISTICS, length_statistics
from emoverify.data.loading import dataset_path, dataset_sha256, dataset_version, read_records, records_to_frame
from emoverify.data.validation import EMOTIONS, english_problem

__all__ = ["english_and_length_statistics", "prompt_counts", "recompute_length_statistics"]


def _records(dataset: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The raw records of a packaged dataset, with its provenance (the hash check runs first)."""
    sha256 = dataset_sha256(dataset)
    path = dataset_path(dataset)
    return read_records(path), {"dataset": dataset, "file": path.name, "sha256": sha256,
                                "data_version": dataset_version()}


@computation("data.prompt_counts")
def prompt_counts(ctx: ClaimContext, dataset: str) -> Measurement:
    """Prompts per emotion, in `EMOTIONS` order (gratitude, anger, apology, neutral), counted in the file.

    Example:
        >>> prompt_counts(ClaimContext(), "baseline").value
        [70, 70, 70, 70]
    """
    records, provenance = _records(dataset)
    per_emotion = Counter(record.get("emotion") for record in records)
    counts = [per_emotion.get(emotion, 0) for emotion in EMOTIONS]
    others = {str(k): n for k, n in per_emotion.items() if k not in EMOTIONS}
    return Measurement(
        value=counts,
        label=f"{' / '.join(map(str, counts))} = {len(records)} prompts",
        details={"emotions": list(EMOTIONS), "per_emotion": dict(zip(EMOTIONS, counts, strict=True)),
                 "total": len(records), "distinct_texts": len({r.get("text") for r in records}),
                 "other_labels": others},
        provenance=provenance,
    )


_MEASURES: dict[str, Callable[[str], int]] = {"chars": len, "words": lambda text: len(text.split())}


def recompute_length_statistics(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Length statistics from raw records with the standard library only: an independent check of
    `length_statistics` (pandas). Same definitions: characters `len(text)`, words `len(text.split())`,
    sample standard deviation."""
    table: dict[str, dict[str, float]] = {}
    for emotion in EMOTIONS:
        texts = [r["text"] for r in records if r.get("emotion") == emotion]
        row: dict[str, float] = {"count": float(len(texts))}
        for prefix, measure in _MEASURES.items():
            lengths = [measure(text) for text in texts]
            row.update({f"{prefix}_mean": statistics.fmean(lengths), f"{prefix}_median": statistics.median(lengths),
                        f"{prefix}_min": min(lengths), f"{prefix}_max": max(lengths),
                        f"{prefix}_std": statistics.stdev(lengths) if len(lengths) > 1 else math.nan})
        table[emotion] = row
    return table


def _deviations(computed: dict[str, dict[str, float]], recomputed: dict[str, dict[str, float]],
                tolerance: float) -> tuple[float, list[str]]:
    """Largest absolute difference between two statistics tables, and each cell beyond `tolerance`."""
    largest, problems = 0.0, []
    for emotion, row in recomputed.items():
        for column, expected in row.items():
            got = computed.get(emotion, {}).get(column)
            if got is None:
                problems.append(f"{emotion}.{column} is missing from length_statistics")
                continue
            difference = abs(float(got) - float(expected))
            largest = max(largest, difference)
            if difference > tolerance:
                problems.append(f"{emotion}.{column}: length_statistics gives {got}, the records give {expected}")
    return largest, problems


@computation("data.english_and_length_statistics")
def english_and_length_statistics(ctx: ClaimContext, datasets: Sequence[str], tolerance: float) -> Measurement:
    """The number of problems found: prompts that fail the English check, plus length statistics of
    `length_statistics` that differ from a standard-library recomputation by more than `tolerance`.

    The statistics themselves (characters and words per emotion, per dataset) go into `details`.
    """
    non_english: list[str] = []
    stat_problems: list[str] = []
    stats: dict[str, Any] = {}
    largest = 0.0
    provenance = {}
    n_prompts = 0
    for dataset in datasets:
        records, provenance[dataset] = _records(dataset)
        n_prompts += len(records)
        non_english += [f"{dataset}/{r.get('id')}: {problem}" for r in records
                        if (problem := english_problem(str(r.get("text", ""))))]
        computed = length_statistics(records_to_frame(records)).to_dict(orient="index")
        deviation, problems = _deviations(computed, recompute_length_statistics(records), tolerance)
        largest = max(largest, deviation)
        stat_problems += [f"{dataset}: {p}" for p in problems]
        stats[dataset] = {emotion: {k: row[k] for k in ("count", *_columns())} for emotion, row in computed.items()}
    problems = non_english + stat_problems
    n_stats = sum(len(row) for table in stats.values() for row in table.values())
    return Measurement(
        value=len(problems),
        label=(f"{len(problems)} problems: {len(non_english)} of {n_prompts} prompts not English; "
               f"{len(stat_problems)} of {n_stats} statistics off (largest difference {largest:.1e})"),
        details={"non_english": non_english, "statistic_problems": stat_problems,
                 "largest_statistic_difference": largest, "tolerance": tolerance, "length_statistics": stats},
        provenance=provenance,
    )


def _columns() -> list[str]:
    return [f"{prefix}_{statistic}" for prefix in _MEASURES for statistic in LENGTH_STATISTICS]
