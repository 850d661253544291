"""The report: Markdown table (regression-tested), HTML, badges, and the command line."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from emoverify.harness.records import StatusDocument
from emoverify.report import build as report
from emoverify.report.render import BADGE_COLORS, NOT_DIAGNOSTIC, badge_files, build_rows, render_markdown

FIXTURE = Path(__file__).parent / "data" / "report"
STATUS = FIXTURE / "claim-status.json"
SUMMARY = ("emoverify: 1 verified, 1 not diagnostic, 1 Rev.2 claim refuted, 1 retraction confirmed, "
           "1 Rev.1 was right after all, 1 needs weights, 2 error")


@pytest.fixture(autouse=True)
def fixture_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture's records were computed by "0.1.0+fixture": make that the current code, so none is stale."""
    monkeypatch.setattr(report, "code_version", lambda: "0.1.0+fixture")


@pytest.fixture
def document() -> StatusDocument:
    return StatusDocument.from_json(json.loads(STATUS.read_text()), str(STATUS))


def test_markdown_table(document: StatusDocument, file_regression: Any) -> None:
    file_regression.check(render_markdown(document), fullpath=FIXTURE / "corrections.md")


def test_rows_pair_rev1_with_rev2_in_paper_order(document: StatusDocument) -> None:
    rows = build_rows(document.claims)
    assert [row.id for row in rows] == ["VEC-1", "VEC-2", "VEC-3", "SWEEP-1", "HEAD-2", "HEAD-3.rev1",
                                        "claims/heads.yaml:23"]
    sweep = rows[3].cells()
    assert sweep[2] == "Layers 6-7 give the largest steering effect"      # Rev.1 said
    assert sweep[3] == "No clear layer dependence; effect ≈ 0"           # Rev.2 says
    assert sweep[6] == "Rev.2: verified; Rev.1: retraction confirmed"
    assert rows[5].cells()[6] == "Rev.1 was right after all"
    assert rows[0].not_diagnostic and rows[0].cells()[6] == NOT_DIAGNOSTIC
    assert not rows[1].not_diagnostic
    assert rows[0].cells()[4] == "0.50 / 0.66 / 0.77 (layer 12) (95% CI 0.46–0.54 / 0.63–0.69 / 0.74–0.8)"


def test_a_duplicate_id_gets_its_own_row(document: StatusDocument) -> None:
    duplicate = dataclasses.replace(document.claims[0], file="claims/other.yaml", line=5, status="error",
                                    verdict="error", reason="duplicate id 'VEC-1'", controls={})
    rows = build_rows([*document.claims, duplicate])
    assert [row.id for row in rows][:3] == ["VEC-1", "VEC-1 (claims/other.yaml:5)", "VEC-2"]
    assert rows[1].cells()[6] == "error (duplicate id 'VEC-1')"


def test_badge_colours(document: StatusDocument) -> None:
    badges = badge_files(document)
    assert sorted(badges) == ["HEAD-2.svg", "HEAD-3.rev1.svg", "SWEEP-1.rev1.svg", "SWEEP-1.svg", "VEC-1.svg",
                              "VEC-2.svg", "VEC-3.svg"]  # none for the entry without an id
    colours = {"VEC-1": "not diagnostic", "SWEEP-1.rev1": "retraction confirmed", "SWEEP-1": "verified",
               "VEC-2": "Rev.2 claim refuted", "HEAD-3.rev1": "Rev.1 was right after all", "VEC-3": "needs weights",
               "HEAD-2": "error"}
    for claim_id, colour in colours.items():
        svg = badges[f"{claim_id}.svg"]
        assert svg.startswith("<svg") and f'fill="{BADGE_COLORS[colour]}"' in svg, claim_id
        assert f">{claim_id}</text>" in svg
    assert "retraction confirmed" in badges["SWEEP-1.rev1.svg"]
    assert len({BADGE_COLORS[k] for k in ("verified", "not diagnostic", "Rev.2 claim refuted", "needs weights",
                                          "error")}) == 5  # stands, cannot tell, falls, skipped, error: apart


