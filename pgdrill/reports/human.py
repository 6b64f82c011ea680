"""Reports of one drill for people: `report.html` and `report.md`, with the same facts.

`build_report` turns the evidence and the Chaos Toolkit journal into a `Report` — plain data:
the verdict with its reasons, the four guardrails of README, the timeline picture, RTO per
phase and RPO against their objectives, the failover, the checklist and pg_amcheck,
fingerprints, the backup and the recovery position, the target, the logs and the run's
ledger line. `render_html` and `render_markdown` only lay that data out, so both files always
state the same facts:

- `report.html` is self-contained: inline CSS, the timeline embedded as a `data:` URI, no
  script, nothing fetched. Every string taken from the evidence (check names, queries,
  messages come from users) is HTML-escaped at the one place text is written out.
- `report.md` says the same in Markdown (user strings escaped so they stay text), with the
  timeline as `timeline.png` beside it.

Credential values never appear: the evidence holds none (only the SOPS file, its recipients
and key names), and nothing else of the run folder is read except the ledger receipt.
`write_reports` is the only function with I/O."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pgdrill.files import write_atomically
from pgdrill.reports import timeline

HTML_FILE, MARKDOWN_FILE, PICTURE_FILE = "report.html", "report.md", "timeline.png"
RECEIPT_FILE = "ledger-receipt.json"
GUARDRAILS = ("1. No backup without restore", "2. S3 credentials from SOPS/age files",
              "3. Non-prod first", "4. Evidence-first")
VERDICT_WORDS = {
    "passed": "every check held: validated restore, recovery where asked, objectives met",
    "failed": "see the reasons below",
    "refused": "the preflight stopped the drill before anything ran",
    "interrupted": "the run was stopped; an interrupted run never counts as passed",
    "running": "partial evidence of a run still in progress",
}
NEUTRAL_PHASES = ("restore", "ready", "validate")
SECTION_NAMES = {"before": "steady state before", "method": "method",
                 "after": "steady state after", "rollbacks": "rollback"}
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


# -- building ------------------------------------------------------------------------------
def build_report(evidence: dict, journal: dict, run_id: str,
                 receipt: dict | None = None) -> Report:
    """The report of one run, from its evidence, journal and (optional) ledger receipt."""
    verdict = str(evidence.get("verdict") or "unknown")
    title = evidence.get("title") or evidence.get("experiment") or run_id
    sections = [
        guardrails_section(evidence),
        Section("timeline", "Timeline", (
            "Phases over time (seconds since the run started), the fault instant, and the "
            "load's acknowledged writes per second with Locust's failed requests.",),
            picture=True),
        rto_section(evidence),
        rpo_section(evidence),
        failover_section(evidence),
        verification_section(evidence),
        fingerprints_section(evidence),
        backup_section(evidence),
        repair_section(evidence),
        load_section(evidence),
        target_section(evidence),
        logs_section(evidence),
        activities_section(journal),
    ]
    return Report(title=str(title), verdict=verdict,
                  reasons=tuple(str(r) for r in evidence.get("reasons") or []),
                  facts=run_facts(evidence, run_id, receipt),
                  sections=tuple(s for s in sections if s is not None))


def run_facts(evidence: dict, run_id: str, receipt: dict | None) -> tuple[Line, ...]:
    facts: list[Line] = [
        ("experiment ", Code(str(evidence.get("experiment"))), f" on target "
         f"{shown(evidence.get('target'))}, environment {shown(evidence.get('environment'))}, "
         f"cluster {shown(evidence.get('cluster'))}"),
        f"ran {shown(evidence.get('started_at'))} to {shown(evidence.get('ended_at'))} "
        f"({secs(evidence.get('duration_seconds'))})",
        ("run ", Code(run_id)),
    ]
    line = _receipt_line(receipt)
    if line:
        facts.append(("ledger line ", Code(str(line.get("seq"))),
                      " of ledger.jsonl in the reports folder, sha256 ",
                      Code(str(line.get("line_sha256") or "?")[:16])))
    else:
        facts.append("not recorded in the ledger (no ledger receipt in the run folder)")
    interruption = evidence.get("interruption")
    if interruption and evidence.get("verdict") == "interrupted":
        facts.append(f"interrupted during {shown(interruption.get('during'))}; last completed "
                     f"activity: {shown(interruption.get('last_completed_activity'))}"
                     + ("; found dead by a later command" if interruption.get("found_dead")
                        else ""))
    if evidence.get("partial"):
        facts.append("partial evidence: the run had not finished when this was written")
    return tuple(facts)


def _receipt_line(receipt: dict | None) -> dict | None:
    if not isinstance(receipt, dict):
        return None
    try:
        line = json.loads(receipt.get("line") or "")
    except (TypeError, ValueError):
        return None
    return line if isinstance(line, dict) else None


def guardrails_section(evidence: dict) -> Section:
    """The four guardrails of README and what this run's evidence says about each."""
    rows = [_no_backup_without_restore(evidence), _credentials_from_sops(evidence),
            _nonprod_first(evidence), _evidence_first(evidence)]
    return Section("guardrails", "Guardrails", tables=(Table(
        ("guardrail", "status", "evidence"),
        tuple((name, status, detail) for name, (_, status, detail) in zip(GUARDRAILS, rows)),
        tuple(state for state, _, _ in rows)),))


