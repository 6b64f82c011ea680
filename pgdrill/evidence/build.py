"""Evidence of a drill, computed from the run context and the Chaos Toolkit journal.

Pure functions: no I/O here. The verdict is evidence-first: a restore counts only when its
validation queries passed, and any failed activity or missed steady state fails the drill."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pgdrill.pg.replication import asynchronous_hint
from pgdrill.verification.rpo import hole_sentence

SCHEMA_VERSION = "pgdrill.evidence/1"
# The published contract of evidence.json (JSON Schema), for consumers of the evidence.
SCHEMA_FILE = Path(__file__).with_name("schema.json")


def failed_activities(journal: dict) -> list[str]:
    reasons = []
    for record in [*journal.get("run", []), *journal.get("rollbacks", [])]:
        if record.get("status") == "failed":
            name = record.get("activity", {}).get("name", "?")
            detail = _last_line(record.get("exception"))
            reasons.append(f"activity {name!r} failed" + (f": {detail}" if detail else ""))
    return reasons


def exception_line(exception: Any) -> str:
    """A formatted exception (a journal's `exception`) as one line: its last unindented line
    and what follows it. pgdrill's errors end with an indented `fix:` line, which alone would
    hide what failed (e.g. the API server's HTTP 403)."""
    if not exception:
        return ""
    lines = [line for line in "".join(exception).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    start = max(
        (i for i, line in enumerate(lines) if not line[0].isspace()), default=len(lines) - 1
    )
    return " ".join(line.strip() for line in lines[start:])


def _last_line(exception: Any) -> str:
    # chaoslib wraps the activity's exception, repeating its class name: keep the message
    return re.sub(
        r"^(?:[\w.]+(?:Failed|Error|Exception|Refused): )+", "", exception_line(exception)
    )


def judge(journal: dict, context: dict) -> tuple[str, list[str]]:
    """Return (verdict, reasons): `passed` only when nothing below went wrong.

    `refused`: the preflight refused the drill, nothing ran. `running`: partial evidence of
    a run still in progress (written after every activity). `interrupted`: the run was
    stopped (signal, or found dead by the next command) — never `passed`."""
    status = journal.get("status")
    reasons: list[str] = []
    if context.get("refused"):
        return "refused", [f"preflight refused: {context['refused']}"]
    if status == "running":
        return "running", ["the run is still in progress (partial evidence)"]
    if status != "completed":
        reasons.append(f"the experiment ended with status {status!r}")
    before = (journal.get("steady_states") or {}).get("before") or {}
    if before.get("steady_state_met") is False:
        reasons.append("the steady state was not met before the method: nothing was injected")
    if journal.get("deviated"):
        reasons.append("the steady state deviated after the method")
    reasons.extend(failed_activities(journal))
    validation = context.get("validation") or []
    if context.get("restore") and not validation:
        reasons.append(
            "the restored copy was never validated (evidence-first: a restore "
            "succeeds only after its validation queries pass)"
        )
    failing = [v["name"] for v in validation if not v.get("passed")]
    if failing:
        reasons.append("validation failed: " + ", ".join(failing))
    restore = context.get("restore") or {}
    if restore.get("position_error"):
        reasons.append(f"wrong recovery position: {restore['position_error']}")
    elif restore.get("phases") and "position_ok" not in restore:
        reasons.append("where recovery stopped was never proven")
    reasons.extend(promised_writes_lost(context))
    reasons.extend(holes_in_copies(context))
    reasons.extend(failover_writes_lost(context))
    reasons.extend(source_losses(context))
    reasons.extend(bucket_gaps(context))
    fingerprints = context.get("fingerprints")
    if fingerprints and not fingerprints.get("match"):
        differing = [t["table"] for t in fingerprints.get("tables", []) if not t.get("match")]
        reasons.append(
            "fingerprints differ from the reference: " + (", ".join(differing) or "tables missing")
        )
    for name, verdict in objectives(context).items():
        if verdict["met"] is False:
            reasons.append(
                f"{name.upper()} {verdict['measured_seconds']}s exceeds the objective "
                f"of {verdict['objective_seconds']}s by "
                f"{verdict['exceeded_by_seconds']}s"
            )
    if status == "interrupted":
        return "interrupted", reasons
    return ("passed" if not reasons else "failed"), reasons


def promised_writes_lost(context: dict) -> list[str]:
    """Writes acknowledged before an explicit recovery target (a restore point, a time) are
    writes the restore promised to keep: losing any fails the verdict. (For a restore to
    "latest", lost writes count against the RPO objective instead.)"""
    rpo = context.get("rpo") or {}
    if rpo.get("lost_writes") and rpo.get("reference_kind") in (
        "restore point",
        "recovery target time",
    ):
        return [
            f"{rpo['lost_writes']} writes acknowledged before the {rpo['reference_kind']} "
            f"({rpo['reference']}) are missing from the restored copy, e.g. "
            + ", ".join(rpo.get("lost_examples") or [])
        ]
    return []


def holes_in_copies(context: dict) -> list[str]:
    """A lost acknowledged write older than a write the copy holds is a hole
    (pgdrill.verification.rpo): lag loses a suffix in commit order, never the middle. Holes
    fail the verdict whatever the reference and the RPO objective: in a restored copy, a
    rebuilt cluster, or the primary after a failover."""
    reasons = []
    for key, where in (
        ("rpo", "the restored copy"),
        ("failover", "the primary after the failover"),
    ):
        section = context.get(key) or {}
        if key == "rpo" and section.get("reference_kind") == "cluster destroyed":
            where = "the rebuilt cluster"
        if section.get("holes"):
            reasons.append(
                hole_sentence(section["holes"], section.get("hole_examples") or [], where)
            )
    return reasons


# a healed primary keeps every acknowledged write unless the team says otherwise (an
# asynchronous replica may lose the last writes of a killed primary: set the objective)
DEFAULT_FAILOVER_LOST_WRITES = 0


def failover_objective(context: dict) -> dict | None:
    """Lost acknowledged writes on the primary after a failover against the experiment's
    `failover_lost_writes_objective` (default 0); None when nothing was counted."""
    failover = context.get("failover") or {}
    lost = failover.get("lost_writes")
    if lost is None:
        return None
    wanted = (context.get("objectives") or {}).get("failover_lost_writes_objective")
    objective = DEFAULT_FAILOVER_LOST_WRITES if wanted is None else int(wanted)
    return {
        "objective_lost_writes": objective,
        "measured_lost_writes": int(lost),
        "met": int(lost) <= objective,
    }


def failover_writes_lost(context: dict) -> list[str]:
    """More acknowledged writes lost in a failover than the objective allows fails it."""
    verdict = failover_objective(context)
    if verdict is None or verdict["met"]:
        return []
    examples = ", ".join((context.get("failover") or {}).get("lost_examples") or [])
    return [
        f"{verdict['measured_lost_writes']} acknowledged writes were lost on the primary "
        f"after the failover (objective: at most {verdict['objective_lost_writes']}, "
        f"failover_lost_writes_objective)"
        + (f", e.g. {examples}" if examples else "")
        + asynchronous_hint((context.get("fault") or {}).get("replication"))
    ]


def source_losses(context: dict) -> list[str]:
    """Writes the source primary no longer holds when the restored copy is checked are left
    out of the restore's RPO (pgdrill.verification.rpo): they must be the ones a failover
    check counted (and judged) earlier in the run, or the source lost writes that nobody judged."""
    missing = (context.get("rpo") or {}).get("source_missing")
    if not missing:
        return []
    counted = (context.get("failover") or {}).get("lost_writes") or 0
    if missing <= counted:
        return []
    examples = ", ".join((context.get("rpo") or {}).get("source_missing_examples") or [])
    return [
        f"{missing} acknowledged writes are missing from the source primary itself "
        f"({counted} were counted as lost in a failover): the source lost writes outside "
        f"any failover check" + (f", e.g. {examples}" if examples else "")
    ]


# pgdrill.bucket.report.GAP_KINDS (not imported: this module stays free of the targets)
BUCKET_GAP_KINDS = ("gap", "unrestorable")


def bucket_gaps(context: dict) -> list[str]:
    """A gap in the source's WAL archive fails the drill, whatever this run restored: the
    archive cannot give point-in-time recovery past it (a restore to latest across it is
    refused before it starts, by pgdrill.bucket.restore_gate), and a drill exists to prove
    the archive restores. Only the WAL findings count (kinds BUCKET_GAP_KINDS of the bucket
    report recorded at the restore): archive lag and backup age do NOT fail a drill, on
    purpose — a drill takes its own backup and writes under load just before it restores,
    so both are fresh by construction and say nothing about the schedule; staleness is
    `pgdrill bucket-report`'s verdict (and, on CNPG, probes.backup.backups_healthy's)."""
    bucket = context.get("bucket") or {}
    return [
        f"the WAL archive {bucket.get('archive')} has a gap: {f.get('text')}"
        for f in bucket.get("findings") or []
        if isinstance(f, dict) and f.get("kind") in BUCKET_GAP_KINDS
    ]


def interruption(journal: dict, context: dict) -> dict | None:
    """Where an interrupted run stopped: the activity it was in and the last completed."""
    if journal.get("status") != "interrupted":
        return None
    cut = context.get("interrupted_activity")
    if cut:
        last = context.get("last_completed_before_interruption")
    else:  # found dead: nothing ran after the activity it was in
        cut = context.get("current_activity") or {}
        last = context.get("last_completed_activity")
    return {
        "during": cut.get("name"),
        "phase": cut.get("phase"),
        "last_completed_activity": last,
        "found_dead": bool(context.get("found_dead")),
    }


def objectives(context: dict) -> dict:
    """RPO/RTO measured against the experiment's `rpo_objective_seconds` and
    `rto_objective_seconds`; an objective without a measurement is reported, not judged."""
    wanted = context.get("objectives") or {}
    restore = restore_section(context) or {}
    measured = {
        "rpo": (context.get("rpo") or {}).get("rpo_seconds"),
        "rto": restore.get("rto_seconds"),
    }
    result = {}
    for name, value in measured.items():
        objective = wanted.get(f"{name}_objective_seconds")
        if objective is None:
            continue
        objective = float(objective)
        met = None if value is None else value <= objective
        result[name] = {
            "objective_seconds": objective,
            "measured_seconds": value,
            "met": met,
            "exceeded_by_seconds": round(value - objective, 3) if met is False else 0.0,
        }
    return result


def restore_section(context: dict) -> dict | None:
    restore = context.get("restore")
    if not restore:
        return None
    phases = dict(restore.get("phases") or {})
    if context.get("validation_seconds") is not None:
        phases["validate"] = context["validation_seconds"]
    # time to a proven recovery: restore (base backup + WAL replay) + ready + validation;
    # none at all when the restore never finished (interrupted, failed)
    finished = restore.get("started_at") is not None
    return {
        **restore,
        "phases": phases,
        "rto_seconds": round(sum(phases.values()), 3) if finished else None,
    }


def build_evidence(
    journal: dict, context: dict, *, experiment: str, target: str, environment: str
) -> dict:
    verdict, reasons = judge(journal, context)
    restore = restore_section(context)
    backup = dict(context.get("backup") or {})
    if backup:
        # guardrail 1: a backup counts as valid only once a restore of it passed
        backup["validated"] = bool(
            restore and verdict == "passed" and backup.get("id") == restore.get("backup_id")
        )
    steady = journal.get("steady_states") or {}
    return {
        "schema": SCHEMA_VERSION,
        "experiment": experiment,
        "title": (journal.get("experiment") or {}).get("title"),
        "target": target,
        "environment": environment,
        "cluster": context.get("cluster"),
        "started_at": journal.get("start"),
        "ended_at": journal.get("end"),
        "duration_seconds": round(journal.get("duration") or 0, 3),
        "verdict": verdict,
        "reasons": reasons,
        "journal": {
            "status": journal.get("status"),
            "deviated": journal.get("deviated"),
            "steady_state_before": (steady.get("before") or {}).get("steady_state_met"),
            "steady_state_after": (steady.get("after") or {}).get("steady_state_met"),
        },
        "manual_backup": context.get("manual_backup"),
        "backup": backup or None,
        "fault": context.get("fault"),
        "failover": (
            {**context["failover"], "lost_writes_objective": failover_objective(context)}
            if context.get("failover")
            else None
        ),
        "restore": restore,
        "validation": context.get("validation") or [],
        "rpo": context.get("rpo"),
        "objectives": objectives(context),
        "fingerprints": context.get("fingerprints"),
        "amcheck": context.get("amcheck"),
        "repair": context.get("repair"),
        "load": context.get("load_summary"),
        "restore_points": context.get("restore_points") or {},
        "preflight": {
            "repairs": context.get("preflight_repairs") or [],
            "cluster_identity": context.get("cluster_identity"),
        },
        # where the S3 credentials came from (file, recipients, key names): never values
        "credentials": context.get("credentials"),
        # what the target is (CNPG: operator and Kubernetes versions, HA settings)
        "target_facts": context.get("target_facts"),
        # the operator's/supervisor's and instances' log lines since the start, redacted
        "logs": context.get("logs") or [],
        # where the run folder and the ledger are kept beyond this machine (pgdrill.evidence.sink)
        "evidence_sink": context.get("evidence_sink"),
        # step 1 of the safe workflow on CNPG (probes.backup.backups_healthy)
        "backup_health": context.get("backup_health"),
        # the source's bucket as the restore found it: backups, WAL gaps, recoverable
        # window, archive lag, backup age (pgdrill.bucket.report; None: not read)
        "bucket": context.get("bucket"),
        # the WAL archive's hole at a failover and its closing (actions.backup.
        # backfill_wal_archive; pgdrill.bucket.backfill): None when the drill did not look
        "wal_backfill": context.get("wal_backfill"),
        # cluster-loss with flux_suspend: the Flux owner pgdrill suspended and left suspended
        # (pgdrill.targets.cnpg.flux); None when no Flux owner was touched
        "flux": context.get("flux"),
        "interruption": interruption(journal, context),
        # `pgdrill verify-backup`: the archive, the backup's facts, the server build, RTO
        # phases, throughput and every table's fingerprint (pgdrill.verify_backup)
        "verification": context.get("verification"),
    }


def verification_lines(verification: dict | None) -> list[str]:
    """summary.md lines of a `pgdrill verify-backup` run."""
    if not verification:
        return []
    build = verification.get("postgresql") or {}
    lines = [
        f"- verified from the bucket alone: {verification.get('archive')} with PostgreSQL "
        f"{build.get('version')} (backup written by "
        f"{(verification.get('backup_facts') or {}).get('major')})"
    ]
    phases = verification.get("rto_phases") or {}
    if phases:
        lines.append(
            "- RTO phases: "
            + ", ".join(
                f"{k} {phases[k]}s" for k in ("fetch", "replay", "ready", "verify") if k in phases
            )
        )
    if verification.get("tables") is not None:
        changes = verification.get("changes")
        lines.append(
            f"- {len(verification['tables'])} tables fingerprinted (sha256); "
            + (
                "first verification of this archive"
                if changes is None
                else f"{len(changes['changed'])} changed, {len(changes['added'])} new, "
                f"{len(changes['removed'])} gone since run {verification.get('compared_with')}"
            )
        )
    return lines


def render_summary(evidence: dict) -> str:
    """A short human-readable account of the evidence (Markdown)."""
    lines = [f"# {evidence['experiment']}: {evidence['verdict'].upper()}", ""]
    lines.append(
        f"- target: {evidence['target']} / environment: {evidence['environment']}"
        f" / cluster: {evidence.get('cluster')}"
    )
    lines.append(
        f"- ran {evidence.get('started_at')} → {evidence.get('ended_at')}"
        f" ({evidence['duration_seconds']}s)"
    )
    for reason in evidence["reasons"]:
        lines.append(f"- **why not passed:** {reason}")
    if evidence.get("fault"):
        f = evidence["fault"]
        lines.append(f"- fault: {f.get('kind')} on {f.get('instance')} at {f.get('at')}")
    if evidence.get("failover"):
        fo = evidence["failover"]
        lines.append(
            f"- writable primary after {fo.get('seconds')}s ({fo.get('primary')}); "
            f"all instances healthy after {fo.get('healthy_seconds')}s"
        )
        goal = fo.get("lost_writes_objective")
        if goal:
            lines.append(
                f"- {goal['measured_lost_writes']} of {fo.get('acknowledged_writes')} "
                f"acknowledged writes lost on the primary after the failover "
                f"(objective at most {goal['objective_lost_writes']}: "
                f"{'met' if goal['met'] else 'MISSED'})"
                + (f"; {fo['holes']} of them holes" if fo.get("holes") else "")
            )
        outage = fo.get("client_write_outage")
        if outage:
            lines.append(
                f"- the load's writes stopped for {outage['seconds']}s (last "
                f"acknowledged {outage['last_ack_before']}, next "
                f"{outage['first_ack_after']})"
            )
        operator = (fo.get("target") or {}).get("operator") or {}
        if operator.get("seconds") is not None:
            lines.append(
                f"- CNPG recorded the failover to {operator.get('current_primary')} in "
                f"{operator['seconds']}s (targetPrimaryTimestamp to "
                f"currentPrimaryTimestamp)"
            )
    if evidence.get("backup"):
        b = evidence["backup"]
        lines.append(
            f"- backup restored: {b.get('id')} (ended {b.get('end_time')}); "
            f"validated: {b.get('validated')}"
        )
    if evidence.get("restore"):
        r = evidence["restore"]
        phases = ", ".join(f"{k} {v}s" for k, v in r["phases"].items())
        if r["rto_seconds"] is None:
            lines.append(
                f"- restore to {r['target']['kind']} of backup {r['backup_id']} did not finish"
            )
        else:
            lines.append(f"- restore RTO {r['rto_seconds']}s to {r['target']['kind']} ({phases})")
        reached = r.get("reached")
        if reached:
            lines.append(
                f"- recovery stopped at {reached['lsn']} on timeline "
                f"{reached['parent_timeline']} ({reached['reason']}): "
                + (
                    "the requested position"
                    if r.get("position_ok")
                    else f"**WRONG POSITION** — {r.get('position_error')}"
                )
            )
    if evidence.get("bucket"):
        bk = evidence["bucket"]
        window = bk.get("window") or {}
        gaps = [f["text"] for f in bk.get("findings") or [] if f.get("kind") in BUCKET_GAP_KINDS]
        lines.append(
            f"- WAL archive {bk.get('archive')}: "
            + (f"**{len(gaps)} gap problem(s)** — " + "; ".join(gaps) if gaps else "continuous")
            + (
                f"; recoverable to LSN {window.get('last_lsn')} on timeline "
                f"{window.get('timeline')}"
                if window
                else "; nothing recoverable"
            )
        )
    if evidence.get("credentials"):
        c = evidence["credentials"]
        lines.append(
            f"- S3 credentials: SOPS/age file {c.get('file')} (recipients "
            f"{', '.join(c.get('recipients') or [])}), MAC verified"
        )
    if (evidence.get("preflight") or {}).get("repairs"):
        lines.append(
            "- the target was repaired in place before the drill: "
            + "; ".join(evidence["preflight"]["repairs"])
        )
    if evidence.get("interruption"):
        i = evidence["interruption"]
        lines.append(
            f"- interrupted during {i.get('during')!r}; last completed activity: "
            f"{i.get('last_completed_activity')!r}"
        )
    if evidence.get("repair"):
        rep = evidence["repair"]
        lines.append(
            f"- repair of {rep['table']}: "
            + (
                f"done, {rep['rows']} rows"
                if rep["performed"]
                else "**refused** — " + "; ".join(rep["refused"])
            )
        )
    if evidence.get("rpo"):
        r = evidence["rpo"]
        lines.append(
            f"- RPO {r['rpo_seconds']}s: {r['lost_writes']} of {r['acknowledged_writes']}"
            f" acknowledged writes lost, {r['expected_absent']} expected absent "
            f"(acknowledged after {r['reference_kind']} {r['reference']})"
            + (
                f"; **{r['holes']} holes** (lost before writes that survived)"
                if r.get("holes")
                else ""
            )
        )
    for name, o in (evidence.get("objectives") or {}).items():
        state = {True: "met", False: "MISSED", None: "not measured"}[o["met"]]
        lines.append(
            f"- {name.upper()} objective {o['objective_seconds']}s: {state}"
            + (f" by {o['exceeded_by_seconds']}s" if o["met"] is False else "")
        )
    if evidence.get("fingerprints"):
        fp = evidence["fingerprints"]
        lines.append(
            f"- fingerprints vs {fp.get('reference')}: "
            f"{'match' if fp.get('match') else '**DIFFER**'}"
        )
    if evidence.get("load"):
        ld = evidence["load"]
        lat = ld.get("latency_ms") or {}
        lines.append(
            f"- load: {ld.get('requests')} requests, {ld.get('failures')} failures, "
            f"{ld.get('writes_per_second')} writes/s, p50/p95/p99 "
            f"{lat.get('p50')}/{lat.get('p95')}/{lat.get('p99')} ms"
        )
    lines.extend(verification_lines(evidence.get("verification")))
    if evidence["validation"]:
        lines += ["", "| check | expected | actual | passed |", "|---|---|---|---|"]
        for v in evidence["validation"]:
            lines.append(
                f"| {v['name']} | {v['expected']!r} | {v['actual']!r} | "
                f"{'yes' if v['passed'] else '**NO**'} |"
            )
    return "\n".join(lines) + "\n"
