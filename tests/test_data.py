"""Phase 1: the prompt datasets load, validate, stay matched, and refuse every kind of bad record."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from emoverify.data import (
    DATASETS,
    EMOTIONS,
    FORMS,
    PERSONS,
    check_superset,
    dataset_path,
    dataset_sha256,
    dataset_version,
    english_problem,
    length_statistics,
    load_dataset,
    load_dataset_file,
    validate_records,
)
from emoverify.data.build import build_datasets
from emoverify.data.loading import read_manifest
from emoverify.errors import DatasetError
from emoverify.provenance import sha256_file

PER_EMOTION = {"baseline": 70, "extended": 100}

# Stems of the emotion words: each emotional span starts with one of its emotion's stems, and no neutral
# prompt contains any of them (so the neutral class carries no emotion word at all).
STEMS = {
    "gratitude": ("thank", "grateful", "gratitude", "appreciat"),
    "anger": ("angry", "anger", "furious", "livid", "outraged", "fuming", "mad", "irate", "enraged",
              "annoyed", "irritated", "bitter"),
    "apology": ("sorry", "apolog", "regret"),
}


@pytest.fixture(scope="module")
def datasets() -> dict[str, pd.DataFrame]:
    return {name: load_dataset(name) for name in DATASETS}


@pytest.fixture
def good_records() -> list[dict[str, Any]]:
    """Two matched quadruples, valid as they stand; each test breaks one thing."""
    return copy.deepcopy([
        {"id": "gratitude-001", "emotion": "gratitude", "text": "Thank you for the lift.", "span": [0, 5]},
        {"id": "gratitude-002", "emotion": "gratitude", "text": "I am grateful for the help.",
         "span": [5, 13]},
        {"id": "anger-001", "emotion": "anger", "text": "Furious about the lift.", "span": [0, 7]},
        {"id": "anger-002", "emotion": "anger", "text": "I am furious about the help.", "span": [5, 12]},
        {"id": "apology-001", "emotion": "apology", "text": "Sorry about the lift.", "span": [0, 5]},
        {"id": "apology-002", "emotion": "apology", "text": "I am sorry for the mess.", "span": [5, 10]},
        {"id": "neutral-001", "emotion": "neutral", "text": "Update about the lift.", "span": [0, 6]},
        {"id": "neutral-002", "emotion": "neutral", "text": "I am ready for the help.", "span": [5, 10]},
    ])


# --- the packaged datasets ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", DATASETS)
def test_dataset_loads_with_the_papers_counts(datasets: dict[str, pd.DataFrame], name: str) -> None:
    df = datasets[name]
    assert list(df.columns[:5]) == ["id", "emotion", "text", "span_start", "span_end"]
    assert df.groupby("emotion").size().to_dict() == {emotion: PER_EMOTION[name] for emotion in EMOTIONS}
    assert len(df) == 4 * PER_EMOTION[name]  # DATA-1: 280, DATA-2: 400
    assert df["id"].is_unique and df["text"].is_unique
    assert set(df["form"]) <= set(FORMS) and set(df["person"]) == set(PERSONS)
    # Stored sorted: emotions in EMOTIONS order, then by number.
    order = [(EMOTIONS.index(e), int(i.split("-")[1])) for e, i in zip(df["emotion"], df["id"], strict=True)]
    assert order == sorted(order)


def test_extended_is_a_superset_of_baseline(datasets: dict[str, pd.DataFrame]) -> None:
    baseline, extended = datasets["baseline"], datasets["extended"]
    for emotion in EMOTIONS:
        head = extended[extended["emotion"] == emotion].head(70).reset_index(drop=True)
        base = baseline[baseline["emotion"] == emotion].reset_index(drop=True)
        pd.testing.assert_frame_equal(head, base)
    check_superset(baseline, extended, subset_name="baseline", superset_name="extended")


def test_superset_check_names_the_differing_record(datasets: dict[str, pd.DataFrame]) -> None:
    extended = datasets["extended"].copy()
    extended.loc[extended["id"] == "anger-005", "text"] = "Something else entirely, I am angry."
    with pytest.raises(DatasetError, match=r"anger record #5 .*id 'anger-005'"):
        check_superset(datasets["baseline"], extended, subset_name="baseline", superset_name="extended")


@pytest.mark.parametrize("name", DATASETS)
def test_spans_are_words_of_the_text(datasets: dict[str, pd.DataFrame], name: str) -> None:
    for row in datasets[name].itertuples():
        word = row.text[row.span_start:row.span_end]
        assert re.fullmatch(r"[A-Za-z]+", word), (row.id, word)
        assert row.span_start == 0 or not row.text[row.span_start - 1].isalnum(), row.id
        assert row.span_end == len(row.text) or not row.text[row.span_end].isalnum(), row.id
        if row.emotion != "neutral":
            assert word.lower().startswith(STEMS[row.emotion]), (row.id, word)


def test_neutral_prompts_hold_no_emotion_word(datasets: dict[str, pd.DataFrame]) -> None:
    stems = tuple(stem for group in STEMS.values() for stem in group)
    neutral = datasets["extended"].query("emotion == 'neutral'")
    for row in neutral.itertuples():
        words = re.findall(r"[a-z]+", row.text.lower())
        assert not [w for w in words if w.startswith(stems) and w not in {"made", "madam"}], row.id


@pytest.mark.parametrize("name", DATASETS)
def test_neutral_lengths_are_matched(datasets: dict[str, pd.DataFrame], name: str) -> None:
    stats = length_statistics(datasets[name])
    neutral = stats.loc["neutral", "chars_mean"]
    for emotion in ("gratitude", "anger", "apology"):
        assert abs(stats.loc[emotion, "chars_mean"] / neutral - 1) <= 0.10, emotion
        assert abs(stats.loc[emotion, "words_mean"] / stats.loc["neutral", "words_mean"] - 1) <= 0.10


def test_frames_are_matched_quadruples(datasets: dict[str, pd.DataFrame]) -> None:
    for frame, group in datasets["extended"].groupby("frame"):
        assert sorted(group["emotion"]) == sorted(EMOTIONS), frame
        assert group["form"].nunique() == 1 and group["person"].nunique() == 1, frame
        assert {i.split("-")[1] for i in group["id"]} == {frame[1:]}, frame


def test_files_are_built_from_the_prompt_source() -> None:
    assert build_datasets(check=True) == [], "run `python -m emoverify.data.build`"


def test_manifest_records_version_and_hashes() -> None:
    manifest = read_manifest()
    assert set(manifest["datasets"]) == set(DATASETS)
    assert dataset_version() == manifest["version"] and dataset_version()
    for name in DATASETS:
        assert dataset_sha256(name) == sha256_file(dataset_path(name)) == manifest["datasets"][name]["sha256"]


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset 'baselin'.*did you mean 'baseline'.*extended"):
        load_dataset("baselin")


# --- tampered and malformed files ----------------------------------------------------------------------

def test_tampered_file_is_refused(tmp_path: Path) -> None:
    copy_path = tmp_path / "baseline.jsonl"
    shutil.copyfile(dataset_path("baseline"), copy_path)
    recorded = read_manifest()["datasets"]["baseline"]["sha256"]
    assert len(load_dataset_file(copy_path, recorded, expected_per_emotion=70)) == 280
    copy_path.write_text(copy_path.read_text(encoding="utf-8").replace("printer", "scanner", 1),
                         encoding="utf-8")
    with pytest.raises(DatasetError, match=r"has changed: its sha256 is [0-9a-f]{64} but .* recorded"):
        load_dataset_file(copy_path, recorded)


def test_malformed_line_is_named(tmp_path: Path, good_records: list[dict[str, Any]]) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps(record) for record in good_records]
    lines[2] = lines[2][:-1]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 3 is not valid JSON"):
        load_dataset_file(path)


def test_file_with_bad_record_names_file_and_line(tmp_path: Path, good_records: list[dict[str, Any]]) -> None:
    good_records[5]["emotion"] = "joy"
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in good_records), encoding="utf-8")
    with pytest.raises(DatasetError, match=rf"(?s){re.escape(str(path))}.*line 6 \(id 'apology-002'\)"):
        load_dataset_file(path)


# --- validate_records refuses each kind of bad record, naming it -----------------------------------------

def test_good_records_pass(good_records: list[dict[str, Any]], datasets: dict[str, pd.DataFrame]) -> None:
    validate_records(good_records, expected_per_emotion=2)
    validate_records(datasets["baseline"], expected_per_emotion=70)  # the DataFrame form


def _refused(records: Any, expected_per_emotion: int | None = None) -> str:
    with pytest.raises(DatasetError) as info:
        validate_records(records, expected_per_emotion)
    return str(info.value)


def test_duplicate_id_is_refused(good_records: list[dict[str, Any]]) -> None:
    good_records[1]["id"] = "gratitude-001"
    message = _refused(good_records)
    assert "line 2 (id 'gratitude-001') duplicates the id of line 1" in message
    assert "give it a new id" in message


def test_duplicate_text_is_refused(good_records: list[dict[str, Any]]) -> None:
    good_records[3].update(text="  FURIOUS about the lift.".strip(), span=[0, 7])
    assert "line 4 (id 'anger-002') duplicates the text of line 3" in _refused(good_records)


def test_class_imbalance_is_refused(good_records: list[dict[str, Any]]) -> None:
    message = _refused(good_records[:-1])
    assert "class imbalance: neutral has 1 records, expected 2" in message
    assert "line 7 (id 'neutral-001')" in message
    message = _refused(good_records, expected_per_emotion=3)
    assert "gratitude has 2 records, expected 3" in message and "line 2 (id 'gratitude-002')" in message


def test_missing_emotion_is_an_imbalance(good_records: list[dict[str, Any]]) -> None:
    message = _refused([r for r in good_records if r["emotion"] != "apology"])
    assert "apology has 0 records, expected 2" in message and "has no record at all" in message


@pytest.mark.parametrize(("text", "span", "reason"), [
    ("Merci beaucoup pour votre aide.", [0, 5], "are common English function words"),
    ("I am so grateful f\u00fcr the help.", [8, 16], "'\u00fc' (U+00FC)"),
    ("I am grateful for the help \U0001f600", [5, 13], "non-ASCII"),
])
def test_non_english_text_is_refused(good_records: list[dict[str, Any]], text: str, span: list[int],
                                     reason: str) -> None:
    good_records[1].update(text=text, span=span)
    message = _refused(good_records)
    assert "line 2 (id 'gratitude-002') is not plain English" in message and reason in message


def test_english_allows_typographic_punctuation() -> None:
    assert english_problem("I\u2019m so grateful \u2014 \u201cthank you\u201d\u2026") is None


@pytest.mark.parametrize(("span", "reason"), [
    (None, "has no span"),
    ([5, 40], "outside its text"),
    ([6, 13], "does not lie on word boundaries"),  # "rateful"
    ([5, 14], "does not lie on word boundaries"),  # "grateful " (ends on a space)
    ([4, 13], "does not lie on word boundaries"),  # " grateful"
    (["5", "13"], "two integers"),
])
def test_bad_span_is_refused(good_records: list[dict[str, Any]], span: Any, reason: str) -> None:
    if span is None:
        del good_records[1]["span"]
    else:
        good_records[1]["span"] = span
    message = _refused(good_records)
    assert "line 2 (id 'gratitude-002')" in message and reason in message


def test_unknown_emotion_is_refused(good_records: list[dict[str, Any]]) -> None:
    good_records[7].update(emotion="joy")
    message = _refused(good_records)
    assert "line 8 (id 'neutral-002') has unknown emotion 'joy': use one of" in message


def test_empty_text_and_bad_id_are_refused(good_records: list[dict[str, Any]]) -> None:
    good_records[0]["text"] = "   "
    good_records[2]["id"] = "gratitude-009"
    message = _refused(good_records)
    assert "line 1 (id 'gratitude-001') has an empty or missing text" in message
    assert "line 3 (id 'gratitude-009') has id 'gratitude-009' but emotion 'anger'" in message


def test_broken_frame_is_refused(good_records: list[dict[str, Any]]) -> None:
    for record in good_records:
        record.update(frame=f"f00{record['id'][-1]}", form="statement", person="first")
    validate_records(good_records)
    good_records[6]["frame"] = "f002"
    good_records[5]["person"] = "third"
    message = _refused(good_records)
    assert "frame 'f002'" in message and "exactly one record of each" in message
    assert "line 6 (id 'apology-002') has person 'third'" in message


def test_dataframe_problems_name_the_row(datasets: dict[str, pd.DataFrame]) -> None:
    df = datasets["baseline"].copy()
    df.loc[3, "span_end"] = df.loc[3, "span_end"] - 1
    assert f"line 4 (id '{df.loc[3, 'id']}')" in _refused(df, 70)


# --- length statistics ------------------------------------------------------------------------------

def test_length_statistics_on_a_hand_made_frame() -> None:
    df = pd.DataFrame({
        "emotion": ["neutral", "anger", "anger", "anger"],
        "text": ["I am here.", "I am furious.", "So angry!", "Why are you so angry today?"],
    })
    before = df.copy()
    stats = length_statistics(df, tokenizers={"ws": lambda text: list(range(len(text.split()) + 1))})
    pd.testing.assert_frame_equal(df, before)  # pure
    assert list(stats.index) == ["anger", "neutral"]  # EMOTIONS order
    anger = stats.loc["anger"]
    assert anger["count"] == 3
    assert anger["chars_mean"] == pytest.approx((13 + 9 + 27) / 3)
    assert (anger["chars_median"], anger["chars_min"], anger["chars_max"]) == (13, 9, 27)
    assert anger["chars_std"] == pytest.approx(pd.Series([13, 9, 27]).std())
    assert (anger["words_mean"], anger["words_median"]) == (pytest.approx(11 / 3), 3)
    assert anger["tokens_ws_mean"] == pytest.approx(11 / 3 + 1)
    assert (anger["tokens_ws_min"], anger["tokens_ws_max"]) == (3, 7)
    assert stats.loc["neutral", "count"] == 1 and pd.isna(stats.loc["neutral", "chars_std"])
