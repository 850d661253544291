"""The words of the claim files against the code they name: where a protocol states a fact the code decides,
the fact is read from the code and compared.

What is checked, for every entry of `claims/*.yaml`:

* the file's header names the module that registers its computations, and that module exists;
* "N-draw bootstrap" and "N label permutations" in a protocol equal the counts the computations use;
* "N-fold" equals the `n_folds` the claim's computation is called with (its args, else its default);
* "k = N" equals the claim's `k`, and "N baseline prompts" / "N extended prompts" the prompts per emotion;
* a probe described as "logistic" (regression) is one: the probes are ridge classifiers;
* a YAML example in the README that uses a claim id has that claim's `expect`.

Text the checks cannot read (which layer "the last block" is, what a figure means) is left to review.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import yaml

from emoverify.analysis import probes
from emoverify.analysis.alignment import AlignmentSettings
from emoverify.computations import _inputs
from emoverify.computations.registry import get_computation
from emoverify.data import load_dataset

ROOT = Path(__file__).parents[1]
CLAIM_FILES = sorted((ROOT / "claims").glob("*.yaml"))
ENTRIES = [(path, entry) for path in CLAIM_FILES for entry in yaml.safe_load(path.read_text())]


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _call_args(entry: dict) -> dict:
    """The arguments the claim's computation runs with: its args over its signature's defaults."""
    signature = inspect.signature(get_computation(entry["computation"]))
    bound = signature.bind_partial(None, **entry.get("args", {}))
    bound.apply_defaults()
    return dict(bound.arguments)


@pytest.mark.parametrize("path", CLAIM_FILES, ids=lambda p: p.name)
def test_the_header_names_the_module_that_computes_the_file(path: Path) -> None:
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    module = f"emoverify/computations/{path.stem}.py"
    assert module in header, f"{path.name}: say in its header comment that {module} computes it"
    assert (ROOT / module).is_file()


@pytest.mark.parametrize(("path", "entry"), ENTRIES, ids=[e["id"] for _, e in ENTRIES])
def test_protocol_facts_match_the_code(path: Path, entry: dict) -> None:
    protocol = " ".join(entry["protocol"].split())
    args = _call_args(entry)
    for count in re.findall(r"(\d[\d,]*)-draw bootstrap", protocol):
        assert _number(count) == _inputs.N_BOOTSTRAP, f"{entry['id']}: {count}-draw bootstrap"
    for count in re.findall(r"(\d[\d,]*) label permutations", protocol):
        assert _number(count) == _inputs.N_PERMUTATIONS, f"{entry['id']}: {count} label permutations"
    for folds in re.findall(r"(\d+)-fold", protocol):
        used = args.get("n_folds") or (_field_default(AlignmentSettings, "ridge_folds")
                                       if "alignment" in entry["computation"] else None)
        assert int(folds) == used, f"{entry['id']}: {folds}-fold, but the computation uses {used}"
    for k in re.findall(r"\bk ?= ?(\d+)\b", protocol):
        if "k" in args:
            assert int(k) == args["k"] or int(k) in _sweep(entry), f"{entry['id']}: k = {k}, but k={args['k']}"
    for count, dataset in re.findall(r"(\d+) (baseline|extended) prompts", protocol):
        frame = load_dataset(dataset)
        per_emotion, total = int(frame["emotion"].value_counts().iloc[0]), len(frame)
        assert int(count) in (per_emotion, total, args.get("prompts")), (
            f"{entry['id']}: {count} {dataset} prompts; the dataset has {per_emotion} per emotion, {total} in all")
    if re.search(r"logistic", protocol, re.IGNORECASE):
        assert "Logistic" in inspect.getsource(probes), f"{entry['id']}: the probes are ridge classifiers"


def _sweep(entry: dict) -> tuple[int, ...]:
    from emoverify.computations import subspace  # local import: only SUB claims sweep k

    return tuple(subspace.K_SWEEP) if entry["computation"].startswith("subspace.") else ()


def test_readme_examples_match_the_claim_files() -> None:
    by_id = {entry["id"]: entry for _, entry in ENTRIES}
    readme = (ROOT / "README.md").read_text()
    examples = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    checked = 0
    for example in examples:
        for entry in yaml.safe_load(example) or []:
            if isinstance(entry, dict) and entry.get("id") in by_id and "expect" in entry:
                assert entry["expect"] == by_id[entry["id"]]["expect"], f"README's {entry['id']} example"
                checked += 1
    assert checked, "the README shows no claim entry to check"


def _field_default(cls: type, name: str) -> object:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)
