"""The package's shape: no function-level import without a stated reason, and modules of a readable size.

The layering itself (which layer may import which, torch kept out of the maths and the harness) is
`lint-imports`' job (pyproject.toml, run by .ci/run); these are the house rules it does not check.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "emoverify"
SOURCES = sorted(PACKAGE.rglob("*.py"))
# A function-level import must say why after this marker: on its line, or on the line above a block of imports.
REASON = "# local import:"
MAX_MODULE_LINES = 400
# Prompt texts, not code: 600 lines of sentence frames.
LONG_BY_NATURE = {"data/prompts.py"}


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, (ast.Import, ast.ImportFrom)):
                if not _explained(lines, inner.lineno - 1):
                    found.append((inner.lineno, lines[inner.lineno - 1].strip()))
    return found


def _explained(lines: list[str], index: int) -> bool:
    """Whether line `index` carries the reason, or a block of imports it belongs to follows one."""
    if REASON in lines[index]:
        return True
    index -= 1
    while index >= 0 and (not lines[index].strip() or lines[index].strip().startswith(("import ", "from "))):
        index -= 1
    return index >= 0 and REASON in lines[index]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_unexplained_function_level_import(path: Path) -> None:
    unexplained = _function_level_imports(path)
    assert not unexplained, (f"{path}: function-level imports without `{REASON} <why>`: {unexplained}; "
                             "import at the top of the module, or say why not")


def test_the_check_finds_an_unexplained_import(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    import json\n\n\ndef g():\n    # local import: optional dependency\n"
                      "    import yaml\n    import toml\n\n    x = 1\n    import csv\n")
    assert _function_level_imports(source) == [(2, "import json"), (11, "import csv")]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_readable(path: Path) -> None:
    if str(path.relative_to(PACKAGE)) in LONG_BY_NATURE:
        return
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path} has {lines} lines: split it by idea (at most ~{MAX_MODULE_LINES})"


MAX_FUNCTION_LINES = 80
LONG_REASON = "Long because:"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_functions_stay_short_or_say_why(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
            and LONG_REASON not in (ast.get_docstring(node) or "")]
    assert not long, f"{path}: {long} are over {MAX_FUNCTION_LINES} lines: split them, or say `{LONG_REASON} ...`"
