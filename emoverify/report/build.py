"""The corrections table: Rev.1 said -> Rev.2 says -> measured -> verdict, from the claim-status JSON.

    python -m emoverify.report [--status reports/claim-status.json] [--out reports/] [--models real|standin]

writes `corrections.md`, a self-contained `index.html` (the table, the summary, each claim's details and
its figures embedded) and `badges/<id>.svg`, then prints the summary line. Without a status file it runs
`pytest claims/` first (in a subprocess, so the report never shares a pytest session with its caller).

A claim `X` and its retracted Rev.1 statement `X.rev1` share one row; a Rev.1 entry without a Rev.2
partner has its own. Rows follow the order of paper/CLAIMS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from emoverify.errors import EmoverifyError
from emoverify.harness.evaluation import summary_line
from emoverify.harness.records import StatusDocument, code_version, running_marker
from emoverify.provenance import atomic_write_text
from emoverify.report.render import badge_files, build_rows, render_html, render_markdown

__all__ = ["load_status", "main", "run_claims", "write_report"]


def status_notes(document: StatusDocument, status_path: Path) -> list[str]:
    """What the reader must know before trusting the table: an unfinished run, records from other code."""
    notes = []
    marker = running_marker(status_path)
    if marker.is_file():
        notes.append(f"A claims run that started after this status was written did not finish (killed or crashed; "
                     f"{marker} is still there): the records below are from the runs before it.")
    current = code_version()
    stale = [r.anchor for r in document.claims if r.code_version != current]
    if stale:
        notes.append(f"Stale: {len(stale)} record(s) were computed by other code than this ({current}) and may not "
                     f"match it: {', '.join(stale)}. Rerun `pytest claims/` to refresh them.")
    return notes


def write_report(document: StatusDocument, out: Path, status_dir: Path, notes: Sequence[str] = ()) -> list[Path]:
    """Write `corrections.md`, `index.html` and the badges under `out`; return the paths written."""
    written = [atomic_write_text(out / "corrections.md", render_markdown(document, notes)),
               atomic_write_text(out / "index.html", render_html(document, build_rows(document.claims),
                                                                 status_dir, notes))]
    for name, svg in badge_files(document).items():
        written.append(atomic_write_text(out / "badges" / name, svg))
    return written


def run_claims(status: Path, models: str) -> int:
    """Run `pytest claims/` in a subprocess that writes `status`; return its exit code."""
    # -p: the plugin loads even where no conftest.py registers it (a no-op where one does).
    command = [sys.executable, "-m", "pytest", "claims", "-q", "-p", "emoverify.harness.plugin",
               f"--emoverify-status={status}", f"--emoverify-models={models}"]
    return subprocess.run(command, check=False).returncode


def load_status(path: Path) -> StatusDocument:
    """Read and check a claim status JSON written by the pytest plugin."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EmoverifyError(f"cannot read the claim status {path}: {err}") from None
    return StatusDocument.from_json(data, str(path))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry: write the report from the status file (running the claims first if needed)."""
    parser = argparse.ArgumentParser(prog="python -m emoverify.report", description=__doc__.splitlines()[0])
    parser.add_argument("--status", type=Path, default=Path("reports/claim-status.json"),
                        help="claim status JSON (default: reports/claim-status.json); run pytest if absent")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output directory (default: reports)")
    parser.add_argument("--models", choices=("real", "standin"), default=None,
                        help="models for the pytest run when there is no status file (default: real); "
                             "with a status file, it must have been computed on these models")
    args = parser.parse_args(argv)
    try:
        if not args.status.exists():
            print(f"no claim status at {args.status}: running pytest claims/ first", file=sys.stderr)
            run_claims(args.status, args.models or "real")
            if not args.status.exists():
                raise EmoverifyError(f"pytest claims/ wrote no claim status at {args.status}: did any claim run?")
        document = load_status(args.status)
        source = document.model_source
        if args.models is not None and source != args.models:
            raise EmoverifyError(f"{args.status} was computed on {source} models, not {args.models}: rerun "
                                 f"`pytest claims/ --emoverify-models={args.models}` or drop --models")
        notes = status_notes(document, args.status)
        write_report(document, args.out, args.status.parent, notes)
        for note in notes:
            print(f"emoverify.report: {note}", file=sys.stderr)
    except EmoverifyError as err:
        print(f"emoverify.report: {err}", file=sys.stderr)
        return 1
    print(summary_line(document.verdicts()))
    return 0

