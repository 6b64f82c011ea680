"""The parts of a report about recovery: RTO per phase and RPO against their objectives,
lost writes, the fault and the failover, the checklist and pg_amcheck on the restored copy,
fingerprints, the backup with the recovery position, and a repair. Pure: evidence in,
`Section`s out."""

from __future__ import annotations

from pgdrill.reports.document import (
    MAX_LISTED, Code, Inline, Line, Section, Table, key_values, literal, more, num, secs, shown,
)
from pgdrill.reports.spans import ordered_subphases

NEUTRAL_PHASES = ("restore", "ready", "validate")


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
        details = ordered_subphases(restore.get("phase_details") or {})
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


def replication_line(replication: dict) -> str:
    """How the primary replicated just before the fault."""
    if replication.get("error"):
        return f"replication at the fault: not read ({shown(replication['error'])})"
    standbys = ", ".join(f"{s.get('name')} {s.get('state')}/{s.get('sync_state')}"
                         for s in replication.get("standbys") or []) or "no standby"
    mode = {True: "synchronous", False: "asynchronous",
            None: "unknown (sync_state not readable)"}[replication.get("synchronous")]
    return (f"replication at the fault: {mode} (synchronous_standby_names "
            f"'{shown(replication.get('synchronous_standby_names'))}'; {standbys})")


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
        if fault.get("replication"):
            lines.append(replication_line(fault["replication"]))
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
        tables.append(key_values(("HA setting of the source Cluster", "value"), target["ha"]))
    if fault and not failover:
        lines.append("the cluster's recovery from the fault was not measured")
    if evidence.get("wal_backfill"):
        lines.append(backfill_line(evidence["wal_backfill"]))
    flux = evidence.get("flux")
    if flux:
        lines.append((f"Flux: pgdrill suspended {shown(flux.get('kind'))} "
                      f"{shown(flux.get('namespace'))}/{shown(flux.get('name'))} at "
                      f"{shown(flux.get('suspended_at'))} before destroying the Cluster; ",
                      *(Code(part) if i % 2 else part  # the note's `commands` as code
                        for i, part in enumerate(shown(flux.get("note")).split("`")) if part)))
    return Section("failover", "Fault and failover", tuple(lines), tuple(tables))


def backfill_line(backfill: dict) -> str:
    """The WAL archive's hole at the failover: none, closed (a finding: without the drill's
    backfill it would have stayed), or permanent."""
    if not backfill.get("holes"):
        return "WAL archive after the failover: no hole at the timeline switch"
    segments = ", ".join(backfill.get("segments") or {})
    if backfill.get("closed"):
        return (f"WAL archive after the failover: a HOLE of {backfill.get('hole_segments')} "
                f"segment(s) ({segments}) that the lost primary never archived; pgdrill had "
                f"{shown(backfill.get('instance'))} archive them from its pg_wal in "
                f"{secs(backfill.get('seconds'))}. Without that step every earlier backup "
                f"stops at the hole: run it (or take a backup) after every real failover")
    return (f"WAL archive after the failover: a HOLE of {backfill.get('hole_segments')} "
            f"segment(s) ({segments}) stays: {shown(backfill.get('problem'))}")


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
