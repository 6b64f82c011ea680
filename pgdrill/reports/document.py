"""The report as data: what `report.html` and `report.md` both say, before any layout.

A `Report` is a title, a verdict with its reasons, the run's facts and `Section`s of lines
(plain text, `Code` and `Link` parts) and `Table`s; `pgdrill.reports.html` and
`pgdrill.reports.markdown` only lay it out, so both files always state the same facts. The
helpers here turn evidence values into the text the report shows (`num`, `secs`, `shown`,
`literal`, `more`). Pure: no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

VERDICT_WORDS = {
    "passed": "every check held: validated restore, recovery where asked, objectives met",
    "failed": "see the reasons below",
    "refused": "the preflight stopped the drill before anything ran",
    "interrupted": "the run was stopped; an interrupted run never counts as passed",
    "running": "partial evidence of a run still in progress",
}
MAX_LISTED = 10  # problems, lost writes, ranges listed before "and N more"


# -- the report as data --------------------------------------------------------------------
@dataclass(frozen=True)
class Code:
    """Text shown as code (queries, identifiers, LSNs)."""

    text: str


@dataclass(frozen=True)
class Link:
    """A link to a file of the run folder (relative)."""

    text: str
    href: str


Inline = str | Code | Link
Line = str | tuple[Inline, ...]


@dataclass(frozen=True)
class Table:
    """A table; `states` colours each row in HTML (`ok`, `bad`, `warn` or None)."""

    header: tuple[str, ...]
    rows: tuple[tuple[Inline, ...], ...]
    states: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class Section:
    """One part of the report: sentences, then tables; `picture` puts the timeline here."""

    key: str
    title: str
    lines: tuple[Line, ...] = ()
    tables: tuple[Table, ...] = ()
    picture: bool = False


@dataclass(frozen=True)
class Report:
    """Everything both files say."""

    title: str
    verdict: str
    reasons: tuple[str, ...]
    facts: tuple[Line, ...]
    sections: tuple[Section, ...] = field(default_factory=tuple)


# -- formatting ----------------------------------------------------------------------------
def num(value) -> str:
    """A measured number as it was measured (at most 3 decimals, no trailing zeros)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    text = f"{round(value, 3):.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def secs(value) -> str:
    return "not measured" if value is None else f"{num(value)} s"


def shown(value) -> str:
    """An evidence value as text: strings as they are, None as "-", the rest as JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def literal(value) -> str:
    """A checked value, typed: "ok" (a string) stays apart from ok or 1."""
    return json.dumps(value, ensure_ascii=False, default=str)


def more(items: list, limit: int = MAX_LISTED) -> tuple[list, str]:
    """The first `limit` items and "(and N more)" when there are more."""
    extra = len(items) - limit
    return items[:limit], (f" (and {extra} more)" if extra > 0 else "")


def key_values(header: tuple[str, str], facts: dict) -> Table:
    return Table(header, tuple((str(k), shown(v)) for k, v in facts.items()))
