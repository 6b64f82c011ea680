"""Reports of one drill for people: writes `report.html`, `report.md` and `timeline.png`
into the run folder — the only part of them with I/O.

`pgdrill.reports.facts.build_report` turns the evidence and the Chaos Toolkit journal into a
`Report` (plain data, pgdrill.reports.document); `pgdrill.reports.html.render_html` and
`pgdrill.reports.markdown.render_markdown` only lay that data out, so both files always state
the same facts; `pgdrill.reports.timeline` draws the picture. Nothing of the run folder is read
here except the ledger receipt (and, for the picture, the load's files), so credential values
never appear. The names other code uses (`write_reports`, `build_report`, `render_html`,
`render_markdown`, `GUARDRAILS`, `md_text`, `md_code`) are importable from here."""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path

from pgdrill.core.files import write_atomically
from pgdrill.reports import timeline
from pgdrill.reports.facts import build_report
from pgdrill.reports.guardrails import GUARDRAILS
from pgdrill.reports.page import render_html
from pgdrill.reports.markdown import md_code, md_text, render_markdown

__all__ = ["GUARDRAILS", "HTML_FILE", "MARKDOWN_FILE", "PICTURE_FILE", "RECEIPT_FILE",
           "build_report", "html", "md_code", "md_text", "render_html", "render_markdown",
           "write_reports"]  # html: the standard library's escaping, which the page uses

HTML_FILE, MARKDOWN_FILE, PICTURE_FILE = "report.html", "report.md", "timeline.png"
RECEIPT_FILE = "ledger-receipt.json"


def write_reports(run_dir: Path, evidence: dict, journal: dict) -> list[Path]:
    """Write `report.html`, `report.md` and `timeline.png` into the run folder; returns
    their paths. Reads only the ledger receipt besides what it is given (and the load's
    files, for the picture). A timeline that cannot be drawn does not stop the reports:
    they say why instead."""
    run_dir = Path(run_dir)
    receipt = _read_json(run_dir / RECEIPT_FILE)
    report = build_report(evidence, journal, run_dir.name, receipt)
    try:
        png, note = timeline.draw_timeline(evidence, journal, run_dir), None
    except Exception as exc:  # noqa: BLE001 - the evidence report matters more than a picture
        png, note = None, f"the timeline could not be drawn: {type(exc).__name__}: {exc}"
    written = [
        write_atomically(run_dir / HTML_FILE, render_html(report, png, note)),
        write_atomically(run_dir / MARKDOWN_FILE,
                         render_markdown(report, PICTURE_FILE if png else None, note)),
    ]
    if png:
        written.append(_write_bytes(run_dir / PICTURE_FILE, png))
    return written


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_bytes(path: Path, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
