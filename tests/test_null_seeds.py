"""The null model over several stand-in seeds: intervals.py's rule, the control's per-seed record, its JSON
(old records still load) and its words in the report."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from claim_fakes import with_models

from emoverify.analysis.intervals import min_tail_draws, null_range, null_reaches
from emoverify.computations.registry import ClaimContext, get_computation
from emoverify.harness.evaluation import evaluate_claim
from emoverify.harness.records import ControlRecord, SeedRun, StatusDocument
from emoverify.harness.schema import load_claim_file
from emoverify.report.render import null_model_words

pytest_plugins = ["claim_fakes"]  # fixtures: fake_registry, weights


# --- the rule ----------------------------------------------------------------------------------------------------

def test_below_forty_draws_the_null_range_spans_them_all() -> None:
    assert min_tail_draws() == 40 and min_tail_draws(0.9) == 20
    lo, hi = null_range(np.array([[0.3, 1.0], [0.1, 2.0], [0.2, 3.0]]))
    assert lo.tolist() == [0.1, 1.0] and hi.tolist() == [0.3, 3.0]
    assert null_reaches([False, False, True, False, False], [0.1, 0.2, 0.9, 0.3, 0.2])  # 1 of 5: inside
    assert not null_reaches([False] * 5, [0.1] * 5)
    many = list(np.linspace(0.0, 1.0, 100))
    assert not null_reaches([i == 0 for i in range(100)], many)  # only the lowest draw, in the tail
    assert null_reaches([i == 50 for i in range(100)], many)
    assert null_reaches([i == 0 for i in range(100)], [True] * 100)  # not numbers: every draw counts


# --- the control over seeds ----------------------------------------------------------------------------------------

def _claim(tmp_path: Path, args: str, expect: str = "{approx: 0.5, abs_tol: 0.05}", id: str = "VEC-1",
           computation: str = "fake.constant"):
    path = tmp_path / "claims" / f"{id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(f"""\
        - id: {id}
          section: "4.1"
          statement: a figure
          computation: {computation}
          args: {with_models(args, "[gpt2]")}
          expect: {expect}
          protocol: the protocol
          requires: [gpt2]
          controls: [null_model]
        """))
    [claim] = load_claim_file(path)
    return claim


def test_a_figure_one_of_five_seeds_reaches_is_not_diagnostic(tmp_path: Path, fake_registry, weights) -> None:
    weights.add("gpt2")
    ctx = ClaimContext(figures_dir=None)
    reached = evaluate_claim(_claim(tmp_path, "{value: 0.5, seed_values: [0.1, 0.2, 0.52, 0.3, 0.25]}"), ctx)
    null = reached.controls["null_model"]
    assert [(run.seed, run.value, run.holds) for run in null.seeds] == [
        (0, 0.1, False), (1, 0.2, False), (2, 0.52, True), (3, 0.3, False), (4, 0.25, False)]
    assert null.holds is True and null.share_holding == pytest.approx(0.2) and null.value == 0.1
    assert (reached.status, reached.verdict, reached.outcome) == ("verified", "not diagnostic", "passed")
    assert "holds on 1 of 5 null seeds (2)" in null.reason
    [number] = null.details["diagnostic"]
    assert number["null_range"] == [0.1, 0.52] and not number["diagnostic"]
    apart = evaluate_claim(_claim(tmp_path, "{value: 0.5, seed_values: [0.1, 0.2, 0.3, 0.3, 0.25]}"), ctx)
    assert apart.verdict == "verified" and apart.controls["null_model"].share_holding == 0.0
    assert apart.controls["null_model"].details["diagnostic"][0]["diagnostic"]
    fewer = evaluate_claim(_claim(tmp_path, "{value: 0.5, seed_values: [0.1, 0.2, 0.52]}"),
                           ClaimContext(figures_dir=None, null_seeds=2))
    assert len(fewer.controls["null_model"].seeds) == 2 and fewer.verdict == "verified"


def test_seeds_run_in_their_own_context_and_stand_in_mode_reuses_seed_0(tmp_path: Path, fake_registry,
                                                                     weights) -> None:
    weights.add("gpt2")
    claim = _claim(tmp_path, "{value: 0.5, model: gpt2}", computation="fake.where_it_ran")
    calls: list[ClaimContext] = []
    inner = get_computation("fake.where_it_ran")
    fake_registry._entries["fake.where_it_ran"] = lambda ctx, **kw: calls.append(ctx) or inner(ctx, **kw)
    evaluate_claim(claim, ClaimContext(figures_dir=tmp_path / "figures", null_seeds=3))
    assert [(c.model_source, c.standin_seed, c.role, c.figure_only) for c in calls[1:]] == [
        ("standin", 0, "null", False), ("standin", 1, "null", True), ("standin", 2, "null", True)]
    assert calls[1].figures_dir == tmp_path / "figures" / "null_model" and calls[2].figures_dir is None
    calls.clear()
    result = evaluate_claim(claim, ClaimContext(model_source="standin", figures_dir=None, null_seeds=3))
    assert [(c.standin_seed, c.role) for c in calls] == [(0, "claim"), (1, "null"), (2, "null")]
    assert result.controls["null_model"].seeds[2].label == "0.5"


def test_a_seed_that_fails_is_named_and_the_others_still_judge(tmp_path: Path, fake_registry, weights) -> None:
    result = evaluate_claim(_claim(tmp_path, "{value: 0.5, seed_values: [0.1, 0.2]}"),
                            ClaimContext(figures_dir=None, null_seeds=3))
    null = result.controls["null_model"]
    assert [run.status for run in null.seeds] == ["refuted", "refuted", "error"]
    assert null.holds is False and "1 seed(s) did not measure (seed 2: IndexError" in null.reason
    none = evaluate_claim(_claim(tmp_path, "{value: 0.5, seed_values: []}"), ClaimContext(figures_dir=None))
    assert none.controls["null_model"].error.startswith("seed 0: IndexError")
    assert len(none.controls["null_model"].seeds) == 5


def test_control_records_round_trip_and_old_ones_still_load(tmp_path: Path, fake_registry, weights) -> None:
    result = evaluate_claim(_claim(tmp_path, "{value: [0.5, 0.6], seed_values: [[0.1, 0.6], [0.2, 0.61], "
                                             "[0.3, 0.9], [0.4, 0.7], [0.5, 0.62]]}",
                                   expect="{approx: [0.5, 0.6], abs_tol: 0.05}"), ClaimContext(figures_dir=None))
    record = result.record()
    again = StatusDocument.from_json(json.loads(json.dumps(StatusDocument(
        "now", "0", "real", (record,)).to_json())), "status").claims[0]
    assert again.null_model == record.null_model
    assert [v["null_range"] for v in again.null_model.details["diagnostic"]] == [[0.1, 0.5], [0.6, 0.9]]
    assert null_model_words(again) == "0.1–0.5 / 0.6–0.9 over 5 seeds (1 reaches the figure)"
    old = {"status": "refuted", "value": 0.1, "label": "0.10", "interval": None, "holds": False,
           "reason": "measured 0.1 is outside 0.5 ± 0.05", "figures": []}
    loaded = ControlRecord.from_json(old, "old")
    assert (loaded.seeds, loaded.share_holding, loaded.details, loaded.holds) == ((), None, {}, False)
    assert ControlRecord.from_json({"status": "error", "error": "boom"}, "old").error == "boom"
    assert SeedRun.from_json(SeedRun(3, "error", reason="boom").to_json(), "run") == SeedRun(3, "error", reason="boom")