def _no_backup_without_restore(evidence: dict) -> tuple[str | None, str, str]:
    backup = evidence.get("backup") or {}
    if not backup.get("id"):
        return None, "no restore", "this run restored no backup, so it validates none"
    if backup.get("validated"):
        return ("ok", "validated", f"backup {backup['id']} was restored and its copy passed "
                "every validation query and pg_amcheck")
    if evidence.get("restore"):
        return ("bad", "not validated", f"backup {backup['id']} was restored but the run did "
                "not pass, so it does not count as validated")
    return "bad", "not validated", f"backup {backup['id']} was chosen but never restored"


def _credentials_from_sops(evidence: dict) -> tuple[str | None, str, str]:
    cred = evidence.get("credentials") or {}
    if cred.get("file"):
        recipients = ", ".join(str(r) for r in cred.get("recipients") or []) or "none listed"
        keys = ", ".join(str(k) for k in cred.get("keys") or []) or "none listed"
        return ("ok", "from SOPS/age", f"decrypted from {cred['file']} (MAC verified), "
                f"recipients {recipients}; keys {keys} (names only: values are never recorded)")
    refusal = _refusal_about(evidence, ("credential", "sops", "age key", "plaintext"))
    if refusal:
        return "warn", "refused", refusal
    return None, "not loaded", "the run ended before the target's credentials were needed"


def _nonprod_first(evidence: dict) -> tuple[str | None, str, str]:
    environment = str(evidence.get("environment") or "?")
    refusal = _refusal_about(evidence, ("production", "environment", "staging"))
    if refusal:
        return "warn", "refused", refusal
    if environment in ("production", "prod"):
        return ("ok", "production allowed", "the preflight found a passing staging run of this "
                "experiment on the same kind of target in the verified ledger, and "
                "allow_production was set")
    return ("ok", "non-production", f"environment {environment} on target "
            f"{evidence.get('target')}: nothing in production was touched")


def _evidence_first(evidence: dict) -> tuple[str | None, str, str]:
    verdict = evidence.get("verdict")
    validation = evidence.get("validation") or []
    passed = sum(1 for v in validation if v.get("passed"))
    if verdict == "passed":
        detail = f"{passed} of {len(validation)} validation queries passed (pg_amcheck included)"
        if (evidence.get("restore") or {}).get("position_ok"):
            detail += "; recovery provably stopped where asked"
        met = [n.upper() for n, o in (evidence.get("objectives") or {}).items() if o.get("met")]
        if met:
            detail += f"; {' and '.join(met)} objectives met"
        return "ok", "passed after validation", detail + "; then the verdict"
    if verdict == "refused":
        return None, "nothing to judge", "nothing ran, nothing was declared successful"
    if verdict == "running":
        return None, "in progress", "no verdict yet"
    reasons = evidence.get("reasons") or []
    checks = (f"{passed} of {len(validation)} validation queries passed" if validation
              else "no validation query ran")
    return ("bad", f"not passed ({verdict})", f"{checks}; {len(reasons)} "
            f"reason{'s' if len(reasons) != 1 else ''} the verdict is not passed (above)")


def _refusal_about(evidence: dict, words: tuple[str, ...]) -> str | None:
    if evidence.get("verdict") != "refused":
        return None
    for reason in evidence.get("reasons") or []:
        if any(word in str(reason).lower() for word in words):
            return str(reason)
    return None


