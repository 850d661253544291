"""The claim-status file, typed: one `StatusRecord` per claim, written once by the plugin, read once by the report.

`reports/claim-status.json` is a `StatusDocument`::

    {"generated": ..., "emoverify_version": ..., "environment": {...}, "model_source": "real",
     "claims": [StatusRecord, ...]}

Reading checks every field a record must carry and every status word, so a hand-edited or truncated file
is an `EmoverifyError` that names the record and the field, never a `KeyError` in the report, and never
an unknown status counted silently.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from emoverify import __version__
from emoverify.errors import EmoverifyError, did_you_mean
from emoverify.paper import MODEL_SOURCES, ModelSource

__all__ = ["OUTCOMES", "REVISIONS", "STATUSES", "VERDICTS", "VERDICT_MEANINGS", "NOT_ASSESSED", "ControlRecord",
           "Fragility", "SeedRun",
           "Outcome",
           "Revision", "Status", "StatusDocument", "StatusRecord", "Verdict", "code_version", "running_marker",
           "to_jsonable",
           "verdict_kind"]

# What a measurement says of a claim's expectation (or why there is none).
Status = Literal["verified", "refuted", "needs-weights", "error"]
STATUSES: tuple[Status, ...] = get_args(Status)
# What pytest makes of it, given the claim's revision.
Outcome = Literal["passed", "failed", "skipped"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
# What a measured claim means for the paper, counted apart in the summary line and coloured apart in the report.
Verdict = Literal["verified", "not diagnostic", "Rev.2 claim refuted", "retraction confirmed",
                  "Rev.1 was right after all", "needs weights", "error"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
VERDICT_MEANINGS: dict[Verdict, str] = {
    "verified": "measured, the Rev.2 statement holds, and the null model (random-init stand-ins of several seeds) "
                "does not reach it",
    "not diagnostic": "measured and the statement holds, but the null model (random-init stand-ins of several seeds) "
                      "reaches it too: no evidence either way",
    "Rev.2 claim refuted": "measured, and the corrected paper's statement does not hold",
    "retraction confirmed": "measured, and the statement Rev.1 made and Rev.2 retracted does not hold",
    "Rev.1 was right after all": "measured, and the statement Rev.2 retracted holds after all",
    "needs weights": "not measured: the paper's weights are not on this machine (the reason gives the command)",
    "error": "not measured: the computation failed or the claim entry is malformed (the reason says why)",
}
# rev2: the corrected paper asserts it; rev1: a statement Rev.1 made and Rev.2 retracted.
Revision = Literal["rev2", "rev1"]
REVISIONS: tuple[Revision, ...] = get_args(Revision)


def to_jsonable(value: Any) -> Any:
    """numpy values, tuples and paths -> plain JSON; NaN and infinities -> None (strict JSON has none)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return to_jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class SeedRun:
    """One seed's run of the null-model control: the claim's computation on the stand-ins of that seed.

    Attributes:
        seed: the stand-ins' seed (0: the stored `standin:*`; N: `standin:*~seedN`).
        status: the run's own status (verified: the claim's expectation holds on it).
        value, label: what it measured (None/"" when it did not measure).
        holds: whether the claim's expectation holds on it (None when it did not measure).
        reason: the expectation's words, or why it did not measure.
    """

    seed: int
    status: Status
    value: Any = None
    label: str = ""
    holds: bool | None = None
    reason: str = ""

    @property
    def measured(self) -> bool:
        return self.status in ("verified", "refuted")

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({"seed": self.seed, "status": self.status, "value": self.value, "label": self.label,
                            "holds": self.holds, "reason": self.reason})

    @classmethod
    def from_json(cls, data: Any, where: str) -> SeedRun:
        _require_mapping(data, where)
        _require_keys(data, ("seed", "status"), where)
        holds = data.get("holds")
        return cls(seed=int(data["seed"]), status=_status(data["status"], where), value=data.get("value"),
                   label=str(data.get("label") or ""), holds=None if holds is None else bool(holds),
                   reason=str(data.get("reason") or ""))


