"""The parts of a report about the circumstances of the run: the load it ran, the target
(its identity, repairs and facts), the logs saved in the run folder, and every activity of the
journal with its times (the timeline as text). Pure: evidence and journal in, `Section`s out."""

from __future__ import annotations

import re

from pgdrill.reports.document import (
    Code, Inline, Line, Link, Section, Table, key_values, num, secs, shown,
)
from pgdrill.reports.spans import activity_records, run_origin, to_epoch

SECTION_NAMES = {"before": "steady state before", "method": "method",
                 "after": "steady state after", "rollbacks": "rollback"}


def load_section(evidence: dict) -> Section | None:
    load = evidence.get("load")
    if not load:
        return None
    latency = load.get("latency_ms") or {}
    return Section("load", "Load", (
        f"{shown(load.get('users'))} users for {secs(load.get('duration_seconds'))}: "
        f"{shown(load.get('requests'))} requests, {shown(load.get('failures'))} failed",
        f"{shown(load.get('writes_acknowledged'))} writes acknowledged, "
        f"{shown(load.get('writes_per_second'))} writes/s",
        f"latency p50/p95/p99: {shown(latency.get('p50'))}/{shown(latency.get('p95'))}/"
        f"{shown(latency.get('p99'))} ms (from {shown(load.get('stats_source'))})",
    ))


def target_section(evidence: dict) -> Section:
    lines: list[Line] = []
    preflight = evidence.get("preflight") or {}
    if preflight.get("cluster_identity"):
        lines.append(("cluster identity (PostgreSQL system identifier): ",
                      Code(str(preflight["cluster_identity"]))))
    repairs = preflight.get("repairs") or []
    lines += [f"repaired in place before the drill: {r}" for r in repairs]
    if not repairs and preflight:
        lines.append("nothing needed repair before the drill")
    facts = evidence.get("target_facts")
    tables = (key_values(("target fact", "value"), facts),) if facts else ()
    if not facts:
        lines.append("no facts about the target were recorded")
    return Section("target", "Target", tuple(lines), tables)


def logs_section(evidence: dict) -> Section:
    logs = [str(p) for p in evidence.get("logs") or []]
    if not logs:
        return Section("logs", "Logs saved", ("no logs were saved in the run folder",))
    return Section("logs", "Logs saved", tuple(
        (_link(path),) for path in logs))


def _link(path: str) -> Inline:
    """A relative link into the run folder's logs/, or plain text for anything else."""
    if re.fullmatch(r"logs/[A-Za-z0-9][A-Za-z0-9._-]*", path):
        return Link(path, path)
    return Code(path)


def activities_section(journal: dict) -> Section:
    """Every activity of the journal with its times: the timeline as text."""
    records = activity_records(journal)
    origin = run_origin({}, journal)
    rows, states = [], []
    for section, record in records:
        start, end = (to_epoch(record.get(k)) for k in ("start", "end"))
        status = str(record.get("status") or "-")
        name = str((record.get("activity") or {}).get("name") or "?")
        rows.append((SECTION_NAMES.get(section, section), name,
                     "-" if start is None or origin is None else num(start - origin),
                     "-" if start is None or end is None else num(end - start), status))
        states.append({"succeeded": "ok", "failed": "bad", "interrupted": "warn"}.get(status))
    if not rows:
        return Section("activities", "Activities", ("no activity ran",))
    return Section("activities", "Activities", (), (Table(
        ("phase", "activity", "started (s)", "took (s)", "status"), tuple(rows),
        tuple(states)),))
