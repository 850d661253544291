"""Claim schema v1: claim files parsed and validated into frozen `Claim`s before anything runs.

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
      requires: [gpt2]               # optional: derived from args (the paper models they name); if given,
                                     # it must agree with them
      controls: [null_model]         # optional: the same computation on the random-init stand-ins
      choices: {layer: [6, 9], kind: [centred]}   # optional: the choices the paper left open, re-evaluated

The computation an entry names must be registered (`emoverify.computations.registry`), and its `args` must
bind to that function's signature: a typo is an error at collection, naming the file, the line and the
claim, never at run time.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emoverify.computations.registry import Measurement, get_computation
from emoverify.errors import ClaimFileError, EmoverifyError, did_you_mean
from emoverify.harness.expectations import Expectation, parse_expectation
from emoverify.paper import PAPER_CLAIM_IDS, PAPER_MODELS

__all__ = ["CONTROLS", "REVISIONS", "Claim", "claim_file_error", "load_claim_file", "parse_claim_file"]

# Controls a claim may ask for; each runs the claim's computation in another context.
CONTROLS: tuple[str, ...] = ("null_model",)

REVISIONS: tuple[str, ...] = ("rev2", "rev1")
_ID_PATTERN = re.compile(r"^(?P<base>[A-Z]+-\d+)(?P<rev1>\.rev1)?$")
# Controls the project adds beyond the paper (positive controls, sanity checks): `CTRL-<NAME>`, rev2 only.
_CONTROL_ID = re.compile(r"^CTRL-[A-Z0-9]+(-[A-Z0-9]+)*$")


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
        choices: argument -> the other values the paper leaves open; the verdict is re-evaluated with each
            (one argument changed at a time) to tell a robust verdict from a fragile one.
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
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    file: str = ""
    line: int = 0

    @property
    def base_id(self) -> str:
        """The CLAIMS.md ID without `.rev1`: what pairs a retraction with its correction."""
        return self.id.removesuffix(".rev1")


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
    "requires": ((list,), False, "a list of paper model names (may be empty); derived from args if absent"),
    "controls": ((list,), False, f"a list of controls ({', '.join(CONTROLS)})"),
    "choices": ((dict,), False, "a mapping from an argument to the other values the paper leaves open, "
                                "e.g. {layer: [6, 9], kind: [centred]}"),
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
        document = _read_bounded(source)
    except ClaimFileError as err:
        return [claim_file_error(path, err.line, None, err.problem)]
    if document is None or document == []:
        return [claim_file_error(path, 1, None, "the claim file is empty: write at least one entry "
                                                "(`- id: ...`), or delete the file")]
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


# Bounds on what one claim file may cost: its bytes, its nodes once YAML aliases are expanded (an alias bomb of a
# few hundred bytes expands tenfold per level), and the length of any one scalar (a statement, a number).
MAX_FILE_BYTES = 1_000_000
MAX_EXPANDED_NODES = 100_000
MAX_SCALAR_CHARS = 20_000


def _read_bounded(source: Path) -> Any:
    """The YAML document of a claim file, within the bounds above; `ClaimFileError` (file "", its line) if not.

    Every failure of reading or YAML (a syntax error, a 5,000-digit integer, a bad encoding, a tag) is caught
    here and named with its line, so one bad file never stops the collection of the others.
    """
    try:
        size = source.stat().st_size
        if size > MAX_FILE_BYTES:
            raise claim_file_error("", 1, None, f"the file is {size:,} bytes; a claim file may have at most "
                                                f"{MAX_FILE_BYTES:,}")
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise claim_file_error("", 1, None, f"cannot read the file: {err}") from None
    loader = None
    try:
        loader = _LineLoader(text)  # a SafeLoader subclass: YAML tags can never construct Python objects
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except ClaimFileError:
        raise
    except Exception as err:  # noqa: BLE001  (PyYAML raises YAMLError, ValueError, RecursionError...: all the file's)
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        kind = "not valid YAML" if isinstance(err, yaml.YAMLError) else f"cannot be read ({type(err).__name__})"
        raise claim_file_error("", line, None, f"{kind}: {err}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_size(root: yaml.Node) -> None:
    """Refuse a composed YAML graph whose alias-expanded size or any scalar is over the bounds."""
    expanded: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # post-order over the graph; aliases share nodes, so each node is sized once
        node, children_done = stack.pop()
        if id(node) in expanded:
            continue
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_SCALAR_CHARS:
                raise claim_file_error("", node.start_mark.line + 1, None,
                                       f"a value of {len(node.value):,} characters; at most {MAX_SCALAR_CHARS:,}")
            expanded[id(node)] = 1
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in expanded)
            continue
        expanded[id(node)] = 1 + sum(expanded[id(child)] for child in children)
        if expanded[id(node)] > MAX_EXPANDED_NODES:
            raise claim_file_error("", node.start_mark.line + 1, None,
                                   f"more than {MAX_EXPANDED_NODES:,} values once YAML aliases are expanded")


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
            problems.append(f"unknown key {key!r}{did_you_mean(key, _FIELDS)}")
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
    requires = _models_in_args(raw["computation"], raw.get("args", {})) if not problems else ()
    if not problems and "requires" in raw and set(map(str, raw["requires"])) != set(requires):
        problems.append(f"requires {list(raw['requires'])} disagrees with the paper models its args name "
                        f"({list(requires)}): drop `requires` (it is derived from args) or correct it")
    if problems:
        return claim_file_error(path, line, claim_id, "; ".join(problems))
    return Claim(
        id=raw["id"], section=raw["section"], statement=raw["statement"].strip(),
        computation=raw["computation"], expect=expectation,
        protocol=raw["protocol"].strip(), requires=requires,
        revision=raw.get("revision", "rev2"), args=dict(raw.get("args", {})),
        controls=tuple(raw.get("controls", ())), file=str(path), line=line,
        choices={name: tuple(values) for name, values in raw.get("choices", {}).items()},
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
                        f"{did_you_mean(base, PAPER_CLAIM_IDS)}")
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
        problems.extend(_check_choices(raw["computation"], func, raw.get("args", {}), raw.get("choices", {})))
    problems.extend(_check_models_and_controls(raw.get("requires", []), raw.get("controls", []),
                                               _models_in_args(raw["computation"], raw.get("args", {}))))
    return problems


def _check_choices(name: str, func: Callable[..., Measurement], args: Mapping[str, Any],
                   choices: Mapping[Any, Any]) -> list[str]:
    """Every alternative must be a list of other values of one of the computation's arguments, and bind."""
    problems = []
    for arg, values in choices.items():
        if not isinstance(values, list) or not values:
            problems.append(f"choices.{arg} must be a non-empty list of alternative values")
            continue
        parameter = inspect.signature(func).parameters.get(str(arg))
        own = args[arg] if arg in args else (parameter.default if parameter is not None else None)
        for value in values:
            if value == own:
                problems.append(f"choices.{arg}: {value!r} is the protocol's own choice; list the alternatives")
            problems.extend(f"choices.{arg}: {problem}" for problem in _check_args(name, func, {**args, arg: value}))
    return problems