@dataclass(frozen=True)
class ControlRecord:
    """A control's run of the claim's computation (the null model: the same computation on the stand-ins of
    several seeds, each a draw of the null distribution; the rule is `analysis.intervals`').

    Attributes:
        status: the control's own status (for the null model: verified when the null reaches the figure).
        value, label, interval: what it measured: for the null model, its first seed that measured (seed 0,
            the stored stand-ins, unless that one failed); None/"" when no seed measured.
        holds: whether the claim's expectation holds on the control too, for the null model by the rule of
            `analysis.intervals` (below 40 seeds: on at least one seed); None when it did not measure.
        reason: why, in words; `error` is set instead when the control failed or lacked weights on every seed.
        figures: PNGs of the control, relative to the status file's directory.
        seeds: per seed, what it measured (empty in records written before the null model had seeds).
        share_holding: the share of the seeds that measured on which the claim's expectation holds.
        details: JSON-able detail; for an `approx` figure, `diagnostic`: per number, `intervals.diagnostic`'s
            verdict of the paper's number against the seeds' values.
    """

    status: Status
    value: Any = None
    label: str = ""
    interval: Any = None
    holds: bool | None = None
    reason: str = ""
    figures: tuple[str, ...] = ()
    error: str | None = None
    seeds: tuple[SeedRun, ...] = ()
    share_holding: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def measured_seeds(self) -> tuple[SeedRun, ...]:
        return tuple(run for run in self.seeds if run.measured)

    def to_json(self) -> dict[str, Any]:
        common = {"seeds": [run.to_json() for run in self.seeds], "share_holding": self.share_holding,
                  "details": to_jsonable(self.details)}
        if self.error is not None:
            return {"status": self.status, "error": self.error, "figures": list(self.figures), **common}
        return to_jsonable({"status": self.status, "value": self.value, "label": self.label,
                            "interval": self.interval, "holds": self.holds, "reason": self.reason,
                            "figures": list(self.figures), **common})

    @classmethod
    def from_json(cls, data: Any, where: str) -> ControlRecord:
        """A record read back; one written before seeds were recorded reads with no seeds, share or details."""
        _require_mapping(data, where)
        status = _status(data.get("status"), where)
        seeds = tuple(SeedRun.from_json(run, f"{where}, seed run {i + 1}") for i, run in enumerate(data.get("seeds")
                                                                                                 or ()))
        share = data.get("share_holding")
        common = {"seeds": seeds, "share_holding": None if share is None else float(share),
                  "details": dict(data.get("details") or {}), "figures": tuple(data.get("figures") or ())}
        if "error" in data:
            return cls(status=status, error=str(data["error"]), **common)
        _require_keys(data, ("value", "label", "holds"), where)
        return cls(status=status, value=data["value"], label=str(data["label"] or ""),
                   interval=data.get("interval"), holds=bool(data["holds"]), reason=str(data.get("reason") or ""),
                   **common)


@dataclass(frozen=True)
class Fragility:
    """The verdict re-evaluated over the choices the paper left open (a claim's `choices`).

    Attributes:
        verdict: `robust` (the same status with every alternative), `fragile` (some alternative flips it),
            or `not assessed` (no choices declared, or the claim was not measured).
        flips: the alternatives that flip it, as `argument=value`.
        checked: one entry per alternative: `{"choice", "value", "status", "label"}`.
        reason: the verdict in words.
    """

    verdict: Literal["robust", "fragile", "not assessed"]
    flips: tuple[str, ...] = ()
    checked: tuple[dict[str, Any], ...] = ()
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({"verdict": self.verdict, "flips": list(self.flips), "checked": list(self.checked),
                            "reason": self.reason})

    @classmethod
    def from_json(cls, data: Any, where: str) -> Fragility:
        _require_mapping(data, where)
        if data.get("verdict") not in ("robust", "fragile", "not assessed"):
            raise EmoverifyError(f"{where}: fragility verdict {data.get('verdict')!r} is not robust, fragile or "
                                 "not assessed")
        return cls(verdict=data["verdict"], flips=tuple(data.get("flips") or ()),
                   checked=tuple(data.get("checked") or ()), reason=str(data.get("reason") or ""))


