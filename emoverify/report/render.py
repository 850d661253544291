"""Rendering of the claim report: the corrections table (Markdown, HTML) and one badge per claim.

The page carries everything inline (style, figures as base64 PNG), so it can be attached to a CI run or
mailed as one file. Badges are shields-style two-part SVGs coloured by what the verdict means for the
paper: green where the claim (or the retraction) stands, red where it does not, grey without weights,
orange on error.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from emoverify.harness.evaluation import summary_line
from emoverify.harness.expectations import format_interval, format_value
from emoverify.harness.records import VERDICT_MEANINGS, VERDICTS, StatusDocument, StatusRecord, Verdict
from emoverify.paper import PAPER_CLAIM_IDS

__all__ = ["BADGE_COLORS", "HEADERS", "NOT_DIAGNOSTIC", "Row", "badge_color", "badge_files", "badge_svg",
           "build_rows", "measured_words", "null_model_words", "render_html", "render_markdown", "spread_words"]

HEADERS = ("ID", "§", "Rev.1 said", "Rev.2 says", "measured", "null model", "verdict", "over the open choices",
           "protocol note")
NOT_DIAGNOSTIC = "not diagnostic"


@dataclass(frozen=True)
class Row:
    """One row of the corrections table: a claim, its Rev.1 statement, or both.

    Attributes:
        id: the row's ID (the Rev.2 id, or the Rev.1 entry's own id when it stands alone).
        rev2: the status record of the Rev.2 entry, if any.
        rev1: the status record of the Rev.1 entry, if any.
    """

    id: str
    rev2: StatusRecord | None
    rev1: StatusRecord | None

    @property
    def records(self) -> list[StatusRecord]:
        return [r for r in (self.rev2, self.rev1) if r is not None]

    @property
    def not_diagnostic(self) -> bool:
        return any(r.null_model is not None and r.null_model.holds for r in self.records)

    def cells(self) -> list[str]:
        """The table cells, in `HEADERS` order, as plain text."""
        first = self.records[0]
        verdicts = [_tagged(self, r, _verdict_words(r)) for r in self.records]
        return [
            self.id,
            first.section or "",
            (self.rev1.statement or "—") if self.rev1 else "—",
            (self.rev2.statement or "—") if self.rev2 else "—",
            _joined(self, measured_words),
            _joined(self, null_model_words),
            "; ".join(verdicts),
            _joined(self, fragility_words),
            _joined(self, lambda r: r.protocol or ""),
        ]


def build_rows(records: Sequence[StatusRecord]) -> list[Row]:
    """Pair each `X` with `X.rev1` and order the rows as paper/CLAIMS.md does."""
    groups: dict[str, dict[str, StatusRecord]] = {}
    for record in records:
        if record.id is None:  # an entry too broken to have an id: a row of its own
            key, revision = record.anchor, "rev2"
        else:
            key, revision = record.id.removesuffix(".rev1"), record.revision or "rev2"
        group = groups.setdefault(key, {})
        if revision in group:  # a duplicate id (an error entry): its own row, after the valid one
            key, group = f"{record.id} ({record.file}:{record.line})", {}
            groups[key] = group
        group[revision] = record

    def order(key: str) -> tuple[int, str]:
        base = key.split(" ", 1)[0]
        return (PAPER_CLAIM_IDS.index(base) if base in PAPER_CLAIM_IDS else len(PAPER_CLAIM_IDS), key)

    rows = []
    for key in sorted(groups, key=order):
        group = groups[key]
        row_id = key if "rev2" in group or group["rev1"].id is None else group["rev1"].id
        rows.append(Row(row_id, group.get("rev2"), group.get("rev1")))
    return rows


def measured_words(record: StatusRecord) -> str:
    """The measured value with its CI, marked when it comes from the stand-ins."""
    if not record.measured_anything:
        return "—"
    text = record.label or format_value(record.measured)
    interval = format_interval(record.interval)
    if interval:
        text += f" ({interval})"
    if record.model_source == "standin":
        text += " [stand-in]"
    return text


def null_model_words(record: StatusRecord) -> str:
    """The null model over its seeds: the range of each measured number and how many seeds reach the figure,
    e.g. `0.29–0.41 over 5 seeds (2 reach the figure)`; a record from before seeds, its one measurement."""
    control = record.null_model
    if control is None:
        return "—"
    if control.error is not None:
        return f"{control.status}: {control.error}"
    runs = control.measured_seeds
    if not runs:
        reaches = "reaches the figure too" if control.holds else "does not reach the figure"
        return f"{control.label} ({reaches})"
    reach = sum(bool(run.holds) for run in runs)
    text = (f"{spread_words([run.value for run in runs])} over {len(runs)} seed{'s' if len(runs) != 1 else ''} "
            f"({reach} reach{'es' if reach == 1 else ''} the figure)")
    failed = len(control.seeds) - len(runs)
    return text + (f"; {failed} more seed{'s' if failed != 1 else ''} did not measure" if failed else "")


def spread_words(values: Sequence[object]) -> str:
    """Several measurements of one figure in words: each number's range (`0.29–0.41`), element by element for
    lists (`0.1–0.2 / 0.3–0.5`); anything else as its distinct values."""
    rows = [list(v) if isinstance(v, (list, tuple)) else [v] for v in values]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for row in rows for x in row)
    if not rows or not numeric or len({len(row) for row in rows}) != 1:
        distinct = list(dict.fromkeys(format_value(v) for v in values))
        return ", ".join(distinct)

    def span(column: list[float]) -> str:
        lo, hi = min(column), max(column)
        return f"{lo:.3g}" if lo == hi else f"{lo:.3g}–{hi:.3g}"

    return " / ".join(span([float(row[i]) for row in rows]) for i in range(len(rows[0])))


def fragility_words(record: StatusRecord) -> str:
    """`robust`, `fragile: kind=centred, layer=6`, or `—` when not assessed."""
    fragility = record.fragility
    if fragility.verdict == "not assessed":
        return "—"
    return "robust" if fragility.verdict == "robust" else f"fragile: {', '.join(fragility.flips)}"


def _verdict_words(record: StatusRecord) -> str:
    if record.status == "error":
        return f"error ({record.reason})"
    return record.verdict or record.status


def _tagged(row: Row, record: StatusRecord, text: str) -> str:
    # In a paired row, say which statement a cell is about.
    if row.rev1 is not None and row.rev2 is not None:
        return f"{'Rev.1' if record is row.rev1 else 'Rev.2'}: {text}"
    return text


def _joined(row: Row, words: Callable[[StatusRecord], str]) -> str:
    texts = [words(r) for r in row.records]
    if len(texts) == 2 and texts[0] == texts[1]:
        return texts[0]
    return "; ".join(_tagged(row, r, t) for r, t in zip(row.records, texts, strict=True))


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(document: StatusDocument, notes: Sequence[str] = ()) -> str:
    """`corrections.md`: the table, then the summary line."""
    rows = build_rows(document.claims)
    # No number parsing: a section "4.10" must not become 4.1, nor be aligned as a number.
    table = tabulate([[_markdown_cell(c) for c in row.cells()] for row in rows], headers=HEADERS,
                     tablefmt="github", disable_numparse=True)
    source = document.model_source
    lines = ["# Corrections: Rev.1 said → Rev.2 says → measured", "",
             f"Claim status of {document.generated}, emoverify {document.emoverify_version}, models: {source}."]
    if source == "standin":
        lines += ["", "**Every measurement below is on the random-init stand-ins, not the paper's models: "
                      "it exercises the pipeline and is no verdict on the paper.**"]
    lines += [line for note in notes for line in ("", f"**{note}**")]
    lines += ["", table, "", summary_line(document.verdicts()), "", "Verdicts:", ""]
    lines += [f"- {line}" for line in legend_lines()] + [""]
    return "\n".join(lines)


# By verdict: green where the claim (or the retraction) stands, yellow where the measurement cannot tell, red
# where it does not stand, grey without weights, orange on error.
BADGE_COLORS: dict[Verdict, str] = {
    "verified": "#4c1", "retraction confirmed": "#4c1", "not diagnostic": "#dfb317",
    "Rev.2 claim refuted": "#e05d44", "Rev.1 was right after all": "#e05d44", "needs weights": "#9f9f9f",
    "error": "#fe7d37",
}
_CELL_CLASS: dict[Verdict, str] = {
    "verified": "stands", "retraction confirmed": "stands", "not diagnostic": "undecided",
    "Rev.2 claim refuted": "falls", "Rev.1 was right after all": "falls", "needs weights": "skipped",
    "error": "error",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 90em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td.stands { background: #e6f4e0; } td.falls { background: #fbe3e0; } td.undecided { background: #fbf3c8; }
td.skipped { background: #eee; } td.error { background: #fdebd9; }
section { border-top: 1px solid #ccc; margin-top: 1.5em; }
dt { font-weight: bold; margin-top: 0.4em; } dt.stands { color: #2a7d12; } dt.falls { color: #b3261e; }
pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; }
img { max-width: 45em; display: block; margin: 0.5em 0; }
.warning { background: #fff3cd; padding: 0.5em; }
"""


