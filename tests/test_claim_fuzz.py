"""Fuzzing the claim loader: no input crashes it with anything but a `ClaimFileError` naming file and line.

Inputs are arbitrary text, YAML built from arbitrary values, and mutations of a valid entry; each file is
parsed with the fake registry (no model, no torch). The bounds of `schema` (bytes, alias expansion, scalar
length) keep every parse cheap, so a slow or memory-hungry input shows up as a hypothesis deadline error.
"""

from __future__ import annotations

import resource
from pathlib import Path

import yaml
from claim_fakes import GOOD_ENTRY
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emoverify.errors import ClaimFileError
from emoverify.harness.schema import Claim, parse_claim_file

pytest_plugins = ["claim_fakes"]  # fixtures: fake_registry


FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=20)
fields = ["id", "revision", "section", "statement", "computation", "args", "expect", "protocol", "requires",
          "controls", "unknown"]


def _check(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    entries = parse_claim_file(path)
    assert isinstance(entries, list) and entries
    for entry in entries:
        assert isinstance(entry, (Claim, ClaimFileError))
        if isinstance(entry, ClaimFileError):
            assert str(entry).startswith(f"{path}:{entry.line}") and entry.line >= 1


@FUZZ
@given(text=st.text(max_size=400))
def test_arbitrary_text(tmp_path: Path, fake_registry, text: str) -> None:
    _check(tmp_path / "claims.yaml", text)


@FUZZ
@given(document=values)
def test_arbitrary_yaml(tmp_path: Path, fake_registry, document: object) -> None:
    _check(tmp_path / "claims.yaml", yaml.safe_dump(document))


@FUZZ
@given(field=st.sampled_from(fields), value=values)
@example(field="requires", value=[[]])  # once crashed set() with an unhashable list
@example(field="choices", value={"value": [[1]]})
def test_one_field_of_a_valid_entry_replaced(tmp_path: Path, fake_registry, field: str, value: object) -> None:
    [entry] = yaml.safe_load(GOOD_ENTRY)
    entry[field] = value
    _check(tmp_path / "claims.yaml", yaml.safe_dump([entry]))


@FUZZ
@given(depth=st.integers(1, 12), width=st.integers(2, 12))
def test_alias_bombs_are_refused_cheaply(tmp_path: Path, fake_registry, depth: int, width: int) -> None:
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth + 1)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _check(tmp_path / "claims.yaml", "\n".join(lines) + "\n")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: no expansion in memory
