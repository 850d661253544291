"""emoverify.report: the corrections table, the HTML report and the badges, from the claim-status file.

`python -m emoverify.report` (see `build`) reads `reports/claim-status.json`; `render` turns it into
Markdown, HTML and SVG. It may import `harness` (the status vocabulary) and below, never `cli`.
"""

from emoverify.report.build import load_status, main, run_claims, write_report

__all__ = ["load_status", "main", "run_claims", "write_report"]