NOT_ASSESSED = Fragility("not assessed", reason="no choices declared")


@dataclass(frozen=True)
class StatusRecord:
    """One claim's line of the status file. `id` and `revision` are None for an entry too broken to parse.

    The fields are those of the claim (`file` ... `requires`), its evaluation (`status` ... `reason`,
    `missing_weights`, `controls`), what it measured (`measured`, `label`, `interval`, `details`,
    `figures`, `provenance`) and how (`seconds`, `model_source`, `traceback`).
    """

    id: str | None
    revision: Revision | None
    file: str
    line: int
    section: str | None
    statement: str | None
    computation: str | None
    args: dict[str, Any]
    status: Status
    outcome: Outcome
    verdict: str
    measured: Any
    label: str
    interval: Any
    expected: dict[str, Any] | None
    expected_words: str
    reason: str
    protocol: str | None
    requires: tuple[str, ...]
    missing_weights: tuple[str, ...]
    controls: dict[str, ControlRecord]
    details: dict[str, Any]
    figures: tuple[str, ...]
    provenance: dict[str, Any]
    seconds: float
    model_source: ModelSource
    traceback: str = ""
    generated: str = ""  # when this record was computed (a record kept from an earlier run keeps its time)
    code_version: str = ""  # `code_version()` of the code that computed it ("" when unknown)
    fragility: Fragility = NOT_ASSESSED

    @property
    def measured_anything(self) -> bool:
        return self.status in ("verified", "refuted")

    @property
    def kind(self) -> Verdict:
        """The verdict's category (the words may add detail, such as which weights are missing)."""
        return verdict_kind(self.verdict)

    @property
    def null_model(self) -> ControlRecord | None:
        return self.controls.get("null_model")

    @property
    def anchor(self) -> str:
        """The record's name in the report: its id, or `file:line` for an entry without one."""
        return self.id or f"{self.file}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["controls"] = {name: control.to_json() for name, control in self.controls.items()}
        data["fragility"] = self.fragility.to_json()
        data["seconds"] = round(self.seconds, 3)
        return to_jsonable(data)

    @classmethod
    def from_json(cls, data: Any, where: str) -> StatusRecord:
        """A record read back from JSON; `EmoverifyError` naming `where` and the field when it is not one."""
        _require_mapping(data, where)
        where = f"{where} ({data.get('id') or 'no id'})"
        names = [f.name for f in dataclasses.fields(cls) if f.name not in _OPTIONAL_FIELDS]
        _require_keys(data, names, where)
        revision = data["revision"]
        if revision is not None and revision not in REVISIONS:
            raise EmoverifyError(f"{where}: revision {revision!r} is not one of {', '.join(REVISIONS)}")
        verdict_kind(data["verdict"], where)
        if data["outcome"] not in OUTCOMES:
            raise EmoverifyError(f"{where}: outcome {data['outcome']!r} is not one of {', '.join(OUTCOMES)}")
        if data["model_source"] not in MODEL_SOURCES:
            raise EmoverifyError(f"{where}: model_source {data['model_source']!r} is not one of "
                                 f"{', '.join(MODEL_SOURCES)}")
        controls = data["controls"]
        _require_mapping(controls, f"{where}: controls")
        values = {name: data[name] for name in names}
        values.update(
            status=_status(data["status"], where), requires=tuple(data["requires"] or ()),
            missing_weights=tuple(data["missing_weights"] or ()), figures=tuple(data["figures"] or ()),
            controls={name: ControlRecord.from_json(c, f"{where}: control {name}") for name, c in controls.items()},
            args=dict(data["args"] or {}), details=dict(data["details"] or {}),
            provenance=dict(data["provenance"] or {}), seconds=float(data["seconds"] or 0.0),
            label=str(data["label"] or ""), reason=str(data["reason"] or ""),
            traceback=str(data.get("traceback") or ""), generated=str(data.get("generated") or ""),
            code_version=str(data.get("code_version") or ""),
            fragility=Fragility.from_json(data["fragility"], f"{where}: fragility") if "fragility" in data
            else NOT_ASSESSED,
        )
        return cls(**values)


