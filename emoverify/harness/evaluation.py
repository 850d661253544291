"""Running one claim: its computation, its expectation, its controls, and the status that follows.

Statuses:

* `verified`: measured, and the expectation holds;
* `refuted`: measured, and it does not;
* `needs-weights`: a model the claim requires is not on this machine (never a pass);
* `error`: the computation failed or measured something of the wrong shape; the reason says why.

A Rev.2 claim passes when verified. A Rev.1 claim (a retracted statement) passes when refuted: the
retraction is confirmed; if it is verified, Rev.1 was right after all and the claim fails.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emoverify.analysis.intervals import diagnostic, null_reaches
from emoverify.computations.registry import ClaimContext, Measurement, get_computation
from emoverify.errors import ClaimFileError, EmoverifyError, WeightsUnavailable
from emoverify.harness.expectations import format_value
from emoverify.harness.records import (
    NOT_ASSESSED,
    STATUSES,
    VERDICTS,
    ControlRecord,
    Fragility,
    Outcome,
    SeedRun,
    Status,
    StatusRecord,
    code_version,
    to_jsonable,
    verdict_kind,
)
from emoverify.harness.schema import Claim
from emoverify.lm import checkpoints
from emoverify.paper import PAPER_MODELS
from emoverify.provenance import utc_now

__all__ = ["STATUSES", "ClaimResult", "claim_outcome", "error_record", "evaluate_claim", "summary_line",
           "to_jsonable", "verdict"]

def claim_outcome(status: Status, revision: str, null_reaches: bool = False) -> Outcome:
    """The pytest outcome of a claim: `passed`, `failed` or `skipped`.

    A measurement the null model reaches too is evidence of nothing, so it never fails a claim: a Rev.1
    statement "verified" on it is not shown to be right after all (its verdict says "not diagnostic").
    """
    if status == "needs-weights":
        return "skipped"
    if status == "error":
        return "failed"
    if status == "verified" and null_reaches:
        return "passed"
    return "passed" if (status == "verified") == (revision == "rev2") else "failed"


def verdict(status: Status, revision: str, missing: Iterable[str] = (), null_reaches: bool = False) -> str:
    """The verdict in words, as the corrections table and the badges show it (categories: `VERDICTS`).

    Args:
        status: the measurement's status.
        revision: rev2 (asserted by the corrected paper) or rev1 (retracted).
        missing: paper models whose weights are absent.
        null_reaches: whether the null model (random-init stand-ins) gives the claimed figure too.
    """
    if status == "verified":
        if null_reaches:
            return "not diagnostic"
        return "verified" if revision == "rev2" else "Rev.1 was right after all"
    if status == "refuted":
        return "Rev.2 claim refuted" if revision == "rev2" else "retraction confirmed"
    if status == "needs-weights":
        return f"needs weights ({', '.join(missing)})" if missing else "needs weights"
    return "error"


def summary_line(verdicts: Iterable[str]) -> str:
    """`emoverify: N verified, N not diagnostic, N Rev.2 claim refuted, ...`: each verdict category counted."""
    counts = Counter(verdict_kind(words) for words in verdicts)
    return "emoverify: " + ", ".join(f"{counts[kind]} {kind}" for kind in VERDICTS)


@dataclass(frozen=True)
class _Attempt:
    """One run of a claim's computation in one context."""

    status: Status
    reason: str
    measurement: Measurement | None = None
    missing: tuple[str, ...] = ()  # paper models whose weights are absent
    traceback: str = ""