def rto_section(evidence: dict) -> Section:
    """Time to a proven recovery, per phase, against the objective."""
    restore = evidence.get("restore") or {}
    lines: list[Line] = [_objective_line("rto", evidence)]
    tables = []
    if not restore:
        lines.append("no restore in this run")
    else:
        phases = restore.get("phases") or {}
        order = [k for k in NEUTRAL_PHASES if k in phases] + [
            k for k in phases if k not in NEUTRAL_PHASES]
        rows = [(name, num(phases[name])) for name in order]
        rto = restore.get("rto_seconds")
        rows.append(("RTO (time to a proven recovery)",
                     "not finished" if rto is None else num(rto)))
        tables.append(Table(("phase", "seconds"), tuple(rows)))
        if restore.get("rto_seconds") is None:
            lines.append(("the restore of backup ", Code(str(restore.get("backup_id"))),
                          " did not finish"))
        details = timeline.ordered_subphases(restore.get("phase_details") or {})
        if details:
            tables.append(Table(("the target's own phases (restore + ready)", "seconds"),
                                tuple((name, num(value)) for name, value in details)))
    return Section("rto", "RTO: time to a proven recovery", tuple(lines), tuple(tables))


def _objective_line(name: str, evidence: dict) -> str:
    objective = (evidence.get("objectives") or {}).get(name)
    if not objective:
        return f"no {name.upper()} objective declared"
    measured = objective.get("measured_seconds")
    head = (f"{name.upper()} {secs(measured)} against the objective of "
            f"{secs(objective.get('objective_seconds'))}: ")
    met = objective.get("met")
    if met is True:
        return head + "met"
    if met is False:
        return head + f"MISSED by {secs(objective.get('exceeded_by_seconds'))}"
    return head + "not measured in this run"


def rpo_section(evidence: dict) -> Section:
    """Lost acknowledged writes: on the restored copy (RPO) and after the failover."""
    lines: list[Line] = [_objective_line("rpo", evidence)]
    rpo = evidence.get("rpo")
    if rpo:
        lines.append(f"RPO {secs(rpo.get('rpo_seconds'))}: {rpo.get('lost_writes')} of "
                     f"{rpo.get('acknowledged_writes')} acknowledged writes lost on the "
                     "restored copy")
        lines.append(f"reference: {shown(rpo.get('reference_kind'))} "
                     f"{shown(rpo.get('reference'))}; {rpo.get('expected_absent')} writes "
                     "acknowledged after it are expected absent"
                     + (f", {rpo['present_after_reference']} present after it"
                        if rpo.get("present_after_reference") is not None else ""))
        lines.extend(_lost_examples(rpo))
    else:
        lines.append("no lost-write check on a restored copy in this run")
    failover = evidence.get("failover") or {}
    if failover.get("lost_writes") is not None:
        lines.append(f"after the failover: {failover['lost_writes']} of "
                     f"{failover.get('acknowledged_writes')} acknowledged writes lost on the "
                     "healed primary")
        lines.extend(_lost_examples(failover))
    return Section("rpo", "RPO and lost writes", tuple(lines))


def _lost_examples(report: dict) -> list[Line]:
    examples, rest = more([str(e) for e in report.get("lost_examples") or []])
    if not examples:
        return []
    parts: list[Inline] = ["lost, e.g. "]
    for i, example in enumerate(examples):
        parts += ([", "] if i else []) + [Code(example)]
    return [tuple(parts + ([rest] if rest else []))]


def failover_section(evidence: dict) -> Section:
    """The fault, the client's and (CNPG) the operator's view of the failover."""
    fault = evidence.get("fault") or {}
    failover = evidence.get("failover") or {}
    lines: list[Line] = []
    tables = []
    if not fault:
        lines.append("no fault was injected in this run")
    else:
        lines.append(f"fault: {shown(fault.get('kind'))} on {shown(fault.get('instance'))} "
                     f"({shown(fault.get('role'))}) at {shown(fault.get('at'))}")
    if failover.get("seconds") is not None:
        lines.append(f"writable primary {shown(failover.get('primary'))} after "
                     f"{secs(failover['seconds'])} (measured from the "
                     f"{shown(failover.get('measured_from') or 'fault')})")
    if failover.get("healthy_seconds") is not None:
        lines.append(f"every instance healthy after {secs(failover['healthy_seconds'])}")
    outage = failover.get("client_write_outage")
    if outage:
        lines.append(f"the load's writes stopped for {secs(outage.get('seconds'))}: last "
                     f"acknowledged {shown(outage.get('last_ack_before'))}, next "
                     f"{shown(outage.get('first_ack_after'))} (client side)")
    elif fault and failover:
        lines.append("no client-side write outage measured (no load ran)")
    target = failover.get("target") or {}
    operator = target.get("operator") or {}
    if operator:
        lines.append(f"the operator recorded the failover to "
                     f"{shown(operator.get('current_primary'))} in "
                     f"{secs(operator.get('seconds'))} (targetPrimaryTimestamp "
                     f"{shown(operator.get('target_primary_timestamp'))} to "
                     f"currentPrimaryTimestamp {shown(operator.get('current_primary_timestamp'))}"
                     f"), timeline {shown(operator.get('timeline'))}")
    if target.get("ha"):
        tables.append(_key_values(("HA setting of the source Cluster", "value"), target["ha"]))
    if fault and not failover:
        lines.append("the cluster's recovery from the fault was not measured")
    return Section("failover", "Fault and failover", tuple(lines), tuple(tables))


