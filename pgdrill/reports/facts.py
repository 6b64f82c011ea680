"""The facts of one drill for people: `build_report` turns the run's evidence, its Chaos
Toolkit journal and its ledger receipt into a `Report` (pgdrill.reports.document).

The report holds the verdict with its reasons, the four guardrails of README, the timeline
picture, RTO per phase and RPO against their objectives, the failover, the checklist and
pg_amcheck, fingerprints, the backup and the recovery position, the target, the logs and the
run's ledger line; each part is built in `guardrails`, `recovery` or `circumstances`.
Credential values never appear: the evidence holds none (only the SOPS file, its recipients
and key names). Pure: the caller reads the files."""

from __future__ import annotations

import json

from pgdrill.reports.bucket import bucket_section
from pgdrill.reports.bucket_backup import bucket_backup_section
from pgdrill.reports.circumstances import (
    activities_section, load_section, logs_section, target_section,
)
from pgdrill.reports.document import Code, Line, Report, Section, secs, shown
from pgdrill.reports.guardrails import guardrails_section
from pgdrill.reports.recovery import (
    backup_section, failover_section, fingerprints_section, repair_section, rpo_section,
    rto_section, verification_section,
)


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
        bucket_backup_section(evidence),
        rpo_section(evidence),
        failover_section(evidence),
        verification_section(evidence),
        fingerprints_section(evidence),
        backup_section(evidence),
        bucket_section(evidence),
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