def badge_color(record: StatusRecord) -> str:
    """The colour of the record's verdict (`BADGE_COLORS`)."""
    return BADGE_COLORS[record.kind]


def _text_width(text: str) -> int:
    # Verdana 11px averages about 6.5px a character; shields.io measures, a badge only needs to fit.
    return int(len(text) * 6.5) + 10


def badge_svg(label: str, message: str, color: str) -> str:
    """A shields-style badge: grey `label` on the left, `message` on `color` on the right."""
    left, right = _text_width(label), _text_width(message)
    total = left + right
    label, message = html.escape(label), html.escape(message)
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" \
aria-label="{label}: {message}">
  <title>{label}: {message}</title>
  <linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>\
<stop offset="1" stop-opacity=".1"/></linearGradient>
  <clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>
  <g clip-path="url(#r)">
    <rect width="{left}" height="20" fill="#555"/>
    <rect x="{left}" width="{right}" height="20" fill="{color}"/>
    <rect width="{total}" height="20" fill="url(#s)"/>
  </g>
  <g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
    <text x="{left / 2}" y="14">{label}</text>
    <text x="{left + right / 2}" y="14">{message}</text>
  </g>
</svg>
"""


def badge_files(document: StatusDocument) -> dict[str, str]:
    """`<id>.svg` -> badge, one per claim id (the first record of an id wins over a later duplicate)."""
    badges: dict[str, str] = {}
    for record in document.claims:
        claim_id = record.id
        if claim_id is None or f"{claim_id}.svg" in badges:
            continue
        message = record.verdict or record.status
        if record.model_source == "standin":
            message += " · stand-in"
        badges[f"{claim_id}.svg"] = badge_svg(claim_id, message, badge_color(record))
    return badges


def _verdict_class(row: Row) -> str:
    """The table cell's class: the worst of the row's verdicts (error, falls, undecided, skipped, stands)."""
    classes = [_CELL_CLASS[r.kind] for r in row.records]
    for cls in ("error", "falls", "undecided", "skipped"):
        if cls in classes:
            return cls
    return "stands"


def legend_lines() -> list[str]:
    """What each verdict means, one line each, in the summary line's order."""
    return [f"{kind}: {VERDICT_MEANINGS[kind]}" for kind in VERDICTS]


