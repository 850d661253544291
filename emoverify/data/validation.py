"""Validation of prompt records: every rule a dataset must obey, each failure naming the record.

`validate_records` collects every problem before it raises, so one run lists all that needs fixing. A
record is named by its id and its line: the 1-based position of the record, which for a JSON Lines file
is its line number (the loader refuses blank lines, so the two always agree).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from emoverify.errors import DatasetError

__all__ = [
    "ALLOWED_NON_ASCII",
    "EMOTIONS",
    "ENGLISH_FUNCTION_WORDS",
    "FORMS",
    "MIN_FUNCTION_WORD_SHARE",
    "PERSONS",
    "english_problem",
    "validate_records",
]

EMOTIONS: tuple[str, ...] = ("gratitude", "anger", "apology", "neutral")
FORMS: tuple[str, ...] = ("request", "reply", "message", "statement", "question")
PERSONS: tuple[str, ...] = ("first", "second")

REQUIRED_FIELDS: tuple[str, ...] = ("id", "emotion", "text", "span")
OPTIONAL_FIELDS: tuple[str, ...] = ("form", "person", "frame")

# Typographic punctuation an English writer may use; any other non-ASCII character (accented or
# non-Latin letters, emoji) marks the text as not plain English.
ALLOWED_NON_ASCII = frozenset("\u2018\u2019\u201c\u201d\u2013\u2014\u2026")  # ‘ ’ “ ” – — …

# Closed-class English words. A sentence in another language written in ASCII (French, Spanish,
# German without umlauts) shares almost none of them, while an English sentence uses several.
ENGLISH_FUNCTION_WORDS = frozenset(
    """
    a an the this that these those
    i me my mine we us our you your yours he him his she her it its they them their
    am is are was were be been being do does did done have has had having
    will would shall should can could may might must
    and or but so if because when while than then as
    of to in on at by for with about from into over after before until up out off down
    not no don't didn't isn't aren't wasn't weren't can't won't haven't
    what who whom which why how where there here all any some each every just very too also
    """.split()
)

# Share of a text's words that must be English function words. 1/5 lets through the shortest prompts
# ("You clearly appreciate good coffee." has one in five) and refuses "Merci beaucoup pour votre aide".
MIN_FUNCTION_WORD_SHARE = 0.2

_ID_PATTERN = re.compile(r"^(?P<emotion>[a-z]+)-(?P<number>\d{3,})$")
_FRAME_PATTERN = re.compile(r"^f\d{3,}$")
_WORD_PATTERN = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)*")


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def english_problem(text: str) -> str | None:
    """Return why `text` is not plain English, or None when it passes.

    The test is deliberately simple and dependency-free: (1) every character is ASCII or one of
    `ALLOWED_NON_ASCII`; (2) at least `MIN_FUNCTION_WORD_SHARE` of its words (runs of ASCII letters,
    apostrophes inside) are in `ENGLISH_FUNCTION_WORDS`.

    Example:
        >>> english_problem("Thank you so much!") is None
        True
        >>> english_problem("Merci beaucoup pour votre aide.")
        'only 0 of 5 words (0%) are common English function words (at least 20% needed)'
    """
    foreign = sorted({char for char in text if ord(char) > 127 and char not in ALLOWED_NON_ASCII})
    if foreign:
        shown = ", ".join(f"{char!r} (U+{ord(char):04X})" for char in foreign)
        return f"it contains non-ASCII characters outside the allowed punctuation: {shown}"
    words = [word.lower().replace("\u2019", "'") for word in _WORD_PATTERN.findall(text)]
    if not words:
        return "it contains no English word"
    hits = sum(word in ENGLISH_FUNCTION_WORDS for word in words)
    if hits / len(words) < MIN_FUNCTION_WORD_SHARE:
        return (f"only {hits} of {len(words)} words ({hits / len(words):.0%}) are common English function "
                f"words (at least {MIN_FUNCTION_WORD_SHARE:.0%} needed)")
    return None


def _missing(value: Any) -> bool:
    """True for an absent value, including the NaN/None pandas puts in an empty cell."""
    if value is None:
        return True
    return isinstance(value, float) and math.isnan(value)


def _as_dicts(records: Sequence[Mapping[str, Any]] | pd.DataFrame) -> list[dict[str, Any]]:
    """Records as dicts with a `span` field, whether given as dicts or as a `load_dataset` frame."""
    if isinstance(records, pd.DataFrame):
        rows = records.to_dict(orient="records")
        out = []
        for row in rows:
            row = dict(row)
            if "span" not in row and ("span_start" in row or "span_end" in row):
                start, end = row.pop("span_start", None), row.pop("span_end", None)
                row["span"] = None if _missing(start) or _missing(end) else [start, end]
            out.append({key: value for key, value in row.items() if not _missing(value)})
        return out
    return [dict(record) for record in records]


def _name(record: Mapping[str, Any], line: int) -> str:
    record_id = record.get("id")
    shown = repr(record_id) if isinstance(record_id, str) and record_id else "<no id>"
    return f"line {line} (id {shown})"


def _span_problem(text: str, span: Any) -> str | None:
    if _missing(span):
        return "has no span: add \"span\": [start, end], the character offsets of the emotion word"
    if (not isinstance(span, (list, tuple)) or len(span) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)):
        return f"has span {span!r}: it must be a list of two integers [start, end]"
    start, end = span
    if not 0 <= start < end <= len(text):
        return (f"has span [{start}, {end}] outside its text of {len(text)} characters: "
                f"it needs 0 <= start < end <= {len(text)}")
    inner = text[start:end]
    at_start = start == 0 or not _is_word_char(text[start - 1])
    at_end = end == len(text) or not _is_word_char(text[end])
    if not (_is_word_char(inner[0]) and _is_word_char(inner[-1]) and at_start and at_end):
        return (f"has span [{start}, {end}] = {inner!r}, which does not lie on word boundaries: "
                f"it must start and end with a letter and cut no word")
    return None


def _record_problems(record: Mapping[str, Any]) -> list[str]:
    """Problems of one record on its own (no comparison with the others)."""
    problems = []
    unknown = sorted(set(record) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        problems.append(f"has unknown field(s) {unknown}: allowed are "
                        f"{list(REQUIRED_FIELDS) + list(OPTIONAL_FIELDS)}")
    emotion = record.get("emotion")
    if emotion not in EMOTIONS:
        problems.append(f"has unknown emotion {emotion!r}: use one of {list(EMOTIONS)}")
    record_id = record.get("id")
    match = _ID_PATTERN.match(record_id) if isinstance(record_id, str) else None
    if match is None:
        problems.append(f"has id {record_id!r}: ids are '<emotion>-<number>', e.g. 'gratitude-001'")
    elif emotion in EMOTIONS and match["emotion"] != emotion:
        problems.append(f"has id {record_id!r} but emotion {emotion!r}: the id must start with "
                        f"'{emotion}-'")
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append("has an empty or missing text: write the prompt in \"text\"")
        return problems
    if text != text.strip() or any(char in text for char in "\n\r\t"):
        problems.append("has leading/trailing whitespace or a line break/tab in its text: remove it")
    reason = english_problem(text)
    if reason is not None:
        problems.append(f"is not plain English: {reason}; rewrite it in English")
    span_reason = _span_problem(text, record.get("span"))
    if span_reason is not None:
        problems.append(span_reason)
    for field, allowed in (("form", FORMS), ("person", PERSONS)):
        if field in record and record[field] not in allowed:
            problems.append(f"has {field} {record[field]!r}: use one of {list(allowed)}")
    if "frame" in record and not (isinstance(record["frame"], str) and _FRAME_PATTERN.match(record["frame"])):
        problems.append(f"has frame {record['frame']!r}: frames are 'f<number>', e.g. 'f001'")
    return problems


def _duplicate_problems(records: list[dict[str, Any]]) -> list[str]:
    problems = []
    first_line: dict[tuple[str, str], int] = {}
    for line, record in enumerate(records, start=1):
        keys = []
        if isinstance(record.get("id"), str):
            keys.append(("id", record["id"]))
        if isinstance(record.get("text"), str) and record["text"].strip():
            # Case and spacing do not make two prompts different to a model's eye.
            keys.append(("text", " ".join(record["text"].lower().split())))
        for key in keys:
            if key in first_line:
                problems.append(f"{_name(record, line)} duplicates the {key[0]} of line {first_line[key]}: "
                                f"give it a new {key[0]} or remove it")
            else:
                first_line[key] = line
    return problems


def _balance_problems(records: list[dict[str, Any]], expected_per_emotion: int | None) -> list[str]:
    lines: dict[str, list[int]] = defaultdict(list)
    for line, record in enumerate(records, start=1):
        if record.get("emotion") in EMOTIONS:
            lines[record["emotion"]].append(line)
    counts = {emotion: len(lines[emotion]) for emotion in EMOTIONS}
    target = expected_per_emotion
    if target is None:
        if len(set(counts.values())) == 1:
            return []
        # The count most emotions share is taken as intended (ties: the larger); never zero, so a
        # missing emotion is reported as missing rather than the others as surplus.
        tally = Counter(counts.values())
        target = max(tally, key=lambda count: (tally[count], count)) or max(counts.values())
    problems = []
    for emotion, count in counts.items():
        if count == target:
            continue
        if count > target:
            extra = lines[emotion][target]
            where = f"{_name(records[extra - 1], extra)} is its first record beyond {target}"
        elif lines[emotion]:
            last = lines[emotion][-1]
            where = f"its last record is {_name(records[last - 1], last)}"
        else:
            where = "it has no record at all"
        problems.append(f"class imbalance: {emotion} has {count} records, expected {target} like the "
                        f"others; {where}: add or remove {emotion} records until every emotion has {target}")
    return problems


def _frame_problems(records: list[dict[str, Any]]) -> list[str]:
    """Matched quadruples: where frames are given, each holds one record per emotion, same form/person."""
    with_frame = [line for line, record in enumerate(records, start=1) if "frame" in record]
    if not with_frame:
        return []
    problems = []
    if len(with_frame) != len(records):
        line = next(line for line, record in enumerate(records, start=1) if "frame" not in record)
        problems.append(f"{_name(records[line - 1], line)} has no frame while other records have one: "
                        f"give every record its frame or none")
    members: dict[str, list[int]] = defaultdict(list)
    for line in with_frame:
        members[str(records[line - 1]["frame"])].append(line)
    for frame, lines in members.items():
        named = ", ".join(_name(records[i - 1], i) for i in lines)
        emotions = [records[line - 1].get("emotion") for line in lines]
        if sorted(map(str, emotions)) != sorted(EMOTIONS):
            problems.append(f"frame {frame!r} ({named}) has emotions {emotions}: a frame holds exactly "
                            f"one record of each of {list(EMOTIONS)}")
        for field in ("form", "person"):
            values = {records[line - 1].get(field) for line in lines}
            if len(values) > 1:
                problems.append(f"frame {frame!r} ({named}) mixes {field} values "
                                f"{sorted(map(str, values))}: a frame shares one {field}")
    return problems


def validate_records(records: Sequence[Mapping[str, Any]] | pd.DataFrame,
                     expected_per_emotion: int | None = None, *, source: str = "records") -> None:
    """Check prompt records against every dataset rule; raise one `DatasetError` listing all problems.

    Args:
        records: dicts with `id`, `emotion`, `text`, `span` (and optionally `form`, `person`,
            `frame`), in file order; or a DataFrame as `load_dataset` returns (`span_start`,
            `span_end` instead of `span`).
        expected_per_emotion: the number of records each emotion must have; None only asks that all
            four emotions have the same number.
        source: what the records are (a file path, a dataset name), named in the error.

    Raises:
        DatasetError: one message with a line per problem, each naming the record by line and id and
            saying what to fix.

    Example:
        >>> validate_records([{"id": "anger-001", "emotion": "anger", "text": "I am furious.",
        ...                    "span": [5, 12]}])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        emoverify.errors.DatasetError: records failed validation with 3 problem(s):
          class imbalance: gratitude has 0 records, expected 1 like the others; it has no record at all: ...
    """
    rows = _as_dicts(records)
    problems = [f"{_name(record, line)} {problem}"
                for line, record in enumerate(rows, start=1) for problem in _record_problems(record)]
    problems += _duplicate_problems(rows)
    problems += _balance_problems(rows, expected_per_emotion)
    problems += _frame_problems(rows)
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise DatasetError(f"{source} failed validation with {len(problems)} problem(s):\n{listed}")


def ordered_emotions(values: Iterable[str]) -> list[str]:
    """The emotions among `values`, in `EMOTIONS` order (unknown ones after, sorted)."""
    present = set(values)
    return [e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS))
