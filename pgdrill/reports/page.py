"""A `Report` as `report.html`: one self-contained page — inline CSS, the timeline embedded
as a `data:` URI, no script, nothing fetched. Every string taken from the evidence (check
names, queries, messages come from users) is HTML-escaped at the one place text is written
out. Pure: the page as a string."""

from __future__ import annotations

import base64
import html

from pgdrill.reports.document import VERDICT_WORDS, Code, Inline, Line, Link, Report, Table
from pgdrill.reports.timeline import HEIGHT, WIDTH

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 color:#1d1d1f;margin:0;background:#f6f6f8}
main{max-width:1240px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:4px 0 12px}h2{font-size:18px;margin:28px 0 8px;
 border-bottom:1px solid #ddd;padding-bottom:4px}
.banner{border-radius:8px;padding:14px 18px;color:#fff;margin:8px 0 16px}
.banner strong{font-size:24px;letter-spacing:.5px;margin-right:10px}
.banner ul{margin:8px 0 0;padding-left:22px}
.passed{background:#1b7f3b}.failed{background:#b00020}.refused{background:#9a6a00}
.interrupted{background:#5b3f8c}.running,.unknown{background:#3a5a80}
ul.facts{padding-left:20px;margin:6px 0}
table{border-collapse:collapse;margin:8px 0;background:#fff;font-size:14px;max-width:100%}
th,td{border:1px solid #d8d8dc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#ececf0}td:first-child{white-space:nowrap}
tr.ok td:first-child{border-left:4px solid #1b7f3b}
tr.bad td{background:#fdecee}tr.bad td:first-child{border-left:4px solid #b00020}
tr.warn td{background:#fff6e0}tr.warn td:first-child{border-left:4px solid #9a6a00}
code{font:13px/1.3 ui-monospace,"DejaVu Sans Mono",monospace;white-space:pre-wrap;
 word-break:break-word;background:#f0f0f3;padding:0 3px;border-radius:3px}
img.timeline{width:100%;max-width:1200px;height:auto;border:1px solid #ddd;background:#fff}
footer{color:#666;font-size:12px;margin-top:30px}
"""


def render_html(report: Report, png: bytes | None, note: str | None = None) -> str:
    """The report as one self-contained HTML page (no script, nothing fetched)."""
    e = html.escape
    verdict = report.verdict if report.verdict in VERDICT_WORDS else "unknown"
    reasons = "".join(f"<li>{e(r)}</li>" for r in report.reasons)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(report.title)}: {e(report.verdict.upper())}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>{e(report.title)}</h1>",
        f'<div class="banner {verdict}" id="verdict"><strong>{e(report.verdict.upper())}'
        f"</strong> {e(VERDICT_WORDS.get(report.verdict, ''))}"
        + (f"<ul>{reasons}</ul>" if reasons else "") + "</div>",
        '<ul class="facts">' + "".join(f"<li>{_html_line(f)}</li>" for f in report.facts)
        + "</ul>",
    ]
    for section in report.sections:
        parts.append(f'<section id="{e(section.key)}"><h2>{e(section.title)}</h2>')
        if section.lines:
            parts.append("<ul>" + "".join(f"<li>{_html_line(line)}</li>"
                                          for line in section.lines) + "</ul>")
        if section.picture:
            if png:
                data = base64.b64encode(png).decode("ascii")
                parts.append(f'<img class="timeline" src="data:image/png;base64,{data}" '
                             f'width="{WIDTH}" height="{HEIGHT}" '
                             f'alt="timeline of the run: phases, fault and load">')
            else:
                parts.append(f"<p>{e(note or 'no timeline picture')}</p>")
        parts.extend(_html_table(t) for t in section.tables)
        parts.append("</section>")
    parts.append("<footer>written by pgdrill from evidence.json and journal.json; "
                 "regenerate with <code>pgdrill report RUN_DIR</code></footer>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _html_inline(part: Inline) -> str:
    if isinstance(part, Code):
        return f"<code>{html.escape(part.text)}</code>"
    if isinstance(part, Link):
        return f'<a href="{html.escape(part.href, quote=True)}">{html.escape(part.text)}</a>'
    return html.escape(str(part))


def _html_line(line: Line) -> str:
    return "".join(_html_inline(p) for p in ((line,) if isinstance(line, str) else line))


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for i, row in enumerate(table.rows):
        state = table.states[i] if i < len(table.states) else None
        cls = f' class="{state}"' if state else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_html_inline(c)}</td>" for c in row)
                    + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
