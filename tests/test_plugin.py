"""The pytest plugin, run on claim files written for each test (fake computations, no model loaded)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from claim_fakes import with_models

import emoverify.harness.plugin

pytest_plugins = ["pytester", "claim_fakes"]  # fixtures: pytester, fake_registry, weights


def entry(claim_id: str, value: Any = 0.5, *, expect: str = "{approx: 0.5, abs_tol: 0.05}",
          computation: str = "fake.constant", args: str | None = None, requires: str = "[]",
          controls: str = "[]", statement: str = "a figure the paper states") -> str:
    revision = "rev1" if claim_id.endswith(".rev1") else "rev2"
    args = with_models(args or "{value: " + json.dumps(value) + "}", requires)
    return textwrap.dedent(f"""\
        - id: {claim_id}
          revision: {revision}
          section: "4.1"
          statement: {statement}
          computation: {computation}
          args: {args}
          expect: {expect}
          protocol: mean of the final-token residual at the last layer
          requires: {requires}
          controls: {controls}
        """)


@pytest.fixture
def claims_dir(pytester: pytest.Pytester, fake_registry, weights) -> pytest.Pytester:
    pytester.makeconftest('pytest_plugins = ["emoverify.harness.plugin"]\n')
    (pytester.path / "claims").mkdir()
    return pytester


def write(pytester: pytest.Pytester, name: str, *entries: str) -> Path:
    path = pytester.path / "claims" / name
    path.write_text("".join(entries))
    return path


def status(pytester: pytest.Pytester) -> dict[str, Any]:
    return json.loads((pytester.path / "reports" / "claim-status.json").read_text())


def test_true_claim_green_wrong_claim_red(claims_dir: pytest.Pytester) -> None:
    write(claims_dir, "vectors.yaml", entry("VEC-1", 0.5), entry("VEC-2", 0.9, statement="very high correlation"))
    result = claims_dir.runpytest("claims")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*VEC-2 (§4.1, rev2): Rev.2 claim refuted",
        "*statement: very high correlation",
        "*expected:  0.5 ± 0.05",
        "*measured:  0.9",
        "*reason:    measured 0.9 is outside 0.5 ± 0.05",
        "*protocol:  mean of the final-token residual at the last layer",
        "emoverify: 1 verified, 0 not diagnostic, 1 Rev.2 claim refuted, "
        "0 retraction confirmed, 0 Rev.1 was right after all, 0 needs weights, 0 error",
    ])
    assert "Traceback" not in result.stdout.str() and "def runtest" not in result.stdout.str()


def test_malformed_entries_are_items_and_the_rest_still_runs(claims_dir: pytest.Pytester) -> None:
    write(claims_dir, "a.yaml",
          entry("VEC-1"),
          entry("VEC-2").replace("  protocol:", "  protocl:"),        # unknown key + missing field
          entry("VEC-3", computation="fake.constnat"),               # did you mean
          entry("SUB-1").replace('section: "4.1"', "section: 4.1"),  # wrong type
          entry("SUB-2", expect="{approx: 0.5}"),                    # expectation without tolerance
          entry("SUB-3"))
    write(claims_dir, "b.yaml", entry("VEC-1"), entry("HEAD-1"))   # duplicate id across files
    write(claims_dir, "c.yaml", "- id: [unclosed\n")                 # not YAML at all
    result = claims_dir.runpytest("claims")
    result.assert_outcomes(passed=3, failed=6)
    result.stdout.fnmatch_lines_random([
        "*claims/a.yaml:11 (VEC-2): unknown key 'protocl' (did you mean 'protocol'?); missing field 'protocol'*",
        "*claims/a.yaml:21 (VEC-3): unknown computation 'fake.constnat' (did you mean 'fake.constant'?)*",
        "*claims/a.yaml:31 (SUB-1): field 'section' must be*",
        "*claims/a.yaml:41 (SUB-2): expect.approx needs abs_tol or rel_tol*",
        "*claims/b.yaml:1 (VEC-1): duplicate id 'VEC-1': already defined at claims/a.yaml:1*",
        "*claims/c.yaml:2: not valid YAML*",
    ])
    assert "Interrupted" not in result.stdout.str()
    records = {(r["file"], r["line"]): r for r in status(claims_dir)["claims"]}
    assert records[("claims/a.yaml", 21)]["status"] == "error"
    assert records[("claims/a.yaml", 21)]["id"] == "VEC-3"
    assert records[("claims/c.yaml", 2)]["id"] is None
    assert [r["status"] for r in records.values()].count("verified") == 3


def test_needs_weights_is_a_skip_with_the_fetch_command(claims_dir: pytest.Pytester, weights: set[str]) -> None:
    write(claims_dir, "vectors.yaml", entry("VEC-2", requires="[pythia-160m]"))
    result = claims_dir.runpytest("claims", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines_random([
        "SKIPPED ?1? claims/vectors.yaml:1: VEC-2: needs the weights of pythia-160m (EleutherAI/pythia-160m)*"
        "run `hf download EleutherAI/pythia-160m`, then `pytest claims/`*",
        "emoverify: 0 verified, 0 not diagnostic, 0 Rev.2 claim refuted, "
        "0 retraction confirmed, 0 Rev.1 was right after all, 1 needs weights, 0 error"])
    weights.add("EleutherAI/pythia-160m")
    claims_dir.runpytest("claims").assert_outcomes(passed=1)


def test_rev1_inverted_both_ways(claims_dir: pytest.Pytester) -> None:
    write(claims_dir, "sweep.yaml",
          entry("SWEEP-1.rev1", 0.0, statement="layers 6-7 give the largest effect"),
          entry("HEAD-3.rev1", 0.5, statement="head patching gains +0.1102"))
    result = claims_dir.runpytest("claims")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*HEAD-3.rev1 (§4.1, rev1): Rev.1 was right after all",
                                 "*the statement Rev.2 retracted holds*"])
    assert {r["id"]: r["verdict"] for r in status(claims_dir)["claims"]} == {
        "SWEEP-1.rev1": "retraction confirmed", "HEAD-3.rev1": "Rev.1 was right after all"}


def test_raising_computation_is_an_error_traceback_only_with_v(claims_dir: pytest.Pytester) -> None:
    write(claims_dir, "heads.yaml", entry("HEAD-2", computation="fake.raises", args="{message: boom}"))
    quiet = claims_dir.runpytest("claims")
    quiet.assert_outcomes(failed=1)
    quiet.stdout.fnmatch_lines(["*HEAD-2 (§4.1, rev2): error", "*reason:    ValueError: boom"])
    assert "Traceback" not in quiet.stdout.str()
    verbose = claims_dir.runpytest("claims", "-v")
    verbose.stdout.fnmatch_lines(["*Traceback (most recent call last)*", "*raise ValueError(message)*"])
    assert status(claims_dir)["claims"][0]["status"] == "error"


def test_k_selects_by_claim_id_and_measured_values_ride_on_user_properties(
        claims_dir: pytest.Pytester) -> None:
    write(claims_dir, "vectors.yaml", entry("VEC-1", 0.51), entry("VEC-2"))
    recorder = claims_dir.inline_run("claims", "-k", "VEC-1")
    [report] = [r for r in recorder.getreports("pytest_runtest_logreport") if r.when == "call"]
    assert report.nodeid == "claims/vectors.yaml::VEC-1" and report.passed
    properties = dict(report.user_properties)
    assert properties["measured"] == 0.51 and properties["status"] == "verified"
    assert [r["id"] for r in status(claims_dir)["claims"]] == ["VEC-1"]


def test_reportinfo_points_at_the_entry(claims_dir: pytest.Pytester) -> None:
    write(claims_dir, "vectors.yaml", entry("VEC-1"), entry("VEC-2"))
    items, _ = claims_dir.inline_genitems("claims")
    path, line, name = items[1].reportinfo()
    assert (Path(path).name, line, name) == ("vectors.yaml", 10, "VEC-2")  # 0-based: line 11


def test_status_json_has_every_field_and_is_written_atomically(
        claims_dir: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, weights: set[str]) -> None:
    writes: list[Path] = []
    real_write = emoverify.harness.plugin.atomic_write_json
    monkeypatch.setattr(emoverify.harness.plugin, "atomic_write_json",
                        lambda path, obj: writes.append(Path(path)) or real_write(path, obj))
    write(claims_dir, "vectors.yaml",
          entry("VEC-1", args="{value: 0.5, standin_value: 0.49, interval: [0.45, 0.55], model: gpt2}",
                requires="[gpt2]", controls="[null_model]"),
          entry("VEC-3", computation="fake.figure", args="{value: 0.5}"))
    weights.add("gpt2")
    claims_dir.runpytest("claims", "--emoverify-status", "out/status.json").assert_outcomes(passed=2)
    out = claims_dir.path / "out"
    # The run marker first (a killed run leaves it, and the report says so), then the status; the marker is gone.
    assert writes == [out / "status.json.running", out / "status.json"]
    assert not (out / "status.json.running").exists()
    document = json.loads(writes[1].read_text())
    assert {"generated", "emoverify_version", "environment", "model_source", "claims"} <= set(document)
    assert document["model_source"] == "real"
    first, second = document["claims"]
    for key in ("id", "revision", "file", "line", "section", "statement", "status", "outcome", "measured",
                "label", "interval", "expected", "reason", "protocol", "requires", "controls", "details",
                "figures", "provenance", "seconds", "generated", "code_version"):
        assert key in first, key
    assert (first["id"], first["status"], first["outcome"], first["measured"]) == ("VEC-1", "verified",
                                                                                     "passed", 0.5)
    assert first["expected"] == {"approx": 0.5, "abs_tol": 0.05} and first["interval"] == [0.45, 0.55]
    assert first["controls"]["null_model"]["value"] == 0.49 and first["controls"]["null_model"]["holds"]
    assert first["provenance"] == {"model": "gpt2"} and first["requires"] == ["gpt2"]
    assert second["figures"] == ["figures/fake.png"]  # relative to the status file
    assert (claims_dir.path / "out" / "figures" / "fake.png").is_file()
    assert not list((claims_dir.path / "out").glob(".*.tmp"))


def test_standin_models_label_every_result(claims_dir: pytest.Pytester) -> None:
    write(claims_dir, "vectors.yaml", entry("VEC-1", args="{value: 0.1, standin_value: 0.5}",
                                            requires="[gpt2]", controls="[null_model]"))
    claims_dir.runpytest("claims", "--emoverify-models=standin").assert_outcomes(passed=1)
    document = status(claims_dir)
    assert document["model_source"] == "standin"
    [record] = document["claims"]
    assert record["model_source"] == "standin" and record["measured"] == 0.5
    assert record["controls"]["null_model"]["holds"] is True


def test_the_null_model_runs_on_as_many_seeds_as_asked(claims_dir: pytest.Pytester) -> None:
    write(claims_dir, "vectors.yaml", entry("VEC-1", args="{value: 0.5, seed_values: [0.1, 0.2, 0.5]}",
                                            requires="[gpt2]", controls="[null_model]"))
    claims_dir.runpytest("claims", "--emoverify-models=standin", "--emoverify-null-seeds=3").assert_outcomes(
        failed=1)
    [record] = status(claims_dir)["claims"]
    null = record["controls"]["null_model"]
    assert [run["value"] for run in null["seeds"]] == [0.1, 0.2, 0.5] and null["share_holding"] == pytest.approx(1 / 3)
    assert record["measured"] == 0.1 and record["verdict"] == "Rev.2 claim refuted"  # seed 0 is the measurement
    claims_dir.runpytest("claims", "--emoverify-null-seeds=0").stderr.fnmatch_lines(
        ["*--emoverify-null-seeds: expected a whole number of at least 1, not '0'"])


def test_plain_tests_and_claims_in_one_run(claims_dir: pytest.Pytester) -> None:
    claims_dir.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    (claims_dir.path / "settings.yaml").write_text("not: a claim file\n")  # YAML outside claims/
    write(claims_dir, "vectors.yaml", entry("VEC-1"))
    result = claims_dir.runpytest()
    result.assert_outcomes(passed=2)
    assert status(claims_dir)["claims"][0]["id"] == "VEC-1"


def test_no_status_file_without_claims(claims_dir: pytest.Pytester) -> None:
    claims_dir.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    result = claims_dir.runpytest("test_plain.py")
    result.assert_outcomes(passed=1)
    assert "emoverify:" not in result.stdout.str()
    assert not (claims_dir.path / "reports").exists()


def test_a_partial_run_merges_into_the_status_by_claim(claims_dir: pytest.Pytester) -> None:
    write(claims_dir, "vectors.yaml", entry("VEC-1", 0.5), entry("VEC-2", 0.9))
    claims_dir.runpytest("claims").assert_outcomes(passed=1, failed=1)
    first = {r["id"]: r for r in status(claims_dir)["claims"]}
    write(claims_dir, "vectors.yaml", entry("VEC-1", 0.5), entry("VEC-2", 0.5))
    claims_dir.runpytest("claims", "-k", "VEC-2").assert_outcomes(passed=1)
    second = {r["id"]: r for r in status(claims_dir)["claims"]}
    assert set(second) == {"VEC-1", "VEC-2"}  # -k ran one claim; the other's record is kept, not dropped
    assert second["VEC-1"] == first["VEC-1"]  # with its own time and code version
    assert second["VEC-2"]["status"] == "verified" and first["VEC-2"]["status"] == "refuted"
    claims_dir.runpytest("claims", "--emoverify-models=standin", "-k", "VEC-2")
    assert [r["id"] for r in status(claims_dir)["claims"]] == ["VEC-2"]  # other models: replaced, never mixed


def test_another_folder_name_needs_saying(claims_dir: pytest.Pytester) -> None:
    other = claims_dir.path / "paper_claims"
    other.mkdir()
    (other / "vectors.yaml").write_text(entry("VEC-1", 0.5))
    result = claims_dir.runpytest("paper_claims")
    result.assert_outcomes()
    result.stdout.fnmatch_lines(["*holds 1 YAML file(s), but none is a claim file*--emoverify-claims paper_claims*"])
    claims_dir.runpytest("paper_claims", "--emoverify-claims", "paper_claims").assert_outcomes(passed=1)
    claims_dir.runpytest(str(other / "vectors.yaml")).assert_outcomes(passed=1)  # a file named on the command line


def test_fragility_is_shown_in_the_terminal(claims_dir: pytest.Pytester) -> None:
    write(claims_dir, "vectors.yaml", entry("VEC-1", 0.5).rstrip("\n") + "\n  choices: {value: [0.9]}\n",
          entry("VEC-2", 0.5).rstrip("\n") + "\n  choices: {value: [0.51]}\n")
    result = claims_dir.runpytest("claims")
    result.stdout.fnmatch_lines(["emoverify: over the open choices, 1 robust, 1 fragile: VEC-1 (value=0.9)"])