def _table(rows: list[Row]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    body = []
    for row in rows:
        cells = [html.escape(c) for c in row.cells()]
        cells[0] = f'<a href="#{html.escape(row.id)}">{cells[0]}</a>'
        cells[6] = f'<td class="{_verdict_class(row)}">{cells[6]}</td>'
        body.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _figure(path: str, status_dir: Path) -> str:
    file = status_dir / path
    if not file.is_file():
        return f"<p>figure not found: {html.escape(path)}</p>"
    data = base64.b64encode(file.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path)}" src="data:image/png;base64,{data}">'


def _details(record: StatusRecord, status_dir: Path) -> str:
    claim_id = record.anchor
    fields = [
        ("verdict", record.verdict or record.status),
        ("statement", record.statement),
        ("where", f"{record.file}:{record.line} (§{record.section}, {record.revision})"),
        ("expected", record.expected_words or json.dumps(record.expected)),
        ("measured", measured_words(record)),
        ("95% CI", format_interval(record.interval)),
        ("reason", record.reason),
        ("protocol", record.protocol),
        ("requires", ", ".join(record.requires) or "no weights"),
        ("null model", null_model_words(record)),
        ("over the open choices", f"{fragility_words(record)} ({record.fragility.reason})"
         if record.fragility.verdict != "not assessed" else ""),
        ("seconds", record.seconds),
        ("computed", f"{record.generated or 'unknown time'} by emoverify {record.code_version or 'unknown code'}"),
    ]
    items = "".join(f"<dt>{name}</dt><dd>{html.escape(str(value))}</dd>" for name, value in fields
                    if value not in (None, ""))
    blocks = [f"<dt>{name}</dt><dd><pre>{html.escape(json.dumps(value, indent=2))}</pre></dd>"
              for name, value in (("details", record.details), ("provenance", record.provenance),
                                  ("alternatives", list(record.fragility.checked))) if value]
    if record.traceback:
        blocks.append(f"<dt>traceback</dt><dd><pre>{html.escape(record.traceback)}</pre></dd>")
    figures = list(record.figures) + list(record.null_model.figures if record.null_model else ())
    images = "".join(_figure(path, status_dir) for path in figures)
    return (f'<section id="{html.escape(claim_id)}">\n<h2>{html.escape(claim_id)}</h2>\n'
            f"<dl>{items}{''.join(blocks)}</dl>\n{images}\n</section>")


def render_html(document: StatusDocument, rows: list[Row], status_dir: Path, notes: Sequence[str] = ()) -> str:
    """`index.html`: the corrections table, the summary, then each claim's details and figures."""
    source = document.model_source
    warning = ('<p class="warning">Every measurement is on the random-init stand-ins, not the paper\'s models: '
               "it exercises the pipeline and is no verdict on the paper.</p>\n" if source == "standin" else "")
    warning += "".join(f'<p class="warning">{html.escape(note)}</p>\n' for note in notes)
    summary = summary_line(document.verdicts())
    legend = "".join(f'<dt class="{_CELL_CLASS[kind]}">{html.escape(kind)}</dt>'
                     f"<dd>{html.escape(VERDICT_MEANINGS[kind])}</dd>" for kind in VERDICTS)
    details = "\n".join(_details(record, status_dir) for row in rows for record in row.records)
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>emoverify: corrections</title><style>{_STYLE}</style></head>
<body>
<h1>Corrections: Rev.1 said → Rev.2 says → measured</h1>
<p>Claim status of {html.escape(document.generated)}, emoverify \
{html.escape(document.emoverify_version)}, models: {html.escape(source)}.</p>
{warning}{_table(rows)}
<p><strong>{html.escape(summary)}</strong></p>
<h2>Verdicts</h2>
<dl>{legend}</dl>
<h1>Claims</h1>
{details}
</body>
</html>
"""