def test_main_writes_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main(["--status", str(STATUS), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == SUMMARY
    assert (tmp_path / "corrections.md").read_text() == (FIXTURE / "corrections.md").read_text()
    assert len(list((tmp_path / "badges").glob("*.svg"))) == 7
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic writes leave no temporary file behind
    page = (tmp_path / "index.html").read_text()
    assert "<table>" in page and "<th>Rev.1 said</th>" in page and "<th>verdict</th>" in page
    assert SUMMARY in page
    png = base64.b64encode((FIXTURE / "figures" / "vec-1-cosines.png").read_bytes()).decode()
    assert f'src="data:image/png;base64,{png}"' in page  # embedded, not linked
    assert 'id="SWEEP-1.rev1"' in page and "ValueError: no heads selected" in page
    assert NOT_DIAGNOSTIC in page and "&lt;" not in page.split("<body>")[0]


def test_standin_results_are_labelled(tmp_path: Path) -> None:
    document = json.loads(STATUS.read_text())
    document["model_source"] = "standin"
    for record in document["claims"]:
        record["model_source"] = "standin"
    status = tmp_path / "status.json"
    status.write_text(json.dumps(document))
    assert report.main(["--status", str(status), "--out", str(tmp_path), "--models", "standin"]) == 0
    markdown = (tmp_path / "corrections.md").read_text()
    assert "random-init stand-ins" in markdown and "0.41 (mean-centred) (95% CI 0.38–0.44) [stand-in]" in markdown
    assert "stand-in" in (tmp_path / "badges" / "VEC-1.svg").read_text()
    assert "random-init stand-ins" in (tmp_path / "index.html").read_text()


def test_models_must_match_the_status_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main(["--status", str(STATUS), "--out", str(tmp_path), "--models", "standin"]) == 1
    assert "was computed on real models, not standin" in capsys.readouterr().err


def test_without_a_status_file_it_runs_the_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_run(status: Path, models: str) -> int:
        calls.append((status, models))
        shutil.copy(STATUS, status)
        return 1  # some claim failed: the report is still written

    monkeypatch.setattr(report, "run_claims", fake_run)
    status = tmp_path / "claim-status.json"
    assert report.main(["--status", str(status), "--out", str(tmp_path), "--models", "real"]) == 0
    assert calls == [(status, "real")] and (tmp_path / "corrections.md").is_file()


def test_end_to_end_on_the_data_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m emoverify.report` in a fresh directory: pytest runs in a subprocess, then the report."""
    (tmp_path / "claims").mkdir()
    shutil.copy(Path(__file__).parents[1] / "claims" / "data.yaml", tmp_path / "claims" / "data.yaml")
    monkeypatch.chdir(tmp_path)
    assert report.main([]) == 0
    document = json.loads((tmp_path / "reports" / "claim-status.json").read_text())
    assert {r["id"]: r["status"] for r in document["claims"]} == {
        "DATA-1": "verified", "DATA-2": "verified", "DATA-3": "verified"}
    assert document["claims"][0]["measured"] == [70, 70, 70, 70]
    assert "| DATA-2 |" in (tmp_path / "reports" / "corrections.md").read_text()


@pytest.mark.parametrize("damage", ["no status", "unknown status", "unknown outcome", "not a list", "control"])
def test_a_damaged_status_file_is_a_clear_error(tmp_path: Path, damage: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads(STATUS.read_text())
    record = document["claims"][0]
    if damage == "no status":
        del record["status"]
    elif damage == "unknown status":
        record["status"] = "verifiex"
    elif damage == "unknown outcome":
        record["outcome"] = "won"
    elif damage == "control":
        record["controls"]["null_model"] = {"label": "x"}
    else:
        document["claims"] = {"VEC-1": record}
    status = tmp_path / "status.json"
    status.write_text(json.dumps(document))
    assert report.main(["--status", str(status), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("emoverify.report: ") and "Traceback" not in err
    assert {"no status": "missing field(s) status", "unknown status": "unknown status 'verifiex'",
            "unknown outcome": "outcome 'won'", "not a list": "no 'claims' list",
            "control": "control null_model"}[damage] in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_status_records_round_trip(document: StatusDocument) -> None:
    again = StatusDocument.from_json(json.loads(json.dumps(document.to_json())), "round trip")
    assert again == document


def test_records_from_other_code_and_unfinished_runs_are_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    status = tmp_path / "claim-status.json"
    shutil.copy(STATUS, status)
    assert report.main(["--status", str(status), "--out", str(tmp_path / "a")]) == 0
    assert "Stale" not in (tmp_path / "a" / "corrections.md").read_text()
    monkeypatch.setattr(report, "code_version", lambda: "0.1.0+changed")
    (tmp_path / "claim-status.json.running").write_text("{}")
    assert report.main(["--status", str(status), "--out", str(tmp_path / "b")]) == 0
    markdown = (tmp_path / "b" / "corrections.md").read_text()
    assert "Stale: 8 record(s) were computed by other code than this (0.1.0+changed)" in markdown
    assert "did not finish (killed or crashed" in markdown
    assert "Stale: 8 record(s)" in (tmp_path / "b" / "index.html").read_text()
    assert "did not finish" in capsys.readouterr().err
