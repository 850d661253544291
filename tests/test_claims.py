"""The claim schema, the registry, the expectations and the evaluation of one claim (no model loaded)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from claim_fakes import GOOD_ENTRY, with_models

from emoverify.computations.registry import (
    ClaimContext,
    ComputationRegistry,
    Measurement,
    computation,
    computation_modules,
    get_computation,
)
from emoverify.errors import ClaimFileError, EmoverifyError
from emoverify.harness.evaluation import (
    ClaimResult,
    claim_outcome,
    evaluate_claim,
    summary_line,
    to_jsonable,
    verdict,
)
from emoverify.harness.expectations import format_interval, parse_expectation
from emoverify.harness.schema import Claim, load_claim_file, parse_claim_file

pytest_plugins = ["claim_fakes"]  # fixtures: fake_registry, weights



def write(tmp_path: Path, text: str, name: str = "data.yaml") -> Path:
    path = tmp_path / "claims" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def one_claim(tmp_path: Path, fields: str) -> object:
    """Parse a file holding one entry `fields` (YAML, the lines after `- `)."""
    entries = parse_claim_file(write(tmp_path, "- " + textwrap.indent(textwrap.dedent(fields), "  ")[2:]))
    assert len(entries) == 1
    return entries[0]


# --- expectations --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "value", "holds"), [
    ({"approx": 0.48, "abs_tol": 0.03}, 0.51, True),
    ({"approx": 0.48, "abs_tol": 0.03}, 0.52, False),
    ({"approx": [0.48, 0.68], "abs_tol": 0.03}, np.array([0.5, 0.66]), True),
    ({"approx": 100, "rel_tol": 0.1}, 109.0, True),
    ({"range": [0.13, 0.15]}, [0.13, 0.14, 0.15], True),
    ({"range": [0.13, 0.15]}, [0.14, 0.2], False),
    ({"sign": "negative"}, [-0.1, -0.3], True),
    ({"sign": "positive"}, 0.0, False),
    ({"equals": 280}, np.int64(280), True),
    ({"equals": [70, 70]}, [70, 69], False),
    ({"equals": True}, 1, False),
    ({"less_than": 0.05}, 0.01, True),
    ({"greater_than": 0.9}, 0.9, False),
    ({"abs_below": 0.01}, [0.001, -0.009], True),
    ({"abs_below": 0.01}, -0.02, False),
    ({"all_of": [{"range": [0, 1]}, {"greater_than": 0.5}]}, 0.7, True),
    ({"all_of": [{"range": [0, 1]}, {"greater_than": 0.5}]}, 0.3, False),
])
def test_expectation_verdicts(spec: dict, value: object, holds: bool) -> None:
    result, reason = parse_expectation(spec).check(value)
    assert result is holds
    assert reason.startswith("measured")


def test_expectation_reason_is_in_words() -> None:
    assert parse_expectation({"approx": 0.48, "abs_tol": 0.03}).check(0.52) == (
        False, "measured 0.52 is outside 0.48 ± 0.03")
    holds, reason = parse_expectation({"range": [0.13, 0.15]}).check([0.14, 0.2])
    assert not holds and "element 1 (0.2) is not in [0.13, 0.15]" in reason


@pytest.mark.parametrize(("spec", "value"), [
    ({"approx": [0.48, 0.68], "abs_tol": 0.03}, 0.5),          # list expected, scalar measured
    ({"approx": [0.48, 0.68], "abs_tol": 0.03}, [0.5]),        # length mismatch
    ({"approx": 0.48, "abs_tol": 0.03}, [0.5, 0.6]),           # scalar expected, list measured
    ({"range": [0, 1]}, "high"),
    ({"equals": [70, 70]}, 140),
    ({"sign": "positive"}, float("nan")),
    ({"greater_than": 0}, True),
])
def test_wrong_value_shape_is_an_error_not_a_refutation(spec: dict, value: object) -> None:
    with pytest.raises(EmoverifyError):
        parse_expectation(spec).check(value)


@pytest.mark.parametrize("spec", [
    {"approx": 0.5},                                   # no tolerance
    {"approx": 0.5, "abs_tol": -1},
    {"range": [1, 0]},
    {"range": [0]},
    {"sign": "up"},
    {"less_than": 1, "greater_than": 0},               # two kinds
    {"abs_tol": 0.1},                                  # no kind
    {"equals": 1, "abs_tol": 0.1},                     # option of another kind
    {"all_of": []},
    {"all_of": [{"approx": 1}]},
    [0.5],
])
def test_malformed_expectation(spec: object) -> None:
    with pytest.raises(EmoverifyError):
        parse_expectation(spec)


def test_describe_and_interval_words() -> None:
    assert parse_expectation({"approx": [0.48, 0.68, 0.75], "abs_tol": 0.03}).describe() == \
        "0.48 / 0.68 / 0.75 ± 0.03"
    assert format_interval((0.49, 0.55)) == "95% CI 0.49–0.55"
    assert format_interval([(0.1, 0.2), (0.3, 0.4)]) == "95% CI 0.1–0.2 / 0.3–0.4"
    assert format_interval(None) == ""


# --- claim files -----------------------------------------------------------------------------------------

def test_good_file_parses_into_frozen_claims(tmp_path: Path, fake_registry: ComputationRegistry) -> None:
    [claim] = load_claim_file(write(tmp_path, GOOD_ENTRY))
    assert (claim.id, claim.revision, claim.section, claim.line) == ("DATA-1", "rev2", "2", 1)
    assert claim.requires == () and claim.args == {"value": 280}
    assert claim.expect.check(280)[0]
    with pytest.raises(AttributeError):
        claim.id = "DATA-2"  # type: ignore[misc]


@pytest.mark.parametrize(("fields", "words"), [
    ("""\
     id: DATA-1
     section: "2"
     statement: s
     computation: fake.constant
     args: {value: 1}
     expectation: {equals: 1}
     protocol: p
     requires: []
     """, ["unknown key 'expectation' (did you mean 'expect'?)", "missing field 'expect'"]),
    ("""\
     id: DATA-1
     section: "2"
     statement: s
     computation: fake.constant
     args: {value: 1}
     expect: {equals: 1}
     requires: []
     """, ["missing field 'protocol'"]),
    ("""\
     id: DATA-1
     section: 2.1
     statement: s
     computation: fake.constant
     args: {value: 1}
     expect: {equals: 1}
     protocol: p
     requires: gpt2
     """, ["field 'section' must be", "field 'requires' must be a list"]),
    ("""\
     id: DATA-1
     section: "2"
     statement: s
     computation: fake.constnat
     expect: {equals: 1}
     protocol: p
     requires: []
     """, ["unknown computation 'fake.constnat' (did you mean 'fake.constant'?)"]),
    ("""\
     id: DATA-1
     section: "2"
     statement: s
     computation: fake.constant
     args: {value: 1}
     expect: {approx: [1, 2]}
     protocol: p
     requires: []
     """, ["expect.approx needs abs_tol or rel_tol"]),
    ("""\
     id: DATA-1
     section: "2"
     statement: s
     computation: fake.constant
     args: {valeu: 1}
     expect: {equals: 1}
     protocol: p
     requires: []
     """, ["args do not fit fake.constant"]),
    ("""\
     id: VEC-1.rev1
     section: "4.1"
     statement: s
     computation: fake.constant
     args: {value: 1}
     expect: {equals: 1}
     protocol: "  "
     requires: [gtp2]
     controls: [null_modle]
     """, ["a retracted Rev.1 statement is `<ID>.rev1` with `revision: rev1`", "protocol is empty",
           "unknown paper model 'gtp2' (did you mean 'gpt2'?)", "unknown control 'null_modle'"]),
    ("""\
     id: VEC1
     section: "4.1"
     statement: s
     computation: fake.constant
     args: {value: 1}
     expect: {equals: 1}
     protocol: p
     requires: []
     controls: [null_model]
     """, ["id 'VEC1' is not a paper/CLAIMS.md ID", "null_model runs the computation on stand-in models"]),
], ids=["unknown-key", "missing-field", "wrong-type", "unknown-computation", "expect-shape", "bad-args",
        "rev1-models-controls", "bad-id-null-model-without-models"])
def test_each_malformed_entry_names_file_line_id(tmp_path: Path, fake_registry: ComputationRegistry,
                                                 fields: str, words: list[str]) -> None:
    error = one_claim(tmp_path, fields)
    assert isinstance(error, ClaimFileError)
    assert str(error).startswith(f"{tmp_path / 'claims' / 'data.yaml'}:1")
    assert error.line == 1
    for word in words:
        assert word in str(error)


def test_bad_entry_leaves_the_others(tmp_path: Path, fake_registry: ComputationRegistry) -> None:
    text = GOOD_ENTRY + "- just a string\n" + GOOD_ENTRY.replace("DATA-1", "DATA-2") + GOOD_ENTRY
    entries = parse_claim_file(write(tmp_path, text))
    assert [type(e).__name__ for e in entries] == ["Claim", "ClaimFileError", "Claim", "ClaimFileError"]
    assert entries[1].line == 9 and "must be a mapping" in str(entries[1])
    assert entries[3].claim_id == "DATA-1" and entries[3].line == 18
    assert "duplicate id 'DATA-1': already defined at" in str(entries[3])
    with pytest.raises(ClaimFileError, match="must be a mapping"):
        load_claim_file(write(tmp_path, text))


def test_duplicate_id_across_files(tmp_path: Path, fake_registry: ComputationRegistry) -> None:
    [error] = parse_claim_file(write(tmp_path, GOOD_ENTRY), known_ids={"DATA-1": "claims/other.yaml:7"})
    assert "duplicate id 'DATA-1': already defined at claims/other.yaml:7" in str(error)


def test_duplicate_key_in_entry(tmp_path: Path, fake_registry: ComputationRegistry) -> None:
    [error] = parse_claim_file(write(tmp_path, GOOD_ENTRY + "  protocol: again\n"))
    assert "key 'protocol' is written twice" in str(error)


@pytest.mark.parametrize("text", ["- id: [unclosed\n", "id: DATA-1\n", "\tbad: tab\n"])
def test_not_yaml_or_not_a_list_is_one_error(tmp_path: Path, text: str) -> None:
    [error] = parse_claim_file(write(tmp_path, text))
    assert isinstance(error, ClaimFileError) and str(error).startswith(str(tmp_path / "claims" / "data.yaml"))


def test_yaml_tags_never_build_objects(tmp_path: Path, fake_registry: ComputationRegistry) -> None:
    [error] = parse_claim_file(write(tmp_path, "- !!python/object/apply:os.system ['echo hi']\n"))
    assert "not valid YAML" in str(error)


# --- registry ----------------------------------------------------------------------------------------------

def test_registry_duplicate_and_did_you_mean(fake_registry: ComputationRegistry) -> None:
    with pytest.raises(EmoverifyError, match="registered twice"):
        computation("fake.constant")(lambda ctx: Measurement(1))
    with pytest.raises(EmoverifyError, match="did you mean 'fake.raises'"):
        get_computation("fake.raise")


def test_registry_import_failure_is_loud_every_time() -> None:
    registry = ComputationRegistry(modules=("emoverify.no_such_module",))
    for _ in range(2):
        with pytest.raises(EmoverifyError, match="cannot import computation module emoverify.no_such_module"):
            registry.get("anything")


def test_registry_finds_one_module_per_claim_file() -> None:
    # The registry lists the computations package: one module per claims/*.yaml file, no hand-kept list.
    stems = {p.stem for p in (Path(__file__).parents[1] / "claims").glob("*.yaml")}
    assert {m.rpartition(".")[2] for m in computation_modules()} == stems


def test_registry_modules_are_not_imported_at_import_time() -> None:
    # In a fresh interpreter: importing the schema (or the plugin) must not import the computations,
    # which import `computation` from it (a cycle) and torch (seconds for every plain pytest run).
    code = ("import sys, emoverify.harness.schema, emoverify.harness.plugin; "
            "from emoverify.computations.registry import computation_modules; "
            "print(sorted(m for m in computation_modules() + ('torch',) if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- context ---------------------------------------------------------------------------------------------

def test_context_model_refs_and_shared_store() -> None:
    ctx = ClaimContext()
    assert ctx.model_ref("pythia-160m") == "EleutherAI/pythia-160m"
    standin = ctx.with_models("standin")
    assert standin.model_ref("pythia-160m") == "standin:pythia-160m"
    assert standin.artifacts_dir == ctx.artifacts_dir  # the same store: activations are read once per process
    with pytest.raises(EmoverifyError, match="did you mean 'gpt2'"):
        ctx.model_ref("gpt-2")
    with pytest.raises(EmoverifyError):
        ClaimContext(model_source="random")


# --- evaluation --------------------------------------------------------------------------------------------

def claim_of(tmp_path: Path, *, id: str = "VEC-1", computation: str = "fake.constant",
             args: str = "{value: 0.5}", expect: str = "{approx: 0.5, abs_tol: 0.05}", requires: str = "[]",
             controls: str = "[]", choices: str = "{}") -> Claim:
    revision = "rev1" if id.endswith(".rev1") else "rev2"
    args = with_models(args, requires)
    [claim] = load_claim_file(write(tmp_path, f"""\
        - id: {id}
          revision: {revision}
          section: "4.1"
          statement: a figure
          computation: {computation}
          args: {args}
          expect: {expect}
          protocol: the protocol
          requires: {requires}
          controls: {controls}
          choices: {choices}
        """, name=f"{id}.yaml"))
    return claim


def evaluate(tmp_path: Path, **fields: str) -> ClaimResult:
    return evaluate_claim(claim_of(tmp_path, **fields), ClaimContext(figures_dir=tmp_path / "figures"))


def test_true_measurement_is_verified_wrong_one_refuted(tmp_path: Path, fake_registry, weights) -> None:
    good = evaluate(tmp_path)
    assert (good.status, good.outcome, good.verdict) == ("verified", "passed", "verified")
    bad = evaluate(tmp_path, args="{value: 0.7}")
    assert (bad.status, bad.outcome) == ("refuted", "failed")
    assert bad.reason == "measured 0.7 is outside 0.5 ± 0.05"


def test_rev1_outcome_is_inverted(tmp_path: Path, fake_registry, weights) -> None:
    confirmed = evaluate(tmp_path, id="SWEEP-1.rev1", args="{value: 0.0}")
    assert (confirmed.status, confirmed.outcome, confirmed.verdict) == (
        "refuted", "passed", "retraction confirmed")
    right = evaluate(tmp_path, id="SWEEP-1.rev1", args="{value: 0.5}")
    assert (right.status, right.outcome, right.verdict) == ("verified", "failed", "Rev.1 was right after all")


def test_needs_weights_never_passes(tmp_path: Path, fake_registry, weights) -> None:
    result = evaluate(tmp_path, requires="[gpt2, pythia-160m]")
    assert (result.status, result.outcome, result.measurement) == ("needs-weights", "skipped", None)
    assert result.verdict == "needs weights (gpt2, pythia-160m)"
    assert "`hf download gpt2 && hf download EleutherAI/pythia-160m`, then `pytest claims/`" in result.reason
    weights.update({"gpt2", "EleutherAI/pythia-160m"})
    assert evaluate(tmp_path, requires="[gpt2, pythia-160m]").status == "verified"


def test_weights_unavailable_inside_a_computation(tmp_path: Path, fake_registry, weights) -> None:
    weights.add("gpt2")
    result = evaluate(tmp_path, computation="fake.weights_missing_inside", args="{model: gpt2}",
                      requires="[gpt2]")
    assert result.status == "needs-weights" and result.missing == ("gpt2",)


@pytest.mark.parametrize(("computation", "args", "words"), [
    ("fake.raises", "{message: boom}", "ValueError: boom"),
    ("fake.not_a_measurement", "{}", "returned dict, not a Measurement"),
    ("fake.constant", "{value: [0.5, 0.5]}", "expected one number, measured a list of 2"),
])
def test_errors_are_errors(tmp_path: Path, fake_registry, weights, computation, args, words) -> None:
    result = evaluate(tmp_path, computation=computation, args=args)
    assert (result.status, result.outcome, result.verdict) == ("error", "failed", "error")
    assert words in result.reason


def test_null_model_recorded_even_without_weights(tmp_path: Path, fake_registry, weights) -> None:
    result = evaluate(tmp_path, args="{value: 0.5, standin_value: 0.52}", requires="[gpt2]",
                      controls="[null_model]")
    assert result.status == "needs-weights"
    null = result.controls["null_model"]
    assert null.value == 0.52 and null.holds is True and "within" in null.reason
    weights.add("gpt2")
    diagnostic = evaluate(tmp_path, args="{value: 0.5, standin_value: 0.1}", requires="[gpt2]",
                          controls="[null_model]")
    assert diagnostic.status == "verified" and diagnostic.controls["null_model"].holds is False
    assert diagnostic.measurement.details == {"model_source": "real"}


def test_a_failing_control_does_not_crash_the_claim(tmp_path: Path, fake_registry, weights) -> None:
    weights.add("gpt2")
    result = evaluate(tmp_path, args="{value: 0.5, standin_value: [1, 2]}", requires="[gpt2]",
                      controls="[null_model]")
    assert result.status == "verified"
    assert result.controls["null_model"].status == "error"
    assert "expected one number" in result.controls["null_model"].error


def test_standin_run_reuses_its_measurement_as_control(tmp_path: Path, fake_registry, weights) -> None:
    claim = claim_of(tmp_path, args="{value: 0.5, standin_value: 0.9}", requires="[gpt2]",
                     controls="[null_model]")
    result = evaluate_claim(claim, ClaimContext(model_source="standin"))
    assert result.status == "refuted" and result.model_source == "standin"
    assert result.controls["null_model"].value == 0.9
    assert result.record().model_source == "standin"


def test_words_and_json() -> None:
    assert summary_line(["verified", "error", "verified", "needs weights (gpt2)", "not diagnostic"]) == (
        "emoverify: 2 verified, 1 not diagnostic, 0 Rev.2 claim refuted, "
        "0 retraction confirmed, 0 Rev.1 was right after all, 1 needs weights, 1 error")
    with pytest.raises(EmoverifyError, match="unknown verdict 'verifiex'"):
        summary_line(["verifiex"])
    assert claim_outcome("needs-weights", "rev1") == "skipped"
    assert verdict("needs-weights", "rev2", ["gpt2"]) == "needs weights (gpt2)"
    assert to_jsonable({"a": np.float32(0.5), "b": (1, np.arange(2)), "c": float("nan")}) == \
        {"a": 0.5, "b": [1, [0, 1]], "c": None}


def test_figures_off_draws_nothing_and_on_writes_the_file(tmp_path):
    def fake_figure(value, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(value))
        return str(path)

    assert ClaimContext(figures_dir=None).draw(fake_figure, "a.png", 1) == ()
    [written] = ClaimContext(figures_dir=tmp_path).draw(fake_figure, "a.png", 1)
    assert written == str(tmp_path / "a.png") and (tmp_path / "a.png").read_text() == "1"


def test_requires_is_derived_from_args_and_checked_against_them(tmp_path: Path, fake_registry) -> None:
    entry = GOOD_ENTRY.replace("args: {value: 280}", "args: {value: 280, models: [gpt2, pythia-160m]}")
    [claim] = load_claim_file(write(tmp_path, entry.replace("  requires: []\n", "")))
    assert claim.requires == ("gpt2", "pythia-160m")  # derived: the paper models the args name
    [claim] = load_claim_file(write(tmp_path, entry.replace("requires: []", "requires: [pythia-160m, gpt2]")))
    assert set(claim.requires) == {"gpt2", "pythia-160m"}  # given, and agreeing (order free)
    [error] = parse_claim_file(write(tmp_path, entry))  # requires [] while the args name two models
    assert isinstance(error, ClaimFileError)
    assert "requires [] disagrees with the paper models its args name (['gpt2', 'pythia-160m'])" in str(error)


def test_a_figure_the_null_model_reaches_is_not_diagnostic(tmp_path: Path, fake_registry, weights) -> None:
    weights.add("gpt2")
    reached = evaluate(tmp_path, args="{value: 0.5, standin_value: 0.51}", requires="[gpt2]",
                       controls="[null_model]")
    assert (reached.status, reached.verdict, reached.outcome) == ("verified", "not diagnostic", "passed")
    assert reached.record().kind == "not diagnostic"
    apart = evaluate(tmp_path, args="{value: 0.5, standin_value: 0.1}", requires="[gpt2]", controls="[null_model]")
    assert (apart.status, apart.verdict) == ("verified", "verified")
    # A retracted statement the null model also gives is no evidence that Rev.1 was right: not a failure.
    rev1 = evaluate(tmp_path, id="SWEEP-1.rev1", args="{value: 0.5, standin_value: 0.5}", requires="[gpt2]",
                    controls="[null_model]")
    assert (rev1.verdict, rev1.outcome) == ("not diagnostic", "passed")
    assert summary_line([reached.verdict, apart.verdict, rev1.verdict]).startswith(
        "emoverify: 1 verified, 2 not diagnostic, 0 Rev.2 claim refuted")


@pytest.mark.parametrize(("text", "words"), [
    ("- id: DATA-1\n  section: " + "9" * 5000 + "\n", "cannot be read (ValueError): Exceeds the limit"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True)),
     "more than 100,000 values once YAML aliases are expanded"),
    ("- id: DATA-1\n  statement: " + "a" * 5_000_000 + "\n", "a claim file may have at most 1,000,000"),
    ("- id: DATA-1\n  statement: " + "a" * 30_000 + "\n", "a value of 30,000 characters"),
    ("", "the claim file is empty"),
    ("[]\n", "the claim file is empty"),
    ("- \x00\n", "not valid YAML"),
], ids=["huge-integer", "alias-bomb", "huge-file", "huge-statement", "empty", "empty-list", "control-char"])
def test_files_beyond_the_bounds_are_clear_errors(tmp_path: Path, fake_registry, text: str, words: str) -> None:
    [error] = parse_claim_file(write(tmp_path, text))
    assert isinstance(error, ClaimFileError) and words in str(error)
    assert str(error).startswith(f"{tmp_path / 'claims' / 'data.yaml'}:")


@pytest.mark.parametrize("expect", ["{approx: 0.5, abs_tol: 1e999}", "{less_than: .nan}", "{range: [0, .inf]}",
                                    "{approx: .nan, abs_tol: 0.1}"])
def test_non_finite_bounds_are_refused(tmp_path: Path, fake_registry, expect: str) -> None:
    [error] = parse_claim_file(write(tmp_path, GOOD_ENTRY.replace("{equals: 280}", expect)))
    assert isinstance(error, ClaimFileError) and "expect" in str(error)


def test_a_verdict_over_the_open_choices_is_robust_or_names_what_flips_it(tmp_path: Path, fake_registry,
                                                                           weights) -> None:
    robust = evaluate(tmp_path, args="{value: 0.5, interval: [0.4, 0.6]}", choices="{interval: [[0.3, 0.7]]}")
    assert robust.fragility.verdict == "robust" and robust.fragility.flips == ()
    fragile = evaluate(tmp_path, args="{value: 0.5}", choices="{value: [0.52, 0.9, 0.1]}")
    assert fragile.status == "verified" and fragile.fragility.verdict == "fragile"
    assert fragile.fragility.flips == ("value=0.9", "value=0.1")
    assert [c["status"] for c in fragile.fragility.checked] == ["verified", "refuted", "refuted"]
    record = fragile.record()
    assert record.to_json()["fragility"]["flips"] == ["value=0.9", "value=0.1"]
    assert evaluate(tmp_path).fragility.verdict == "not assessed"


@pytest.mark.parametrize(("choices", "words"), [
    ("{nope: [1]}", "choices.nope: args do not fit"),
    ("{value: 0.4}", "choices.value must be a non-empty list"),
    ("{value: [0.5]}", "choices.value: 0.5 is the protocol's own choice"),
])
def test_bad_choices_are_collection_errors(tmp_path: Path, fake_registry, choices: str, words: str) -> None:
    with pytest.raises(ClaimFileError, match=re.escape(words)):
        claim_of(tmp_path, choices=choices)
