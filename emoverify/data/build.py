"""Build the dataset files from `prompts.FRAMES`: `python -m emoverify.data.build [--check]`.

Writes `baseline.jsonl` (the first `BASELINE_FRAMES` frames) and `extended.jsonl` (all frames) and
records their sha256 in `SHA256SUMS.json` with `DATA_VERSION`. Both files come from the same frames in
the same order, so `extended` begins, for each emotion, with `baseline`'s records verbatim: the superset
holds by construction. `--check` rewrites nothing and fails when the files differ from what the frames
give (the test suite runs it, so the frames and the checked-in files cannot drift apart).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from emoverify.errors import DatasetError
from emoverify.provenance import atomic_write_bytes, atomic_write_json, sha256_bytes

from .loading import DATA_DIR, DATASETS
from .prompts import BASELINE_FRAMES, FRAMES, Frame
from .validation import EMOTIONS, validate_records

__all__ = ["DATASET_FRAMES", "DATA_VERSION", "build_datasets", "dataset_records", "main", "parse_marked"]

# Bump whenever a prompt changes, so artifacts built on the old prompts say so in their provenance.
DATA_VERSION = "1.0"

# dataset -> (number of leading frames it holds, the dataset it must contain verbatim or None)
DATASET_FRAMES: dict[str, tuple[int, str | None]] = {
    "baseline": (BASELINE_FRAMES, None),
    "extended": (len(FRAMES), "baseline"),
}

_MARK = re.compile(r"\[([^\[\]]+)\]")


def parse_marked(marked: str) -> tuple[str, list[int]]:
    """Split a prompt with one `[bracketed]` span into its text and `[start, end]` offsets.

    Example:
        >>> parse_marked("Oh, [thank] you!")
        ('Oh, thank you!', [4, 9])
    """
    found = _MARK.findall(marked)
    if len(found) != 1 or marked.count("[") != 1 or marked.count("]") != 1:
        raise DatasetError(f"prompt {marked!r} must mark exactly one span with [brackets]")
    match = _MARK.search(marked)
    assert match is not None  # guaranteed by the count above
    start = match.start()
    text = marked[:start] + match.group(1) + marked[match.end():]
    return text, [start, start + len(match.group(1))]


def _frame_records(number: int, frame: Frame) -> dict[str, dict[str, Any]]:
    records = {}
    for emotion in EMOTIONS:
        text, span = parse_marked(getattr(frame, emotion))
        records[emotion] = {"id": f"{emotion}-{number:03d}", "emotion": emotion, "text": text,
                            "span": span, "form": frame.form, "person": frame.person,
                            "frame": f"f{number:03d}"}
    return records


def dataset_records(n_frames: int) -> list[dict[str, Any]]:
    """Records of the first `n_frames` frames, sorted by emotion (`EMOTIONS` order), then number."""
    per_frame = [_frame_records(number, frame) for number, frame in enumerate(FRAMES[:n_frames], start=1)]
    return [records[emotion] for emotion in EMOTIONS for records in per_frame]


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")


def build_datasets(directory: Path = DATA_DIR, *, check: bool = False) -> list[str]:
    """Write (or, with `check`, compare) every dataset file and the manifest; return what differs."""
    if set(DATASET_FRAMES) != set(DATASETS):
        raise DatasetError(f"build.DATASET_FRAMES {sorted(DATASET_FRAMES)} and loading.DATASETS "
                           f"{sorted(DATASETS)} must name the same datasets")
    manifest: dict[str, Any] = {"version": DATA_VERSION, "datasets": {}}
    differing = []
    for name, (n_frames, superset_of) in DATASET_FRAMES.items():
        records = dataset_records(n_frames)
        validate_records(records, expected_per_emotion=n_frames, source=f"dataset {name!r} (from prompts.py)")
        data = _jsonl(records)
        path = directory / f"{name}.jsonl"
        manifest["datasets"][name] = {"file": path.name, "sha256": sha256_bytes(data),
                                      "records": len(records), "per_emotion": n_frames,
                                      "superset_of": superset_of}
        if check:
            if not path.exists() or path.read_bytes() != data:
                differing.append(str(path))
        else:
            atomic_write_bytes(path, data)
    manifest_path = directory / "SHA256SUMS.json"
    if check:
        if not manifest_path.exists() or json.loads(manifest_path.read_text(encoding="utf-8")) != manifest:
            differing.append(str(manifest_path))
    else:
        atomic_write_json(manifest_path, manifest)
    return differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emoverify.data.build",
                                     description="Build the dataset files from prompts.FRAMES.")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when files differ")
    args = parser.parse_args(argv)
    differing = build_datasets(check=args.check)
    if args.check and differing:
        print("out of date (run `python -m emoverify.data.build`): " + ", ".join(differing), file=sys.stderr)
        return 1
    written = f"wrote {', '.join(DATASET_FRAMES)} and SHA256SUMS.json"
    print("dataset files are up to date" if args.check else written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
