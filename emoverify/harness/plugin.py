"""pytest plugin: every entry of `claims/*.yaml` is a test item that recomputes the claim.

Registered by the root `conftest.py` (`pytest_plugins = ["emoverify.harness.plugin"]`). It collects YAML
files that sit under a directory named `claims`; one `ClaimItem` per entry, named by its claim id, so
`pytest claims/ -k VEC-1` runs one claim. A malformed entry is an item that fails with the file, line and
id (not a collection error, which would stop the whole session): the other claims still run.

Options:
    --emoverify-models=real|standin   which models claims run on (default real)
    --emoverify-artifacts=DIR         activation store (default artifacts)
    --emoverify-device=DEVICE         torch device (default cpu)
    --emoverify-status=FILE           status JSON written at session end (default reports/claim-status.json)
    --emoverify-null-seeds=N          stand-in seeds the null-model control runs each claim on (default 5)

At session end, if any claim ran, the status JSON is written atomically and a summary line printed.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emoverify import __version__
from emoverify.computations.registry import ClaimContext
from emoverify.errors import ClaimFileError, EmoverifyError
from emoverify.harness.evaluation import ClaimResult, error_record, evaluate_claim, summary_line
from emoverify.harness.expectations import format_interval
from emoverify.harness.records import StatusDocument, StatusRecord, running_marker
from emoverify.harness.schema import Claim, parse_claim_file
from emoverify.provenance import atomic_write_json, environment, utc_now

__all__ = ["ClaimFailure", "ClaimFile", "ClaimItem", "ClaimSession"]


class ClaimSession:
    """What one pytest session knows about claims: the context, the ids seen, the records of results."""

    def __init__(self, config: pytest.Config) -> None:
        base = config.invocation_params.dir
        self.status_path = base / config.getoption("emoverify_status")
        self.context = ClaimContext(
            artifacts_dir=base / config.getoption("emoverify_artifacts"),
            figures_dir=self.status_path.parent / "figures",
            device=config.getoption("emoverify_device"),
            model_source=config.getoption("emoverify_models"),
            null_seeds=config.getoption("emoverify_null_seeds"),
        )
        self.known_ids: dict[str, str] = {}  # claim id -> "file:line", across every file collected
        self.records: list[StatusRecord] = []


_SESSION = pytest.StashKey[ClaimSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("emoverify", "emoverify claims")
    group.addoption("--emoverify-models", choices=("real", "standin"), default="real",
                    help="run claims on the paper's models (real) or on random-init stand-ins (standin)")
    group.addoption("--emoverify-artifacts", default="artifacts", metavar="DIR",
                    help="activation store root (default: artifacts)")
    group.addoption("--emoverify-device", default="cpu", help="torch device for claims (default: cpu)")
    group.addoption("--emoverify-status", default="reports/claim-status.json", metavar="FILE",
                    help="claim status JSON written at session end (default: reports/claim-status.json)")
    group.addoption("--emoverify-null-seeds", type=_positive_int, default=5, metavar="N",
                    help="random-init stand-in seeds (0..N-1) the null-model control runs each claim on; a claim "
                         "is not diagnostic when its expectation holds on any of them (default: 5)")
    group.addoption("--emoverify-claims", action="append", default=[], metavar="DIR",
                    help="a folder of claim files under another name than `claims` (repeatable)")
    parser.addini("emoverify_claim_dirs", type="paths", default=[],
                  help="folders of claim files under other names than `claims`, relative to the ini file")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SESSION] = ClaimSession(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ClaimFile | None:
    if file_path.suffix in (".yaml", ".yml") and is_claim_file(file_path, parent.config):
        return ClaimFile.from_parent(parent, path=file_path)
    return None


def is_claim_file(file_path: Path, config: pytest.Config) -> bool:
    """The rule that finds claim files: a YAML file is one when

    * a folder of its path below pytest's rootdir is named `claims` (`pytest` in the checkout, or
      `pytest /path/to/checkout/claims` from anywhere: the rootdir is the checkout then), or
    * it lies under a folder given by `--emoverify-claims DIR` or the `emoverify_claim_dirs` ini option, or
    * it was itself named on the command line (`pytest my/other/place.yaml`).

    The rootdir, not the absolute path, decides the first: a checkout that happens to live under some
    `claims/` folder does not turn every YAML file of the project into claims.
    """
    try:
        if "claims" in file_path.relative_to(config.rootpath).parent.parts:
            return True
    except ValueError:
        pass
    base = config.invocation_params.dir
    folders = [base / d for d in config.getoption("emoverify_claims")] + list(config.getini("emoverify_claim_dirs"))
    if any(file_path.is_relative_to(Path(folder).resolve()) for folder in folders):
        return True
    named = {(base / arg.split("::")[0]).resolve() for arg in config.args}
    return file_path.resolve() in named


class ClaimFile(pytest.File):
    """A claim file: one item per entry, valid or not."""

    def collect(self) -> Iterator[pytest.Item]:
        session = self.config.stash[_SESSION]
        for entry in parse_claim_file(self.path, session.known_ids, name=self._display_name()):
            if isinstance(entry, ClaimFileError):
                name = entry.claim_id or f"line-{entry.line}"
                yield ClaimErrorItem.from_parent(self, name=name, error=entry)
            else:
                session.known_ids[entry.id] = f"{entry.file}:{entry.line}"
                yield ClaimItem.from_parent(self, name=entry.id, claim=entry)

    def _display_name(self) -> str:
        # Relative paths read better in messages and keep the status file free of machine paths.
        try:
            return str(self.path.relative_to(self.config.invocation_params.dir))
        except ValueError:
            return str(self.path)


class ClaimFailure(Exception):
    """Raised by `ClaimItem.runtest` when the claim's outcome is a failure; carries the words to print."""

    def __init__(self, text: str, traceback: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.traceback = traceback


class ClaimItem(pytest.Item):
    """One claim: evaluate it, record it, and pass, fail or skip as its status and revision say."""

    def __init__(self, *, claim: Claim, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.claim = claim

    def runtest(self) -> None:
        session = self.config.stash[_SESSION]
        result = evaluate_claim(self.claim, session.context)
        record = result.record(figures_relative_to=session.status_path.parent)
        session.records.append(record)
        for key in ("status", "verdict", "measured", "label", "interval", "reason"):
            self.user_properties.append((key, getattr(record, key)))
        if result.outcome == "skipped":
            # Reported at the claim's line, not at this line of the plugin.
            raise pytest.skip.Exception(f"{self.claim.id}: {result.reason}", _use_item_location=True)
        if result.outcome == "failed":
            raise ClaimFailure(describe_result(result), result.traceback)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ClaimFailure):
            return _with_traceback(self.config, excinfo.value)
        return super().repr_failure(excinfo, style)  # a bug in the harness itself: show everything

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.claim.line - 1, self.claim.id


class ClaimErrorItem(pytest.Item):
    """A claim entry that failed validation: it fails with the file, line and id, and nothing else stops."""

    def __init__(self, *, error: ClaimFileError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        session = self.config.stash[_SESSION]
        session.records.append(error_record(self.error, session.context.model_source))
        self.user_properties.append(("status", "error"))
        raise ClaimFailure(f"invalid claim entry {self.error}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ClaimFailure):
            return excinfo.value.text
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.error.line - 1, f"claim entry {self.name}"


def describe_result(result: ClaimResult) -> str:
    """The failure text of a claim, in plain words."""
    claim = result.claim
    lines = [f"{claim.id} (§{claim.section}, {claim.revision}): {result.verdict}",
             f"  statement: {claim.statement}",
             f"  expected:  {claim.expect.describe()}"]
    if result.measurement is not None:
        interval = format_interval(result.measurement.interval)
        lines.append(f"  measured:  {result.label}" + (f" ({interval})" if interval else "")
                     + (" [stand-in models]" if result.model_source == "standin" else ""))
    lines.append(f"  reason:    {result.reason}")
    if claim.revision == "rev1" and result.status == "verified":
        lines.append("  meaning:   the statement Rev.2 retracted holds on this measurement")
    lines.append(f"  protocol:  {claim.protocol}")
    if result.fragility.verdict != "not assessed":
        lines.append(f"  choices:   {result.fragility.verdict}: {result.fragility.reason}")
    for name, control in result.controls.items():
        text = control.error if control.error is not None else control.reason
        lines.append(f"  {name}: {control.label or control.status} ({text})")
    return "\n".join(lines)


def _with_traceback(config: pytest.Config, failure: ClaimFailure) -> str:
    # The traceback of a computation's exception only when asked for: -v, or an explicit --tb style.
    asked = config.getoption("verbose") > 0 or config.getoption("tbstyle") in ("long", "short", "native")
    if failure.traceback and asked:
        return f"{failure.text}\n\n{failure.traceback}"
    return failure.text


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    records = config.stash[_SESSION].records
    if records:
        terminalreporter.write_line(summary_line(record.verdict for record in records))
        assessed = [r for r in records if r.fragility.verdict != "not assessed"]
        if assessed:
            fragile = [f"{r.id} ({', '.join(r.fragility.flips)})" for r in assessed if r.fragility.verdict == "fragile"]
            terminalreporter.write_line(f"emoverify: over the open choices, {len(assessed) - len(fragile)} robust, "
                                        f"{len(fragile)} fragile" + (f": {'; '.join(fragile)}" if fragile else ""))
        return
    # Nothing collected as a claim: say why, if a folder on the command line holds YAML files.
    base = config.invocation_params.dir
    for arg in config.args:
        folder = base / arg.split("::")[0]
        yamls = sorted(folder.rglob("*.y*ml")) if folder.is_dir() else []
        if yamls:
            terminalreporter.write_line(
                f"emoverify: {folder} holds {len(yamls)} YAML file(s), but none is a claim file: claim files live "
                f"in a folder named `claims`; for another name pass `--emoverify-claims {arg}` (or set the "
                "`emoverify_claim_dirs` ini option), or name the files on the command line")


def pytest_collection_finish(session: pytest.Session) -> None:
    state = session.config.stash.get(_SESSION, None)
    if state is not None and any(isinstance(item, (ClaimItem, ClaimErrorItem)) for item in session.items):
        atomic_write_json(running_marker(state.status_path), {"started": utc_now(), "pid": os.getpid()})


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the status file: this run's records merged into the last run's, by claim (see `merge_records`)."""
    state = session.config.stash.get(_SESSION, None)
    if state is None or not state.records:
        return
    _write_status(state, session)


def _write_status(state: ClaimSession, session: pytest.Session) -> None:
    records = merge_records(_previous(state), state.records, session.config.invocation_params.dir)
    document = StatusDocument(generated=utc_now(), emoverify_version=__version__, environment=environment(),
                              model_source=state.context.model_source, claims=records)
    atomic_write_json(state.status_path, document.to_json())
    running_marker(state.status_path).unlink(missing_ok=True)


def _previous(state: ClaimSession) -> StatusDocument | None:
    """The status file a run would merge into: same models, readable; None otherwise (it is replaced whole)."""
    try:
        previous = StatusDocument.from_json(json.loads(state.status_path.read_text(encoding="utf-8")),
                                            str(state.status_path))
    except (OSError, ValueError, EmoverifyError):
        return None
    return previous if previous.model_source == state.context.model_source else None


def merge_records(previous: StatusDocument | None, new: list[StatusRecord], base: Path) -> tuple[StatusRecord, ...]:
    """This run's records, then the earlier records of claims this run did not run (`-k`, one file, a crash).

    Each record carries its own time and code version, so a record kept from an earlier run shows when and
    with what it was computed, and the report marks it stale when the code has changed since. An earlier
    record whose claim file is gone is dropped.
    """
    ran = {(r.file, r.id if r.id is not None else r.line) for r in new}
    kept = [r for r in (previous.claims if previous else ())
            if (r.file, r.id if r.id is not None else r.line) not in ran and (base / r.file).is_file()]
    return tuple(new) + tuple(kept)