@dataclass(frozen=True)
class ClaimResult:
    """A claim's evaluation.

    Attributes:
        claim: the claim.
        status: one of `STATUSES`.
        reason: why, in words ("measured 0.57 is outside 0.5 ± 0.05", the fetch command, the error).
        measurement: what the computation returned; None when it did not run or failed.
        controls: per control name, what the control measured.
        missing: paper models whose weights are absent (needs-weights).
        seconds: wall time of the computation and its controls.
        model_source: "real" or "standin": what the main measurement ran on.
        traceback: the traceback of an unexpected exception, for `-v`.
    """

    claim: Claim
    status: Status
    reason: str
    measurement: Measurement | None = None
    controls: dict[str, ControlRecord] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    seconds: float = 0.0
    model_source: str = "real"
    traceback: str = ""
    fragility: Fragility = NOT_ASSESSED

    @property
    def null_reaches(self) -> bool:
        """Whether the null model gives the claimed figure too (then the measurement is not diagnostic)."""
        null = self.controls.get("null_model")
        return null is not None and null.holds is True

    @property
    def outcome(self) -> Outcome:
        return claim_outcome(self.status, self.claim.revision, self.null_reaches)

    @property
    def verdict(self) -> str:
        return verdict(self.status, self.claim.revision, self.missing, self.null_reaches)

    @property
    def label(self) -> str:
        if self.measurement is None:
            return ""
        return self.measurement.label or format_value(self.measurement.value)

    def record(self, figures_relative_to: Path | None = None) -> StatusRecord:
        """The status-file record (figure paths relative to `figures_relative_to`)."""
        claim, measurement = self.claim, self.measurement

        def figures(paths: Iterable[str]) -> tuple[str, ...]:
            if figures_relative_to is None:
                return tuple(str(p) for p in paths)
            return tuple(os.path.relpath(Path(p).resolve(), figures_relative_to.resolve()) for p in paths)

        controls = {name: dataclasses.replace(rec, figures=figures(rec.figures)) for name, rec in self.controls.items()}
        return StatusRecord(
            id=claim.id, revision=claim.revision, file=claim.file, line=claim.line, section=claim.section,
            statement=claim.statement, computation=claim.computation, args=to_jsonable(claim.args),
            status=self.status, outcome=self.outcome, verdict=self.verdict,
            measured=to_jsonable(measurement.value) if measurement else None, label=self.label,
            interval=to_jsonable(measurement.interval) if measurement else None,
            expected=to_jsonable(claim.expect.to_mapping()), expected_words=claim.expect.describe(),
            reason=self.reason, protocol=claim.protocol, requires=claim.requires, missing_weights=self.missing,
            controls=controls, details=to_jsonable(measurement.details) if measurement else {},
            figures=figures(measurement.figures) if measurement else (),
            provenance=to_jsonable(measurement.provenance) if measurement else {},
            seconds=self.seconds, model_source=self.model_source, traceback=self.traceback, generated=utc_now(),
            code_version=code_version(), fragility=self.fragility,
        )


def error_record(error: ClaimFileError, model_source: str) -> StatusRecord:
    """The status-file record of a claim entry that could not be collected."""
    return StatusRecord(
        id=error.claim_id, revision=None, file=error.file, line=error.line, section=None, statement=None,
        computation=None, args={}, status="error", outcome="failed", verdict="error", measured=None, label="",
        interval=None, expected=None, expected_words="", reason=str(error), protocol=None, requires=(),
        missing_weights=(), controls={}, details={}, figures=(), provenance={}, seconds=0.0,
        model_source=model_source,  # type: ignore[arg-type]  # the plugin's option is a ModelSource
        generated=utc_now(), code_version=code_version(),
    )


def evaluate_claim(claim: Claim, ctx: ClaimContext) -> ClaimResult:
    """Run a claim's computation (unless weights are absent), check its expectation, run its controls.

    Controls run even when the claim's own weights are absent: the null model needs only stand-ins.
    """
    start = time.perf_counter()
    func = get_computation(claim.computation)
    missing = _missing_weights(claim.requires, ctx)
    main = _needs_weights(missing) if missing else _attempt(claim, func, ctx)
    controls = {name: _CONTROLS[name](claim, func, ctx, main) for name in claim.controls}
    fragility = assess_fragility(claim, func, ctx, main.status)
    return ClaimResult(claim, main.status, main.reason, main.measurement, controls, main.missing,
                       time.perf_counter() - start, ctx.model_source, main.traceback, fragility)


