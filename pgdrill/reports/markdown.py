"""A `Report` as `report.md`: the same facts as the HTML page in Markdown, user strings
escaped so they stay text, the timeline as `timeline.png` beside it. Pure: the text as a
string."""

from __future__ import annotations

import re

from pgdrill.reports.document import VERDICT_WORDS, Code, Inline, Line, Link, Report, Table

MD_SPECIAL = re.compile(r"([\\`*\[\]<>|])")


def md_text(text: str) -> str:
    """User text that stays text in Markdown: no HTML, links, emphasis or table breaks."""
    return MD_SPECIAL.sub(r"\\\1", str(text).replace("\r", " ").replace("\n", " "))


def md_code(text: str) -> str:
    """A code span that holds any text (backticks and pipes included) on one line."""
    text = str(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_markdown(report: Report, picture: str | None, note: str | None = None) -> str:
    """The report in Markdown: the same facts as the HTML."""
    out = [f"# {md_text(report.title)}", "", f"**{md_text(report.verdict.upper())}**: "
           f"{md_text(VERDICT_WORDS.get(report.verdict, ''))}", ""]
    out += [f"- **why not passed:** {md_text(r)}" for r in report.reasons]
    if report.reasons:
        out.append("")
    out += [f"- {_md_line(f)}" for f in report.facts]
    for section in report.sections:
        out += ["", f"## {md_text(section.title)}"]
        if section.lines:
            out += ["", *(f"- {_md_line(line)}" for line in section.lines)]
        if section.picture:
            out += ["", f"![timeline of the run]({picture})" if picture
                    else md_text(note or "no timeline picture")]
        for table in section.tables:
            out += ["", *_md_table(table)]
    out += ["", "_written by pgdrill from evidence.json and journal.json; regenerate with "
            "`pgdrill report RUN_DIR`_"]
    return "\n".join(out) + "\n"


def _md_inline(part: Inline) -> str:
    if isinstance(part, Code):
        return md_code(part.text)
    if isinstance(part, Link):
        return f"[{md_text(part.text)}](<{part.href}>)"
    return md_text(part)


def _md_line(line: Line) -> str:
    return "".join(_md_inline(p) for p in ((line,) if isinstance(line, str) else line))


def _md_table(table: Table) -> list[str]:
    rows = [f"| {' | '.join(md_text(h) for h in table.header)} |",
            "|" + "---|" * len(table.header)]
    rows += [f"| {' | '.join(_md_inline(c) for c in row)} |" for row in table.rows]
    return rows