# An argument that makes a computation run on the stand-ins whatever the models: it needs no paper weights.
_STANDIN_ARGUMENTS = {"weights": "standin", "source": "standin"}


def _models_in_args(name: str, args: Mapping[str, Any]) -> tuple[str, ...]:
    """The paper models a claim's computation runs on: every paper model name among its arguments (given or
    default), in order; none when an argument pins it to the stand-ins. This is what `requires` must be."""
    try:
        bound = inspect.signature(get_computation(name)).bind_partial(None, **args)
    except (TypeError, EmoverifyError):
        return ()  # reported by the argument checks
    bound.apply_defaults()
    if any(bound.arguments.get(key) == value for key, value in _STANDIN_ARGUMENTS.items()):
        return ()
    found: list[str] = []
    for value in bound.arguments.values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and item in PAPER_MODELS and item not in found:
                found.append(item)
    return tuple(found)


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


def _check_models_and_controls(requires: list[Any], controls: list[Any], derived: tuple[str, ...]) -> list[str]:
    problems = [f"requires: unknown paper model {name!r}{did_you_mean(str(name), PAPER_MODELS)}"
                for name in requires if not isinstance(name, str) or name not in PAPER_MODELS]
    problems += [f"controls: unknown control {name!r} (known: {', '.join(CONTROLS)})"
                 for name in controls if name not in CONTROLS]
    if "null_model" in controls and not (requires or derived):
        problems.append("controls: null_model runs the computation on stand-in models, but requires is "
                        "empty: the claim uses no model")
    return problems
