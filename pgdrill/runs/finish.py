"""The files of one drill run: partial evidence after every activity, the final evidence,
summary and journal at the end, and the run's line in the ledger."""

from __future__ import annotations

import json
from pathlib import Path

from pgdrill.core.console import say
from pgdrill.core.files import write_atomically
from pgdrill.evidence.build import build_evidence, render_summary
from pgdrill.evidence.runcontext import RunContext

RUN_LOCK = "run.lock"


def journal_from_log(context: dict, status: str) -> dict:
    """A journal rebuilt from the activity log the control keeps in the run context: for
    partial evidence while a run is in progress, and for a run found dead (SIGKILL), whose
    Chaos Toolkit journal was never written."""
    log = context.get("activity_log") or []
    current = context.get("current_activity")
    records = list(log)
    if current and status == "interrupted":
        records.append({**current, "status": "interrupted"})

    def phase(name: str) -> list[dict]:
        return [_as_run_record(r) for r in records if r.get("phase") == name]

    def hypothesis(name: str) -> dict | None:
        probes = phase(name)
        if not probes:
            return None
        met = all(
            p.get("status") == "succeeded" and p.get("tolerance_met") is not False for p in probes
        )
        return {"steady_state_met": met, "probes": probes}

    return {
        "status": status,
        "deviated": False,
        "start": context.get("started_at"),
        "end": None,
        "duration": None,
        "experiment": {"title": context.get("title")},
        "steady_states": {
            "before": hypothesis("steady-state-before"),
            "after": hypothesis("steady-state-after"),
            "during": [],
        },
        "run": phase("method"),
        "rollbacks": phase("rollbacks"),
        "pgdrill": {"reconstructed_from": "activity log"},
    }


def _as_run_record(entry: dict) -> dict:
    record = {
        "activity": {"name": entry.get("name"), "type": entry.get("type")},
        "status": entry.get("status"),
        "start": entry.get("start"),
        "end": entry.get("end"),
    }
    if entry.get("exception"):
        record["exception"] = [entry["exception"]]
    if "tolerance_met" in entry:
        record["tolerance_met"] = entry["tolerance_met"]
    return record


def mark_interrupted_records(journal: dict) -> None:
    """Chaos Toolkit leaves the record of an activity cut short by a signal without a
    status: give it `interrupted`."""
    steady = journal.get("steady_states") or {}
    hypotheses = [steady.get("before"), steady.get("after"), *(steady.get("during") or [])]
    records = [*journal.get("run", []), *journal.get("rollbacks", [])]
    for hypothesis in hypotheses:
        records += (hypothesis or {}).get("probes") or []
    for record in records:
        if isinstance(record, dict) and not record.get("status"):
            record["status"] = "interrupted"


def _evidence(run_dir: Path, journal: dict) -> tuple[dict, dict]:
    context = RunContext(run_dir).read()
    evidence = build_evidence(
        journal,
        context,
        experiment=context.get("experiment", "experiment"),
        target=context.get("target", "sandbox"),
        environment=context.get("environment", "develop"),
    )
    return evidence, context


def write_partial_evidence(run_dir: Path) -> None:
    """Evidence as of now (verdict `running`), so a SIGKILLed drill leaves readable
    evidence behind."""
    context = RunContext(run_dir).read()
    evidence, _ = _evidence(run_dir, journal_from_log(context, "running"))
    evidence["partial"] = True
    _write_json(run_dir / "evidence.json", evidence)


def finish_run(run_dir: Path, journal: dict, *, pushgateway: str | None = None) -> dict:
    """Write the final evidence.json, summary.md and journal.json, append the run to the
    ledger, and release the run lock. Returns the evidence."""
    mark_interrupted_records(journal)
    evidence, context = _evidence(run_dir, journal)
    if evidence["verdict"] != "passed" and journal.get("status") == "completed":
        journal["status"] = "failed"  # so that `chaos run` exits 1
    _write_json(run_dir / "evidence.json", evidence)
    (run_dir / "summary.md").write_text(render_summary(evidence))
    _write_json(run_dir / "journal.json", journal)
    record_in_ledger(run_dir, evidence, context)
    write_run_reports(run_dir, evidence, journal, pushgateway=pushgateway)
    (run_dir / RUN_LOCK).unlink(missing_ok=True)
    return evidence


def write_run_reports(
    run_dir: Path, evidence: dict, journal: dict, *, pushgateway: str | None = None
) -> list[str]:
    """report.html and report.md for people, junit.xml and metrics.prom for machines (and a
    Pushgateway push when configured). Written after the ledger line: they are views of the
    evidence, not evidence (the ledger hashes evidence.json and journal.json only), and a
    report that cannot be drawn never loses the evidence. Returns what was written."""
    from pgdrill.core.errors import PgdrillError
    from pgdrill.reports import metrics
    from pgdrill.reports.writers import WRITERS

    written: list[str] = []
    for writer in WRITERS:
        try:
            written += [p.name for p in writer(run_dir, evidence, journal)]
        except Exception as exc:
            say(f"could not write a report ({writer.__name__}): {type(exc).__name__}: {exc}")
    if pushgateway:
        try:
            metrics.push(evidence, pushgateway, ledger_entries=run_dir.parent)
            say("metrics pushed to the Pushgateway")
        except PgdrillError as exc:
            say(f"metrics not pushed: {exc}")
    return written


def record_in_ledger(run_dir: Path, evidence: dict, context: dict) -> dict:
    from pgdrill.evidence import ledger

    backup = evidence.get("backup") or {}
    restore = evidence.get("restore") or {}
    record = {
        "run_id": run_dir.name,
        "experiment": evidence["experiment"],
        "environment": evidence["environment"],
        "target": evidence["target"],
        "cluster": evidence.get("cluster"),
        "cluster_identity": context.get("cluster_identity"),
        "backup": (
            {
                "id": backup.get("id"),
                "begin_lsn": backup.get("begin_lsn"),
                "end_lsn": backup.get("end_lsn"),
                "end_time": backup.get("end_time"),
            }
            if backup.get("id")
            else None
        ),
        "verdict": evidence["verdict"],
        "started_at": evidence.get("started_at") or context.get("started_at"),
        "ended_at": evidence.get("ended_at"),
        "rto_seconds": restore.get("rto_seconds"),
        "lost_writes": (evidence.get("rpo") or {}).get("lost_writes"),
        "restore_reached": restore.get("reached"),
    }
    entry = ledger.append_run(run_dir.parent, run_dir, record)
    say(f"recorded in the ledger as line {entry['seq']} ({run_dir.parent / 'ledger.jsonl'})")
    return entry


def _write_json(path: Path, data: dict) -> None:
    write_atomically(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