def assess_fragility(claim: Claim, func: Callable[..., Measurement], ctx: ClaimContext, status: Status) -> Fragility:
    """The claim's verdict re-evaluated with each alternative of its `choices`, one argument at a time.

    Robust: every alternative gives the same status as the protocol's choice. Fragile: some alternative flips
    it (measured the other way, or an error); the flips are named. Not assessed: no choices, or the claim was
    not measured. Alternatives run without figures, on the same models as the claim.
    """
    if not claim.choices:
        return NOT_ASSESSED
    if status not in ("verified", "refuted"):
        return Fragility("not assessed", reason=f"the claim was not measured ({status})")
    quiet = dataclasses.replace(ctx, figures_dir=None)
    checked, flips = [], []
    for choice, values in claim.choices.items():
        for value in values:
            variant = dataclasses.replace(claim, args={**claim.args, choice: value})
            attempt = _attempt(variant, func, quiet)
            label = (attempt.measurement.label or format_value(attempt.measurement.value)
                     if attempt.measurement is not None else attempt.reason)
            checked.append({"choice": choice, "value": value, "status": attempt.status, "label": label})
            if attempt.status != status:
                flips.append(f"{choice}={value}")
    if flips:
        return Fragility("fragile", tuple(flips), tuple(checked),
                         f"{status} with the protocol's choices, but not with {', '.join(flips)}")
    return Fragility("robust", (), tuple(checked), f"{status} with every one of {len(checked)} alternative(s)")


