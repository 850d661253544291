"""Claim schema v1, the registry of computations, and the context a computation runs in.

A claim file (`claims/*.yaml`) is a list of entries; each entry is parsed and validated into a frozen
`Claim` before anything runs::

    - id: VEC-1                      # an ID of paper/CLAIMS.md, or `<ID>.rev1` with `revision: rev1`
      revision: rev2                 # rev2 (default) | rev1: a statement Rev.1 made and Rev.2 retracted
      section: "4.1"
      statement: GPT-2 sentence-end emotion vectors have pairwise cosines of about a half
      computation: vectors.pairwise_cosines     # a registry name; never imported or evaluated
      args: {model: gpt2, dataset: baseline}
      expect: {approx: [0.5, 0.6, 0.7], abs_tol: 0.05}
      protocol: what the rebuilt computation assumes where the paper is silent
      requires: [gpt2]               # paper model names whose weights it needs; may be empty
      controls: [null_model]         # optional: the same computation on the random-init stand-ins

Computations are plain functions registered by name::

    @computation("data.prompt_counts")
    def prompt_counts(ctx: ClaimContext, dataset: str) -> Measurement: ...

The registry is filled by importing `COMPUTATION_MODULES`, lazily on the first lookup: those modules
import `computation` from here, so importing them at this module's import time would be a cycle. A module
that fails to import is an error for every claim that needs the registry, never a silent skip.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from emoverify.errors import ClaimFileError, EmoverifyError
from emoverify.expectations import Expectation, parse_expectation

__all__ = [
    "COMPUTATION_MODULES",
    "CONTROLS",
    "PAPER_CLAIM_IDS",
    "Claim",
    "ClaimContext",
    "ComputationRegistry",
    "Measurement",
    "computation",
    "get_computation",
    "load_claim_file",
    "parse_claim_file",
]

# The modules whose import registers every computation a claim file may name.
COMPUTATION_MODULES: tuple[str, ...] = ("emoverify.data.computations", "emoverify.activations",
                                         "emoverify.vector_claims", "emoverify.subspace_claims",
                                         "emoverify.control_claims")

# The stable IDs of paper/CLAIMS.md, in the paper's order (the report sorts rows by it).
PAPER_CLAIM_IDS: tuple[str, ...] = (
    "DATA-1", "DATA-2", "DATA-3", "ACT-1", "ACT-2", "VEC-1", "VEC-2", "VEC-3", "SUB-1", "SUB-2", "SUB-3",
    "PATCH-1", "PATCH-2", "SWEEP-1", "RAND-1", "HEAD-1", "HEAD-2", "HEAD-3", "CONC-1",
)

# Controls a claim may ask for; each runs the claim's computation in another context.
CONTROLS: tuple[str, ...] = ("null_model",)

REVISIONS: tuple[str, ...] = ("rev2", "rev1")
_ID_PATTERN = re.compile(r"^(?P<base>[A-Z]+-\d+)(?P<rev1>\.rev1)?$")
# Controls the project adds beyond the paper (positive controls, sanity checks): `CTRL-<NAME>`, rev2 only.
_CONTROL_ID = re.compile(r"^CTRL-[A-Z0-9]+(-[A-Z0-9]+)*$")


@dataclass(frozen=True)
class Measurement:
    """What a computation measured.

    Attributes:
        value: what `expect` is checked against: a number, a list of numbers, an int, a bool.
        details: JSON-able neighbouring choices (all layers or pairs, raw and centred, n versus d ...),
            so a reader sees whether the figure depends on the protocol's choice.
        interval: 95% CI as `(lo, hi)`, or a list of `(lo, hi)` parallel to a list value; None if unknown.
        figures: PNG paths written under `ctx.figures_dir`, embedded by the report.
        provenance: model refs, weights and dataset sha256, settings.
        label: short text of the measured value for the table, e.g. "0.52 / 0.61 / 0.70 (layer 12)".
    """

    value: Any
    details: dict[str, Any] = field(default_factory=dict)
    interval: Any = None
    figures: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class ClaimContext:
    """Where and on what a computation runs.

    Attributes:
        artifacts_dir: activation store root.
        figures_dir: where computations write PNGs; None draws none (sweeps, benchmarks), see `draw`.
        device: torch device for extraction and interventions.
        seed: seed for every random thing a computation does.
        model_source: "real" (the paper's models by hub id) or "standin" (random-init stand-ins).
    """

    artifacts_dir: Path = Path("artifacts")
    figures_dir: Path | None = Path("reports/figures")
    device: str = "cpu"
    seed: int = 0
    model_source: str = "real"
    # Activation sets by (model ref, dataset), shared by every context derived with `with_models`, so a
    # control and its claim never extract the same activations twice in one session.
    _activation_memo: dict[tuple[str, str], Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.model_source not in ("real", "standin"):
            raise EmoverifyError(f"model_source must be 'real' or 'standin', not {self.model_source!r}")

    def model_ref(self, name: str) -> str:
        """The reference to load for a paper model name: its hub id, or its stand-in."""
        from emoverify.models import PAPER_MODELS

        if name not in PAPER_MODELS:
            raise EmoverifyError(f"unknown paper model {name!r}{_did_you_mean(name, PAPER_MODELS)}")
        model = PAPER_MODELS[name]
        return model.hub_id if self.model_source == "real" else model.standin

    def activations(self, name: str, dataset: str) -> Any:
        """The `ActivationSet` of a paper model on a dataset, extracted once and cached on disk."""
        ref = self.model_ref(name)
        key = (ref, dataset)
        if key not in self._activation_memo:
            from emoverify.activations import ensure_activations

            self._activation_memo[key] = ensure_activations(ref, dataset, self.artifacts_dir,
                                                            device=self.device)
        return self._activation_memo[key]

    def draw(self, func: Callable[..., str], name: str, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """`func(*args, path=figures_dir / name, **kwargs)`, a figure function that writes a PNG and returns
        its path; nothing when figures are off. Returns the paths written, for `Measurement.figures`."""
        if self.figures_dir is None:
            return ()
        return (func(*args, path=self.figures_dir / name, **kwargs),)

    def with_models(self, source: str) -> ClaimContext:
        """The same context on other models ("real" or "standin"), sharing the activation memo."""
        return dataclasses.replace(self, model_source=source)


@dataclass(frozen=True)
class Claim:
    """One validated claim entry.

    Attributes:
        id: `VEC-1`, or `VEC-1.rev1` for a retracted Rev.1 statement.
        revision: "rev2" (the corrected paper asserts it) or "rev1" (retracted; expected to be refuted).
        section: the paper's section, e.g. "4.1".
        statement: the claim in words.
        computation: registry name of the function that measures it.
        args: keyword arguments for the computation (JSON-able; treat as read-only).
        expect: what the measured value must satisfy for the statement to hold.
        protocol: what the rebuilt computation assumes where the paper is silent.
        requires: paper model names whose weights the computation needs.
        controls: controls run beside it (see `CONTROLS`).
        file: the claim file, as collected.
        line: 1-based line of the entry in that file.
    """

    id: str
    section: str
    statement: str
    computation: str
    expect: Expectation
    protocol: str
    requires: tuple[str, ...]
    revision: str = "rev2"
    args: dict[str, Any] = field(default_factory=dict)
    controls: tuple[str, ...] = ()
    file: str = ""
    line: int = 0

    @property
    def base_id(self) -> str:
        """The CLAIMS.md ID without `.rev1`: what pairs a retraction with its correction."""
        return self.id.removesuffix(".rev1")


# --- registry ------------------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Measurement])


class ComputationRegistry:
    """Computations by name, filled by importing `modules` on the first lookup."""

    def __init__(self, modules: tuple[str, ...]) -> None:
        self.modules = modules
        self._entries: dict[str, Callable[..., Measurement]] = {}
        self._loaded = False
        self._load_error: EmoverifyError | None = None

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: register `f(ctx, **args) -> Measurement` under `name`."""

        def decorator(func: F) -> F:
            if name in self._entries:
                previous = self._entries[name]
                raise EmoverifyError(f"computation {name!r} is registered twice: "
                                     f"{previous.__module__}.{previous.__qualname__} and "
                                     f"{func.__module__}.{func.__qualname__}")
            self._entries[name] = func
            return func

        return decorator

    def get(self, name: str) -> Callable[..., Measurement]:
        """The computation registered as `name`; `EmoverifyError` with "did you mean" if none is."""
        self._load()
        if name not in self._entries:
            raise EmoverifyError(f"unknown computation {name!r}{_did_you_mean(name, self._entries)}")
        return self._entries[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def _load(self) -> None:
        if self._load_error is not None:
            raise self._load_error
        if self._loaded:
            return
        for module in self.modules:
            try:
                importlib.import_module(module)
            except Exception as err:  # any import failure must be loud, and the same on every lookup
                self._load_error = EmoverifyError(
                    f"cannot import computation module {module}: {type(err).__name__}: {err}")
                raise self._load_error from err
        self._loaded = True


_REGISTRY = ComputationRegistry(COMPUTATION_MODULES)


def computation(name: str) -> Callable[[F], F]:
    """Register a computation under `name`; a duplicate name raises `EmoverifyError`.

    Example:
        >>> @computation("data.prompt_counts")          # doctest: +SKIP
        ... def prompt_counts(ctx: ClaimContext, dataset: str) -> Measurement: ...
    """
    return _REGISTRY.register(name)


def get_computation(name: str) -> Callable[..., Measurement]:
    """The computation registered as `name`; unknown names raise `EmoverifyError` with "did you mean"."""
    return _REGISTRY.get(name)


def _did_you_mean(name: str, known: Mapping[str, Any] | list[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.7)
    if close:
        return f" (did you mean {' or '.join(map(repr, close))}?)"
    return f" (known: {', '.join(sorted(known))})" if len(known) <= 12 else ""


# --- claim files ---------------------------------------------------------------------------------------

class _KeyedMapping(dict):
    """A YAML mapping that remembers any key written twice (plain YAML keeps the last silently)."""

    duplicate_keys: tuple[Any, ...] = ()


class _LineList(list):
    """A YAML sequence that remembers the 1-based line of each item."""

    item_lines: tuple[int, ...] = ()


class _LineLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` whose sequences carry their items' lines, so errors can point at the entry."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _KeyedMapping:
    loader.flatten_mapping(node)
    pairs = loader.construct_pairs(node, deep=True)
    for key, _ in pairs:
        if not isinstance(key, (str, int, float, bool, type(None))):
            raise yaml.constructor.ConstructorError(None, None, f"a key must be a plain scalar, not {key!r}",
                                                    node.start_mark)
    mapping = _KeyedMapping(pairs)
    keys = [key for key, _ in pairs]
    mapping.duplicate_keys = tuple(key for key in mapping if keys.count(key) > 1)
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _LineList:
    sequence = _LineList(loader.construct_sequence(node, deep=True))
    sequence.item_lines = tuple(item.start_mark.line + 1 for item in node.value)
    return sequence


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)

# field -> (accepted types, required, what to write)
_FIELDS: dict[str, tuple[tuple[type, ...], bool, str]] = {
    "id": ((str,), True, "a CLAIMS.md ID such as VEC-1"),
    "revision": ((str,), False, "rev2 or rev1"),
    "section": ((str,), True, 'a string; quote numbers: "4.1"'),
    "statement": ((str,), True, "the claim in words"),
    "computation": ((str,), True, "a registered computation name"),
    "args": ((dict,), False, "a mapping of keyword arguments"),
    "expect": ((dict,), True, "a mapping such as {approx: 0.5, abs_tol: 0.05}"),
    "protocol": ((str,), True, "what the rebuilt computation assumes, in words"),
    "requires": ((list,), True, "a list of paper model names (may be empty)"),
    "controls": ((list,), False, f"a list of controls ({', '.join(CONTROLS)})"),
}


def claim_file_error(file: str | Path, line: int, claim_id: str | None, problem: str) -> ClaimFileError:
    """A `ClaimFileError` whose message and attributes name the file, line and claim."""
    where = f"{file}:{line}" + (f" ({claim_id})" if claim_id else "")
    error = ClaimFileError(f"{where}: {problem}")
    error.file, error.line, error.claim_id, error.problem = str(file), line, claim_id, problem
    return error


def parse_claim_file(path: str | Path, known_ids: Mapping[str, str] | None = None, name: str | None = None,
                     ) -> list[Claim | ClaimFileError]:
    """Parse and validate a claim file, entry by entry.

    A bad entry becomes a `ClaimFileError` in its place, so the file's other claims still run; a file
    that is not YAML (or not a list) becomes a single error.

    Args:
        path: the YAML file.
        known_ids: claim ids already collected from other files, mapped to where they are
            (`"claims/x.yaml:3"`); an entry reusing one is an error.
        name: how messages and claims name the file (default: `path` as given).

    Returns:
        One `Claim` or `ClaimFileError` per entry, in file order.
    """
    source, path = Path(path), Path(name or path)
    try:
        # A SafeLoader subclass: YAML tags can never construct Python objects.
        document = yaml.load(source.read_text(encoding="utf-8"), Loader=_LineLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return [claim_file_error(path, line, None, f"not valid YAML: {err}")]
    except (OSError, UnicodeDecodeError) as err:
        return [claim_file_error(path, 1, None, f"cannot read the file: {err}")]
    if document is None:
        return []
    if not isinstance(document, list):
        return [claim_file_error(path, 1, None, "a claim file must be a YAML list of entries (`- id: ...`)")]
    seen = dict(known_ids or {})
    entries: list[Claim | ClaimFileError] = []
    for index, (raw, line) in enumerate(zip(document, document.item_lines, strict=True)):
        entry = _parse_entry(path, index, line, raw, seen)
        if isinstance(entry, Claim):
            seen[entry.id] = f"{path}:{entry.line}"
        entries.append(entry)
    return entries


def load_claim_file(path: str | Path) -> list[Claim]:
    """Parse and validate a claim file; raise `ClaimFileError` for its first bad entry."""
    entries = parse_claim_file(path)
    for entry in entries:
        if isinstance(entry, ClaimFileError):
            raise entry
    return entries  # type: ignore[return-value]  # no errors left


def _parse_entry(path: Path, index: int, line: int, raw: Any, seen: Mapping[str, str],
                 ) -> Claim | ClaimFileError:
    if not isinstance(raw, _KeyedMapping):
        return claim_file_error(path, line, None,
                                f"entry {index + 1} must be a mapping of fields, not {type(raw).__name__}")
    claim_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    problems = [f"key {key!r} is written twice" for key in raw.duplicate_keys]
    for key in raw:
        if key not in _FIELDS:
            problems.append(f"unknown key {key!r}{_did_you_mean(key, _FIELDS)}")
    for name, (types, required, hint) in _FIELDS.items():
        if name not in raw:
            if required:
                problems.append(f"missing field {name!r} ({hint})")
        elif not isinstance(raw[name], types) or isinstance(raw[name], bool):
            problems.append(f"field {name!r} must be {hint}, not {type(raw[name]).__name__} {raw[name]!r}")
    if not problems:
        problems = _check_values(raw, seen)
        try:
            expectation = parse_expectation(raw["expect"])
        except EmoverifyError as err:
            problems.append(str(err))
    if problems:
        return claim_file_error(path, line, claim_id, "; ".join(problems))
    return Claim(
        id=raw["id"], section=raw["section"], statement=raw["statement"].strip(),
        computation=raw["computation"], expect=expectation,
        protocol=raw["protocol"].strip(), requires=tuple(raw["requires"]),
        revision=raw.get("revision", "rev2"), args=dict(raw.get("args", {})),
        controls=tuple(raw.get("controls", ())), file=str(path), line=line,
    )


def _check_values(raw: Mapping[str, Any], seen: Mapping[str, str]) -> list[str]:
    """The checks that need well-typed fields: id, revision, protocol, registry and args, models, controls."""
    problems = []
    claim_id, revision = raw["id"], raw.get("revision", "rev2")
    match = _ID_PATTERN.match(claim_id)
    if _CONTROL_ID.match(claim_id):
        if revision != "rev2":
            problems.append(f"id {claim_id!r}: a project control (CTRL-*) is not a Rev.1 statement")
    elif match is None or match["base"] not in PAPER_CLAIM_IDS:
        base = match["base"] if match else claim_id
        problems.append(f"id {claim_id!r} is not a paper/CLAIMS.md ID (or a project control, CTRL-<NAME>)"
                        f"{_did_you_mean(base, PAPER_CLAIM_IDS)}")
    elif bool(match["rev1"]) != (revision == "rev1"):
        problems.append(f"id {claim_id!r} with revision {revision!r}: a retracted Rev.1 statement is "
                        f"`<ID>.rev1` with `revision: rev1`, and only it")
    if revision not in REVISIONS:
        problems.append(f"revision must be rev2 or rev1, not {revision!r}")
    if claim_id in seen:
        problems.append(f"duplicate id {claim_id!r}: already defined at {seen[claim_id]}")
    if not raw["protocol"].strip():
        problems.append("protocol is empty: say what the computation assumes where the paper is silent")
    try:
        func = get_computation(raw["computation"])
    except EmoverifyError as err:
        problems.append(str(err))
    else:
        problems.extend(_check_args(raw["computation"], func, raw.get("args", {})))
    problems.extend(_check_models_and_controls(raw["requires"], raw.get("controls", [])))
    return problems


def _check_args(name: str, func: Callable[..., Measurement], args: Mapping[str, Any]) -> list[str]:
    """Bind the args to the computation's signature now, so a typo is a collection error, not a run error."""
    bad_keys = [key for key in args if not isinstance(key, str)]
    if bad_keys:
        return [f"args keys must be names, not {bad_keys!r}"]
    try:
        inspect.signature(func).bind(None, **args)
    except TypeError as err:
        return [f"args do not fit {name}{inspect.signature(func)}: {err}"]
    return []


def _check_models_and_controls(requires: list[Any], controls: list[Any]) -> list[str]:
    from emoverify.models import PAPER_MODELS

    problems = [f"requires: unknown paper model {name!r}{_did_you_mean(str(name), PAPER_MODELS)}"
                for name in requires if name not in PAPER_MODELS]
    problems += [f"controls: unknown control {name!r} (known: {', '.join(CONTROLS)})"
                 for name in controls if name not in CONTROLS]
    if "null_model" in controls and not requires:
        problems.append("controls: null_model runs the computation on stand-in models, but requires is "
                        "empty: the claim uses no model")
    return problems
