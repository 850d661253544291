"""Phase 1: the prompt datasets (gratitude, anger, apology, neutral), versioned, hash-checked, validated.

    >>> from emoverify.data import load_dataset, dataset_sha256, length_statistics
    >>> df = load_dataset("baseline")          # 280 prompts, 70 per emotion
    >>> row = df.iloc[0]
    >>> row.text[row.span_start:row.span_end]  # the emotion word
    'grateful'

`extended` (400 prompts) begins, for each emotion, with `baseline`'s 70 records verbatim. The format,
the span and matched-position definitions, and how to change a dataset: `emoverify/data/README.md`.
This package imports only the standard library, pandas and `emoverify.errors`/`emoverify.provenance`.
"""

from __future__ import annotations

from .lengths import Tokenize, length_statistics
from .loading import (
    DATASETS,
    check_superset,
    dataset_path,
    dataset_sha256,
    dataset_version,
    load_dataset,
    load_dataset_file,
)
from .validation import EMOTIONS, FORMS, PERSONS, english_problem, validate_records

__all__ = [
    "DATASETS",
    "EMOTIONS",
    "FORMS",
    "PERSONS",
    "Tokenize",
    "check_superset",
    "dataset_path",
    "dataset_sha256",
    "dataset_version",
    "english_problem",
    "length_statistics",
    "load_dataset",
    "load_dataset_file",
    "validate_records",
]