def verification_section(evidence: dict) -> Section:
    """The checklist on the restored copy and pg_amcheck."""
    validation = evidence.get("validation") or []
    lines: list[Line] = []
    tables = []
    if validation:
        passed = sum(1 for v in validation if v.get("passed"))
        lines.append(f"{passed} of {len(validation)} checks passed on the restored copy")
        tables.append(Table(
            ("check", "query", "expected", "actual", "result"),
            tuple((str(v.get("name")), Code(str(v.get("query"))), literal(v.get("expected")),
                   literal(v.get("actual")), "passed" if v.get("passed") else "FAILED")
                  for v in validation),
            tuple("ok" if v.get("passed") else "bad" for v in validation)))
    elif evidence.get("restore"):
        lines.append("the restored copy was never validated")
    else:
        lines.append("no restored copy to validate in this run")
    amcheck = evidence.get("amcheck")
    if amcheck:
        databases = ", ".join(str(d) for d in amcheck.get("databases") or []) or "-"
        lines.append(f"pg_amcheck: {'passed' if amcheck.get('passed') else 'FAILED'}, "
                     f"{shown(amcheck.get('relations_checked'))} relations in {databases} "
                     f"checked in {secs(amcheck.get('seconds'))}, "
                     f"{amcheck.get('problem_count', len(amcheck.get('problems') or []))} "
                     "problems")
        problems, rest = more([shown(p) for p in amcheck.get("problems") or []])
        lines.extend(("pg_amcheck problem: ", Code(p)) for p in problems)
        if rest:
            lines.append(f"pg_amcheck problems{rest}")
        lines.extend(("pg_amcheck could not check: ", Code(shown(e)))
                     for e in (amcheck.get("check_errors") or [])[:MAX_LISTED])
    return Section("verification", "Verification: checklist and pg_amcheck", tuple(lines),
                   tuple(tables))


def fingerprints_section(evidence: dict) -> Section | None:
    fingerprints = evidence.get("fingerprints")
    if not fingerprints:
        return None
    lines: list[Line] = [f"fingerprints against {shown(fingerprints.get('reference'))}: "
                         + ("match" if fingerprints.get("match") else "DIFFER")]
    for key, what in (("missing_tables", "missing from the copy"),
                      ("unexpected_tables", "only in the copy")):
        if fingerprints.get(key):
            lines.append(f"tables {what}: " + ", ".join(str(t) for t in fingerprints[key]))
    tables = fingerprints.get("tables") or []
    rows = []
    for t in tables:
        ranges = t.get("narrowed_ranges") or [[r.get("lo"), r.get("hi")]
                                              for r in t.get("differing_ranges") or []]
        listed, rest = more([f"{shown(lo)}..{shown(hi)}" for lo, hi in ranges], 5)
        rows.append((str(t.get("table")), shown(t.get("compared_by")),
                     shown(t.get("expected_rows")), shown(t.get("actual_rows")),
                     "match" if t.get("match") else "DIFFER", (", ".join(listed) + rest) or "-"))
    table = Table(("table", "compared by", "rows expected", "rows actual", "result",
                   "differing key ranges"), tuple(rows),
                  tuple("ok" if t.get("match") else "bad" for t in tables))
    return Section("fingerprints", "Fingerprints", tuple(lines), (table,) if rows else ())


