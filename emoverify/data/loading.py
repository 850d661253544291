"""Loading the versioned dataset files: hash check, JSON Lines parsing, validation, DataFrame.

Every data file's sha256 is recorded in `SHA256SUMS.json` beside it, with the data `version`. The loader
refuses a file whose hash differs, so an artifact's provenance (`dataset_sha256`) always names exactly
the prompts it was computed from.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from emoverify.errors import DatasetError
from emoverify.provenance import sha256_file

from .validation import OPTIONAL_FIELDS, validate_records

__all__ = [
    "DATASETS",
    "DATA_DIR",
    "MANIFEST_PATH",
    "check_superset",
    "dataset_path",
    "dataset_sha256",
    "dataset_version",
    "load_dataset",
    "load_dataset_file",
    "read_manifest",
    "read_records",
    "records_to_frame",
]

DATASETS: tuple[str, ...] = ("baseline", "extended")
DATA_DIR = Path(__file__).resolve().parent
MANIFEST_PATH = DATA_DIR / "SHA256SUMS.json"

COLUMNS: tuple[str, ...] = ("id", "emotion", "text", "span_start", "span_end")
_REBUILD_HINT = ("if the change is intended, edit emoverify/data/prompts.py and run "
                 "`python -m emoverify.data.build` (it rewrites the files and their hashes); "
                 "otherwise restore the file from git")


def read_manifest(path: str | os.PathLike[str] = MANIFEST_PATH) -> dict[str, Any]:
    """The checked-in manifest: `{"version": str, "datasets": {name: {"file", "sha256", ...}}}`."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read the dataset manifest {path}: {exc}; {_REBUILD_HINT}") from None
    if not (isinstance(manifest, dict) and isinstance(manifest.get("version"), str)
            and isinstance(manifest.get("datasets"), dict)):
        raise DatasetError(f"dataset manifest {path} lacks a 'version' string or a 'datasets' table; "
                           f"{_REBUILD_HINT}")
    return manifest


def _entry(name: str) -> dict[str, Any]:
    datasets = read_manifest()["datasets"]
    if name not in datasets:
        close = difflib.get_close_matches(str(name), list(datasets), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DatasetError(f"unknown dataset {name!r}{hint}; known datasets: {sorted(datasets)}")
    return datasets[name]


def dataset_path(name: str) -> Path:
    """Path of dataset `name`'s JSON Lines file inside the installed package."""
    return DATA_DIR / _entry(name)["file"]


def dataset_version() -> str:
    """The data version recorded in the manifest (bumped whenever any prompt changes)."""
    return read_manifest()["version"]


def _verify_sha256(path: Path, expected_sha256: str) -> str:
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise DatasetError(f"data file {path} has changed: its sha256 is {actual} but {expected_sha256} "
                           f"is recorded; {_REBUILD_HINT}")
    return actual


def dataset_sha256(name: str) -> str:
    """The sha256 of dataset `name`'s file, for artifact provenance; checked against the manifest.

    Raises:
        DatasetError: unknown name, or the file no longer matches its recorded hash.
    """
    entry = _entry(name)
    return _verify_sha256(DATA_DIR / entry["file"], entry["sha256"])


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse a JSON Lines file into dicts, one per line; a blank or malformed line names its number."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                raise DatasetError(f"{path}: line {line_number} is blank; remove it (one record per line)")
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{path}: line {line_number} is not valid JSON ({exc}); "
                                   f"fix or remove it") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}: line {line_number} is a JSON {type(record).__name__}, "
                                   f"not an object; write one record object per line")
            records.append(record)
    return records


def records_to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Validated records as a DataFrame: `id, emotion, text, span_start, span_end` + optional fields."""
    optional = [field for field in OPTIONAL_FIELDS if any(field in record for record in records)]
    frame = pd.DataFrame({
        "id": [record["id"] for record in records],
        "emotion": [record["emotion"] for record in records],
        "text": [record["text"] for record in records],
        "span_start": pd.array([record["span"][0] for record in records], dtype="int64"),
        "span_end": pd.array([record["span"][1] for record in records], dtype="int64"),
        **{field: [record.get(field) for record in records] for field in optional},
    })
    return frame


def load_dataset_file(path: str | os.PathLike[str], expected_sha256: str | None = None, *,
                      expected_per_emotion: int | None = None) -> pd.DataFrame:
    """Load and validate one JSON Lines dataset file, the path `load_dataset` takes.

    Args:
        path: the file.
        expected_sha256: when given, the file must hash to it (a changed file is refused).
        expected_per_emotion: when given, each emotion must have exactly this many records.

    Raises:
        DatasetError: hash mismatch, unreadable line, or any validation problem (naming the record).
    """
    path = Path(path)
    if expected_sha256 is not None:
        _verify_sha256(path, expected_sha256)
    records = read_records(path)
    validate_records(records, expected_per_emotion, source=str(path))
    return records_to_frame(records)


def check_superset(subset: pd.DataFrame, superset: pd.DataFrame, *, subset_name: str = "subset",
                   superset_name: str = "superset") -> None:
    """Check that, per emotion, the first records of `superset` are `subset`'s records verbatim.

    Raises:
        DatasetError: naming the first record where the two differ.
    """
    columns = list(subset.columns)
    for emotion in subset["emotion"].unique():
        mine = subset[subset["emotion"] == emotion].to_dict(orient="records")
        theirs = superset[superset["emotion"] == emotion].head(len(mine)).to_dict(orient="records")
        for position, record in enumerate(mine):
            other = theirs[position] if position < len(theirs) else {}
            if any(record[column] != other.get(column) for column in columns):
                raise DatasetError(
                    f"{superset_name} must begin, for each emotion, with {subset_name}'s records verbatim, "
                    f"but its {emotion} record #{position + 1} differs from {subset_name}'s "
                    f"(id {record['id']!r}); rebuild both with `python -m emoverify.data.build`")


def load_dataset(name: str) -> pd.DataFrame:
    """Load a packaged dataset (`"baseline"` or `"extended"`), hash-checked and validated.

    Returns:
        DataFrame in file order (emotions in `EMOTIONS` order, then by number) with columns
        `id, emotion, text, span_start, span_end, form, person, frame`; `text[span_start:span_end]` is
        the emotion word (neutral: its matched position, see the README).

    Raises:
        DatasetError: unknown name (listing the known ones), changed file, or invalid records.

    Example:
        >>> df = load_dataset("baseline")
        >>> df.groupby("emotion").size().to_dict()
        {'anger': 70, 'apology': 70, 'gratitude': 70, 'neutral': 70}
    """
    entry = _entry(name)
    frame = load_dataset_file(DATA_DIR / entry["file"], entry["sha256"],
                              expected_per_emotion=entry.get("per_emotion"))
    if entry.get("superset_of"):
        base = entry["superset_of"]
        check_superset(load_dataset(base), frame, subset_name=base, superset_name=name)
    return frame