_OPTIONAL_FIELDS = ("traceback", "generated", "code_version", "fragility")


def running_marker(status_path: Path) -> Path:
    """The file that says a claims run writing `status_path` has started and not finished (killed, crashed)."""
    return status_path.with_name(status_path.name + ".running")


@functools.cache
def code_version() -> str:
    """`<package version>+<sha256 of the package's Python sources, 12 hex>`: what a status record was computed
    with, so the report can mark a record computed by other code as stale."""
    package = Path(__file__).parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{__version__}+{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class StatusDocument:
    """The whole status file: when and where it was computed, on which models, and one record per claim."""

    generated: str
    emoverify_version: str
    model_source: ModelSource
    claims: tuple[StatusRecord, ...]
    environment: dict[str, Any] = field(default_factory=dict)

    def verdicts(self) -> Iterable[str]:
        return (record.verdict for record in self.claims)

    def to_json(self) -> dict[str, Any]:
        return {"generated": self.generated, "emoverify_version": self.emoverify_version,
                "environment": to_jsonable(self.environment), "model_source": self.model_source,
                "claims": [record.to_json() for record in self.claims]}

    @classmethod
    def from_json(cls, data: Any, where: str) -> StatusDocument:
        if not isinstance(data, Mapping) or not isinstance(data.get("claims"), list):
            raise EmoverifyError(f"{where} is not a claim status file (no 'claims' list)")
        _require_keys(data, ("generated", "emoverify_version", "model_source"), where)
        if data["model_source"] not in MODEL_SOURCES:
            raise EmoverifyError(f"{where}: model_source {data['model_source']!r} is not one of "
                                 f"{', '.join(MODEL_SOURCES)}")
        records = tuple(StatusRecord.from_json(record, f"{where}, claim {index + 1}")
                        for index, record in enumerate(data["claims"]))
        return cls(generated=str(data["generated"]), emoverify_version=str(data["emoverify_version"]),
                   model_source=data["model_source"], claims=records, environment=dict(data.get("environment") or {}))


def verdict_kind(words: Any, where: str = "verdict") -> Verdict:
    """The category of a verdict's words: `needs weights (gpt2)` is `needs weights`."""
    kind = "needs weights" if isinstance(words, str) and words.startswith("needs weights") else words
    if kind not in VERDICTS:
        raise EmoverifyError(f"{where}: unknown verdict {words!r}{did_you_mean(str(words), VERDICTS)}")
    return kind


def _require_mapping(data: Any, where: str) -> None:
    if not isinstance(data, Mapping):
        raise EmoverifyError(f"{where}: expected a JSON object, not {type(data).__name__}")


def _require_keys(data: Mapping[str, Any], names: Iterable[str], where: str) -> None:
    missing = [name for name in names if name not in data]
    if missing:
        raise EmoverifyError(f"{where}: missing field(s) {', '.join(missing)}: the status file is damaged or from "
                             "another version; rerun `pytest claims/`")


def _status(value: Any, where: str) -> Status:
    if value not in STATUSES:
        raise EmoverifyError(f"{where}: unknown status {value!r}{did_you_mean(str(value), STATUSES)}")
    return value