def backup_section(evidence: dict) -> Section:
    """The backup restored, restore points, and where recovery was asked to stop and did."""
    lines: list[Line] = []
    tables = []
    backup = evidence.get("backup") or {}
    if backup.get("id"):
        lines.append(("backup restored: ", Code(str(backup["id"])),
                      f", began {shown(backup.get('begin_time'))} at "
                      f"{shown(backup.get('begin_lsn'))}, ended {shown(backup.get('end_time'))} "
                      f"at {shown(backup.get('end_lsn'))}, timeline {shown(backup.get('timeline'))}"
                      f", WAL {shown(backup.get('begin_wal'))} to {shown(backup.get('end_wal'))}"))
        lines.append("validated by this run: " + ("yes" if backup.get("validated") else "no"))
    else:
        lines.append("no backup was restored in this run")
    manual = evidence.get("manual_backup") or {}
    if manual.get("id"):
        same = " (the one restored)" if manual["id"] == backup.get("id") else ""
        lines.append(("manual backup taken in this run: ", Code(str(manual["id"])), same))
    points = evidence.get("restore_points") or {}
    if points:
        tables.append(Table(("restore point", "written in the WAL as", "LSN", "marked at"),
                            tuple((str(name), Code(shown(p.get("real_name"))),
                                   shown(p.get("lsn")), shown(p.get("time")))
                                  for name, p in points.items())))
    restore = evidence.get("restore") or {}
    if restore:
        lines.append("recovery requested: " + _requested(restore.get("requested")
                                                        or restore.get("target") or {}))
        reached = restore.get("reached")
        if reached:
            lines.append(f"recovery reached: LSN {shown(reached.get('lsn'))}, new timeline "
                         f"{shown(reached.get('timeline'))} (from "
                         f"{shown(reached.get('parent_timeline'))}), reason: "
                         f"{shown(reached.get('reason'))}")
        if restore.get("position_ok"):
            lines.append("position: proven to be the requested one")
        elif restore.get("position_error"):
            lines.append(f"position: WRONG, {restore['position_error']}")
        else:
            lines.append("position: not proven")
        check = restore.get("restore_point_check")
        if check:
            lines.append(f"restore point looked up in the WAL before the restore: {shown(check)}")
    health = evidence.get("backup_health")
    if health:
        lines.append("backups healthy before the drill (CNPG ScheduledBackups, archiving): "
                     + ("yes" if health.get("ok") else "NO"))
        lines.extend(f"backup health problem: {p}" for p in health.get("problems") or [])
        lines.extend(f"backup health warning: {w}" for w in health.get("warnings") or [])
    return Section("backup", "Backup and recovery position", tuple(lines), tuple(tables))


def _requested(requested: dict) -> str:
    kind = requested.get("kind")
    if kind == "restore_point":
        return (f"restore point {shown(requested.get('name'))} (written as "
                f"{shown(requested.get('real_name') or requested.get('name'))}"
                + (f", at LSN {requested['expected_lsn']}" if requested.get("expected_lsn")
                   else "") + ")")
    if kind == "time":
        return f"time {shown(requested.get('time'))}"
    if kind == "lsn":
        return f"LSN {shown(requested.get('lsn'))}"
    return "latest (the end of the WAL archive)" if kind == "latest" else shown(kind)


def repair_section(evidence: dict) -> Section | None:
    repair = evidence.get("repair")
    if not repair:
        return None
    if repair.get("performed"):
        lines: list[Line] = [f"table {shown(repair.get('table'))} repaired from the restored "
                             f"copy: {shown(repair.get('rows'))} rows"]
    else:
        lines = [f"repair of {shown(repair.get('table'))} REFUSED; the primary keeps its table"]
        lines += [f"refused: {r}" for r in repair.get("refused") or []]
    return Section("repair", "Repair", tuple(lines))


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
    tables = (_key_values(("target fact", "value"), facts),) if facts else ()
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
    records = timeline.activity_records(journal)
    origin = timeline.run_origin({}, journal)
    rows, states = [], []
    for section, record in records:
        start, end = (timeline.to_epoch(record.get(k)) for k in ("start", "end"))
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


def _key_values(header: tuple[str, str], facts: dict) -> Table:
    return Table(header, tuple((str(k), shown(v)) for k, v in facts.items()))


# -- HTML ------------------------------------------------------------------------------------
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
                             f'width="{timeline.WIDTH}" height="{timeline.HEIGHT}" '
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


# -- Markdown --------------------------------------------------------------------------------
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


# -- files -----------------------------------------------------------------------------------
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