def _attempt(claim: Claim, func: Callable[..., Measurement], ctx: ClaimContext) -> _Attempt:
    try:
        # A deep copy: a computation that edits its arguments must not change the claim for the control.
        measurement = func(ctx, **copy.deepcopy(claim.args))
    except WeightsUnavailable as err:
        return _needs_weights([(_paper_name(err.ref), err.ref)], [err.fetch_command], str(err))
    except EmoverifyError as err:
        return _Attempt("error", str(err), traceback=traceback.format_exc())
    except Exception as err:  # a bug in a computation is this claim's error, not the session's
        return _Attempt("error", f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
    if not isinstance(measurement, Measurement):
        return _Attempt("error", f"computation {claim.computation} returned {type(measurement).__name__}, "
                                 f"not a Measurement")
    try:
        holds, reason = claim.expect.check(measurement.value)
    except EmoverifyError as err:
        return _Attempt("error", f"{err} (expected {claim.expect.describe()})", measurement)
    return _Attempt("verified" if holds else "refuted", reason, measurement)


def _missing_weights(requires: Iterable[str], ctx: ClaimContext) -> list[tuple[str, str]]:
    refs = [(name, ctx.model_ref(name)) for name in requires]
    return [(name, ref) for name, ref in refs if not checkpoints.weights_available(ref)]


def _needs_weights(missing: list[tuple[str, str]], commands: list[str] | None = None,
                   detail: str = "") -> _Attempt:
    """needs-weights for (paper name, ref) pairs; the commands default to `checkpoints.fetch_command`."""
    names = ", ".join(f"{name} ({ref})" for name, ref in missing)
    fetch = " && ".join(commands or [checkpoints.fetch_command(ref) for _, ref in missing])
    reason = (f"needs the weights of {names}, which are not on this machine: "
              f"run `{fetch}`, then `pytest claims/`")
    if detail:
        reason += f" ({detail})"
    return _Attempt("needs-weights", reason, missing=tuple(name for name, _ in missing))


def _paper_name(ref: str) -> str:
    names = [m.name for m in PAPER_MODELS.values() if ref in (m.hub_id, m.standin)]
    return names[0] if names else ref


def _null_model(claim: Claim, func: Callable[..., Measurement], ctx: ClaimContext,
                main: _Attempt) -> ControlRecord:
    """The same computation on random-init stand-ins of seeds 0..`ctx.null_seeds`-1: does a model that knows
    nothing reach the figure? Each seed is a draw of the null distribution; `analysis.intervals` states the
    rule that judges the figure against them (`null_reaches`).

    In stand-in mode the claim's own measurement is the run of its seed (not a second one). Seed 0 draws its
    figures in their own directory, so the control never overwrites the claim's; the other seeds draw none
    and run as `figure_only` (see `ClaimContext`).
    """
    runs: list[tuple[int, _Attempt]] = []
    for seed in range(ctx.null_seeds):
        if ctx.model_source == "standin" and seed == ctx.standin_seed:
            runs.append((seed, main))
            continue
        figures = None if ctx.figures_dir is None or seed else ctx.figures_dir / "null_model"
        seed_ctx = dataclasses.replace(ctx, model_source="standin", standin_seed=seed, role="null",
                                       figures_dir=figures)
        runs.append((seed, _attempt(claim, func, seed_ctx)))
    return _null_record(claim, runs)


def _null_record(claim: Claim, runs: list[tuple[int, _Attempt]]) -> ControlRecord:
    """The null-model control's record from its seeds' runs."""
    seeds = tuple(_seed_run(seed, attempt) for seed, attempt in runs)
    measured = [(seed, attempt) for seed, attempt in runs
                if attempt.measurement is not None and attempt.status in ("verified", "refuted")]
    failed = [run for run in seeds if not run.measured]
    failures = "; ".join(f"seed {run.seed}: {run.reason}" for run in failed)
    if not measured:
        return ControlRecord(status=runs[0][1].status, error=failures, seeds=seeds)
    holds = [attempt.status == "verified" for _, attempt in measured]
    values = [attempt.measurement.value for _, attempt in measured]  # type: ignore[union-attr]  # measured
    reaches = null_reaches(holds, values)
    holding = [seed for (seed, _), held in zip(measured, holds, strict=True) if held]
    first_seed, first_attempt = measured[0]
    first = first_attempt.measurement
    assert first is not None  # measured
    reason = (f"the expectation holds on {len(holding)} of {len(measured)} null seeds"
              + (f" ({', '.join(map(str, holding))})" if holding else "")
              + (": the null reaches the figure" if reaches else ": the null does not reach the figure")
              + f"; seed {first_seed}: {first_attempt.reason}")
    if failed:
        reason += f"; {len(failed)} seed(s) did not measure ({failures})"
    return ControlRecord(
        status="verified" if reaches else "refuted", value=first.value,
        label=first.label or format_value(first.value), interval=first.interval, holds=reaches, reason=reason,
        figures=tuple(first.figures), seeds=seeds, share_holding=round(len(holding) / len(measured), 6),
        details=_per_number(claim, values),
    )


def _seed_run(seed: int, attempt: _Attempt) -> SeedRun:
    m = attempt.measurement
    if m is None or attempt.status not in ("verified", "refuted"):
        return SeedRun(seed, attempt.status, reason=attempt.reason)
    return SeedRun(seed, attempt.status, to_jsonable(m.value), m.label or format_value(m.value),
                   attempt.status == "verified", attempt.reason)


def _per_number(claim: Claim, values: list[object]) -> dict[str, object]:
    """For an `approx` figure, each of the paper's numbers judged against the seeds' values (`diagnostic`)."""
    expect = claim.expect
    if expect.kind != "approx":
        return {}
    targets = expect.target if isinstance(expect.target, (list, tuple)) else [expect.target]
    rows = [v if isinstance(v, (list, tuple)) else [v] for v in values]
    if any(len(row) != len(targets) for row in rows):
        return {}
    try:
        verdicts = [diagnostic(float(t), np.array([float(row[i]) for row in rows])).to_json()
                    for i, t in enumerate(targets)]
    except (TypeError, ValueError, EmoverifyError):
        return {}
    return {"diagnostic": verdicts, "rule": "emoverify/analysis/intervals.py (module docstring)"}


Control = Callable[[Claim, Callable[..., Measurement], ClaimContext, _Attempt], ControlRecord]
_CONTROLS: dict[str, Control] = {
    "null_model": _null_model,
}
