"""What a claim expects of its measured value, and the check that says, in words, whether it holds.

An expectation is one mapping in a claim entry with exactly one *kind* and that kind's options::

    expect: {approx: [0.5, 0.6, 0.7], abs_tol: 0.05}
    expect: {range: [0.13, 0.15]}              # each element of a list must lie in [lo, hi]
    expect: {sign: negative}                   # each element
    expect: {equals: 280}                      # exact: counts, booleans, strings
    expect: {less_than: 0.05}                  # each element
    expect: {greater_than: 0.9}                # each element
    expect: {abs_below: 0.01}                  # an effect "≈ 0": |x| < bound for each element
    expect: {all_of: [{range: [0, 1]}, {greater_than: 0.5}]}

Parsing (`parse_expectation`) rejects a malformed mapping with an `EmoverifyError` naming what is wrong;
the claim loader turns that into a collection error that names the file, line and claim. Checking
(`Expectation.check`) is a pure function of the value. A value of the wrong shape (a list where a number
was expected, a length mismatch, a string for a number, NaN) raises `EmoverifyError`: it is a broken
computation, not a refutation of the paper.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emoverify.errors import EmoverifyError

__all__ = ["EXPECTATION_KINDS", "Expectation", "format_interval", "format_number", "format_value",
           "parse_expectation"]

Verdict = tuple[bool, str]
Check = Callable[["Expectation", Any], Verdict]


@dataclass(frozen=True)
class Expectation:
    """One parsed `expect` mapping.

    Attributes:
        kind: one of `EXPECTATION_KINDS`.
        target: the paper's figure(s): a number, a list of numbers, `(lo, hi)` for `range`, the word
            `positive`/`negative` for `sign`, any scalar or list for `equals`, and a tuple of
            sub-expectations for `all_of`.
        abs_tol: absolute tolerance, `approx` only.
        rel_tol: relative tolerance, `approx` only.
    """

    kind: str
    target: Any
    abs_tol: float | None = None
    rel_tol: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as written

    def check(self, value: Any) -> Verdict:
        """Return `(holds, reason)` for a measured value; raise `EmoverifyError` on a shape mismatch."""
        return _CHECKS[self.kind](self, _plain(value))

    def describe(self) -> str:
        """The expectation in words, e.g. `0.5 / 0.6 / 0.7 ± 0.05`."""
        return _DESCRIBE[self.kind](self)

    def to_mapping(self) -> dict[str, Any]:
        """The mapping as written in the claim file (JSON-able)."""
        return _plain(dict(self.raw))


# --- parsing -------------------------------------------------------------------------------------------

_OPTIONS = {"approx": {"abs_tol", "rel_tol"}}


def parse_expectation(spec: Any) -> Expectation:
    """Validate an `expect` mapping and return its `Expectation`.

    Raises:
        EmoverifyError: not a mapping, zero or several kinds, an unknown option, a target of the
            wrong shape.
    """
    if not isinstance(spec, Mapping):
        raise EmoverifyError(f"expect must be a mapping such as {{approx: 0.5, abs_tol: 0.05}}, "
                             f"not {type(spec).__name__}")
    kinds = [key for key in spec if key in EXPECTATION_KINDS]
    if len(kinds) != 1:
        found = ", ".join(map(str, kinds)) or "none"
        raise EmoverifyError(f"expect needs exactly one of {', '.join(EXPECTATION_KINDS)} (found: {found})")
    kind = kinds[0]
    unknown = set(spec) - {kind} - _OPTIONS.get(kind, set())
    if unknown:
        raise EmoverifyError(f"expect: option(s) {', '.join(sorted(map(str, unknown)))} do not apply to "
                             f"{kind!r} (allowed: {', '.join(sorted(_OPTIONS.get(kind, ()))) or 'none'})")
    target = spec[kind]
    raw = dict(spec)
    if kind == "approx":
        return _parse_approx(target, spec, raw)
    if kind == "range":
        if not (isinstance(target, list) and len(target) == 2 and all(map(_is_number, target))):
            raise EmoverifyError(f"expect.range must be [lo, hi], two numbers (got {target!r})")
        if target[0] > target[1]:
            raise EmoverifyError(f"expect.range [{target[0]}, {target[1]}]: lo is above hi")
        return Expectation(kind, (target[0], target[1]), raw=raw)
    if kind == "sign":
        if target not in ("positive", "negative"):
            raise EmoverifyError(f"expect.sign must be 'positive' or 'negative' (got {target!r})")
        return Expectation(kind, target, raw=raw)
    if kind == "equals":
        if isinstance(target, Mapping):
            raise EmoverifyError("expect.equals takes a number, boolean, string or list, not a mapping")
        return Expectation(kind, target, raw=raw)
    if kind == "all_of":
        if not (isinstance(target, list) and target):
            raise EmoverifyError("expect.all_of must be a non-empty list of expectations")
        return Expectation(kind, tuple(parse_expectation(sub) for sub in target), raw=raw)
    # less_than, greater_than, abs_below: one bound
    if not _is_number(target):
        raise EmoverifyError(f"expect.{kind} must be a number (got {target!r})")
    if kind == "abs_below" and target <= 0:
        raise EmoverifyError(f"expect.abs_below must be positive (got {target})")
    return Expectation(kind, target, raw=raw)


def _parse_approx(target: Any, spec: Mapping[str, Any], raw: dict[str, Any]) -> Expectation:
    if not (_is_number(target) or (isinstance(target, list) and target and all(map(_is_number, target)))):
        raise EmoverifyError(f"expect.approx must be a number or a list of numbers (got {target!r})")
    tolerances = {name: spec.get(name) for name in ("abs_tol", "rel_tol")}
    # A paper figure is only checkable with a stated tolerance; a silent default would be a protocol
    # choice nobody wrote down.
    if all(tol is None for tol in tolerances.values()):
        raise EmoverifyError("expect.approx needs abs_tol or rel_tol (the tolerance is a protocol choice)")
    for name, tol in tolerances.items():
        if tol is not None and not (_is_number(tol) and tol >= 0):
            raise EmoverifyError(f"expect.{name} must be a non-negative number (got {tol!r})")
    target = tuple(target) if isinstance(target, list) else target
    return Expectation("approx", target, tolerances["abs_tol"], tolerances["rel_tol"], raw=raw)


# --- checks --------------------------------------------------------------------------------------------

def _check_approx(exp: Expectation, value: Any) -> Verdict:
    if isinstance(exp.target, tuple):
        values = _numbers(value, expect_list=True, length=len(exp.target))
        targets = list(exp.target)
    else:
        values, targets = [_number(value)], [exp.target]
    misses = []
    for index, (measured, target) in enumerate(zip(values, targets, strict=True)):
        allowed = max(exp.abs_tol or 0.0, (exp.rel_tol or 0.0) * abs(target))
        # The slack keeps a figure exactly on the boundary (0.55 for 0.5 ± 0.05) inside despite float
        # rounding; it is far below any figure the paper states.
        if not abs(measured - target) <= allowed + 1e-12:
            misses.append(_element(index, measured, len(values) > 1) + f" is outside {format_number(target)} "
                          f"± {format_number(allowed)}")
    return _verdict(misses, value, f" is within {exp.describe()}")


def _elementwise(predicate: Callable[[Expectation, float], bool]) -> Check:
    """A check applied to each element of a list (or to a single number), naming every miss."""

    def check(exp: Expectation, value: Any) -> Verdict:
        values, in_list = _numbers(value), isinstance(value, list)
        words = exp.describe()
        misses = [_element(i, x, in_list) + f" is not {words}"
                  for i, x in enumerate(values) if not predicate(exp, x)]
        return _verdict(misses, value, (": every element is " if in_list else " is ") + words)

    return check


def _check_equals(exp: Expectation, value: Any) -> Verdict:
    target = _plain(exp.target)
    if isinstance(target, list) != isinstance(value, list) or (
            isinstance(target, list) and len(target) != len(value)):
        raise EmoverifyError(f"expected a value shaped like {format_value(target)}, "
                             f"measured {format_value(value)}")
    # bool is an int in Python; `equals: true` must not be met by a count of 1.
    same = target == value and _bool_pattern(target) == _bool_pattern(value)
    verb = "equals" if same else "differs from"
    return same, f"measured {format_value(value)} {verb} the expected {format_value(target)}"


def _check_all_of(exp: Expectation, value: Any) -> Verdict:
    verdicts = [sub.check(value) for sub in exp.target]
    failed = [reason for holds, reason in verdicts if not holds]
    if failed:
        return False, "; ".join(failed)
    return True, "; ".join(reason for _, reason in verdicts)


_CHECKS: dict[str, Check] = {
    "approx": _check_approx,
    "range": _elementwise(lambda e, x: e.target[0] <= x <= e.target[1]),
    "sign": _elementwise(lambda e, x: x > 0 if e.target == "positive" else x < 0),
    "equals": _check_equals,
    "less_than": _elementwise(lambda e, x: x < e.target),
    "greater_than": _elementwise(lambda e, x: x > e.target),
    "abs_below": _elementwise(lambda e, x: abs(x) < e.target),
    "all_of": _check_all_of,
}
EXPECTATION_KINDS: tuple[str, ...] = tuple(_CHECKS)


def _describe_approx(exp: Expectation) -> str:
    targets = exp.target if isinstance(exp.target, tuple) else (exp.target,)
    tolerances = []
    if exp.abs_tol is not None:
        tolerances.append(format_number(exp.abs_tol))
    if exp.rel_tol is not None:
        tolerances.append(f"{format_number(100 * exp.rel_tol)}%")
    return " / ".join(map(format_number, targets)) + " ± " + " or ".join(tolerances)


_DESCRIBE: dict[str, Callable[[Expectation], str]] = {
    "approx": _describe_approx,
    "range": lambda e: f"in [{format_number(e.target[0])}, {format_number(e.target[1])}]",
    "sign": lambda e: e.target,
    "equals": lambda e: f"exactly {format_value(e.target)}",
    "less_than": lambda e: f"below {format_number(e.target)}",
    "greater_than": lambda e: f"above {format_number(e.target)}",
    "abs_below": lambda e: f"≈ 0 (|x| < {format_number(e.target)})",
    "all_of": lambda e: " and ".join(sub.describe() for sub in e.target),
}


# --- values --------------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> Python numbers and lists, so checks see one representation."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _is_number(value: Any) -> bool:
    # Finite only: `abs_tol: 1e999` would verify anything and `less_than: .nan` nothing.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> float:
    if isinstance(value, list):
        raise EmoverifyError(f"expected one number, measured a list of {len(value)}: {format_value(value)}")
    if not _is_number(value):
        raise EmoverifyError(f"expected a number, measured {value!r} ({type(value).__name__})")
    if math.isnan(value):
        raise EmoverifyError("the computation measured NaN")
    return value


def _numbers(value: Any, expect_list: bool = False, length: int | None = None) -> list[float]:
    if not isinstance(value, list):
        if expect_list:
            raise EmoverifyError(f"expected a list of {length} numbers, measured {format_value(value)}")
        return [_number(value)]
    if length is not None and len(value) != length:
        raise EmoverifyError(f"expected {length} numbers, measured {len(value)}: {format_value(value)}")
    if not value:
        raise EmoverifyError("the computation measured an empty list")
    return [_number(item) for item in value]


def _bool_pattern(value: Any) -> Any:
    return [_bool_pattern(v) for v in value] if isinstance(value, list) else isinstance(value, bool)


def _element(index: int, value: float, in_list: bool) -> str:
    return f"element {index} ({format_number(value)})" if in_list else f"measured {format_number(value)}"


def _verdict(misses: list[str], value: Any, holds_words: str) -> Verdict:
    if misses:
        prefix = f"measured {format_value(value)}: " if isinstance(value, list) else ""
        return False, prefix + "; ".join(misses)
    return True, f"measured {format_value(value)}{holds_words}"


def format_number(value: Any) -> str:
    """Four significant digits for floats, integers as they are."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_value(value: Any) -> str:
    """A measured value in words: numbers via `format_number`, lists in brackets."""
    value = _plain(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(format_value, value)) + "]"
    return format_number(value)


def format_interval(interval: Any) -> str:
    """A 95% CI in words: `95% CI 0.49–0.55`, or one range per element of a list value; "" if unknown."""
    interval = _plain(interval)
    if interval is None:
        return ""
    if isinstance(interval, list) and len(interval) == 2 and all(map(_is_number, interval)):
        return f"95% CI {format_number(interval[0])}–{format_number(interval[1])}"
    if isinstance(interval, list) and all(isinstance(item, list) and len(item) == 2 for item in interval):
        return "95% CI " + " / ".join(f"{format_number(lo)}–{format_number(hi)}" for lo, hi in interval)
    return f"95% CI {format_value(interval)}"
