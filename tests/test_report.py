"""Reports for people (pgdrill.reports.human, .timeline) and `pgdrill report RUN_DIR`, from
run folders built with realistic evidence (made by pgdrill.evidence.build.build_evidence, checked
against its schema) and Chaos Toolkit journals. Fast: no sandbox."""

from __future__ import annotations

import argparse
import base64
import json
import re
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgdrill.commands import report as report_command
from pgdrill.core.errors import BadInput
from pgdrill.evidence.build import build_evidence
from pgdrill.reports import human, timeline
from tests.test_evidence import validate

T0 = datetime(2026, 11, 30, 20, 0, 0, tzinfo=UTC)
FAULT_AT = 20.0
SECRET = "wJalrXUtnFEMI-K7MDENG-not-a-real-key"  # an activity output must never leak
XSS_QUERY = "SELECT '<script>alert(1)</script>' AS x"
XSS_ACTUAL = "<img src=x onerror=alert(1)>"


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def record(
    name: str,
    module: str,
    func: str,
    start: float,
    end: float,
    status: str = "succeeded",
    kind: str = "action",
    **extra,
) -> dict:
    return {
        "activity": {
            "type": kind,
            "name": name,
            "provider": {"type": "python", "module": module, "func": func},
        },
        "start": at(start),
        "end": at(end),
        "status": status,
        "duration": end - start,
        **extra,
    }


def probes(start: float) -> list[dict]:
    return [
        record(
            "primary-accepts-a-write",
            "probes.sql",
            "writes_succeed",
            start,
            start + 0.2,
            kind="probe",
        ),
        record(
            "sentinel-query", "probes.sql", "query_value", start + 0.2, start + 0.5, kind="probe"
        ),
    ]


def drill_journal(*, checklist_status: str = "succeeded") -> dict:
    checklist = record(
        "verification-checklist-on-restored-copy",
        "probes.verify",
        "checklist_passes",
        140,
        142.125,
        checklist_status,
        "probe",
        output={"aws_secret_access_key": SECRET},
    )
    if checklist_status == "failed":
        checklist["exception"] = [
            "Traceback (most recent call last):\n",
            "chaoslib.exceptions.ActivityFailed: pgdrill.core.errors.PgdrillError: validation "
            "failed on the restored copy: 'sentinel <b>row</b>' expected 'ok'\n",
        ]
    return {
        "chaoslib-version": "1.45.1",
        "experiment": {"title": "Primary <pod> loss & restore"},
        "start": at(0),
        "end": at(150),
        "duration": 150.0,
        "status": "completed",
        "deviated": False,
        "steady_states": {
            "before": {"steady_state_met": True, "probes": probes(0.1)},
            "after": {"steady_state_met": True, "probes": probes(144)},
            "during": [],
        },
        "run": [
            record("start-load", "actions.load", "start_load", 0.7, 1.2),
            record("manual-backup", "actions.backup", "trigger_backup", 1.2, FAULT_AT),
            record(
                "delete-primary-pod",
                "actions.faults",
                "delete_primary_pod",
                FAULT_AT,
                FAULT_AT + 0.3,
            ),
            record(
                "cluster-heals", "probes.cluster", "wait_until_healthy", 20.3, 45.0, kind="probe"
            ),
            record(
                "acknowledged-writes-survived-on-primary",
                "probes.verify",
                "lost_writes",
                45.0,
                45.5,
                kind="probe",
            ),
            record(
                "restore-latest-backup-into-restore-test",
                "actions.restore",
                "restore_latest_backup",
                45.5,
                140.0,
            ),
            checklist,
            record(
                "restored-fingerprints-match-source",
                "probes.verify",
                "fingerprints_match",
                142.2,
                143.0,
                kind="probe",
            ),
            record(
                "lost-acknowledged-writes-in-restored-copy",
                "probes.verify",
                "lost_writes",
                143.0,
                144.0,
                kind="probe",
            ),
        ],
        "rollbacks": [
            record("stop-load", "actions.load", "stop_load", 145.5, 146.0),
            record("remove-restore-test", "actions.restore", "cleanup_restore", 146.0, 150.0),
        ],
    }


def drill_context(*, validation: list[dict] | None = None, rto_objective: float = 300) -> dict:
    backup = {
        "id": "20261130T200001",
        "begin_lsn": "0/8000028",
        "end_lsn": "0/8000138",
        "begin_time": at(1.5),
        "end_time": at(19.0),
        "begin_wal": "000000010000000000000008",
        "end_wal": "000000010000000000000008",
        "timeline": 1,
        "status": "DONE",
    }
    return {
        "cluster": "app-db",
        "backup": backup,
        "manual_backup": backup,
        "fault": {
            "kind": "delete_primary_pod",
            "instance": "app-db-1",
            "role": "primary",
            "at": at(FAULT_AT),
            "epoch": (T0 + timedelta(seconds=FAULT_AT)).timestamp(),
            "monotonic": 1000.0,
        },
        "failover": {
            "seconds": 8.5,
            "healthy_seconds": 24.2,
            "primary": "app-db-2",
            "measured_from": "fault",
            "acknowledged_writes": 1500,
            "lost_writes": 0,
            "lost_examples": [],
            "rpo_seconds": 0.0,
            "client_write_outage": {
                "seconds": 9.2,
                "last_ack_before": at(19.95),
                "first_ack_after": at(29.15),
                "measured_by": "acknowledged writes of the load",
            },
            "target": {
                "operator": {
                    "current_primary": "app-db-2",
                    "target_primary": "app-db-2",
                    "target_primary_timestamp": at(21.0),
                    "current_primary_timestamp": at(27.125),
                    "seconds": 6.125,
                    "timeline": 2,
                },
                "ha": {"instances": 3, "failover_delay_seconds": 0, "synchronous": None},
            },
        },
        "restore": {
            "backup_id": backup["id"],
            "target": {"kind": "latest"},
            "requested": {"kind": "latest", "time": None, "lsn": None, "name": None},
            "started_at": at(46.0),
            "phases": {"ready": 9.25, "restore": 80.5},
            # as the run context stores them: sorted by name
            "phase_details": {
                "Cluster in healthy state": 9.25,
                "Setting up primary": 70.0,
                "Waiting for the instances to become active": 10.5,
            },
            "reached": {
                "lsn": "0/C000000",
                "timeline": 3,
                "parent_timeline": 2,
                "reason": "no recovery target specified",
                "stop_kind": "latest",
            },
            "position_ok": True,
            "position_error": None,
        },
        "validation_seconds": 2.125,
        "validation": validation
        if validation is not None
        else [
            {
                "name": "sentinel-row",
                "query": "SELECT value FROM pgdrill_sentinel",
                "expected": "ok",
                "actual": "ok",
                "passed": True,
            },
            {
                "name": "pg_amcheck",
                "query": "pg_amcheck --all",
                "expected": "no corruption",
                "actual": "no corruption",
                "passed": True,
            },
        ],
        "amcheck": {
            "passed": True,
            "problems": [],
            "problem_count": 0,
            "databases": ["app", "postgres"],
            "relations_checked": 412,
            "seconds": 1.5,
        },
        "rpo": {
            "acknowledged_writes": 3000,
            "lost_writes": 12,
            "expected_absent": 40,
            "present_after_reference": 0,
            "rpo_seconds": 3.25,
            "reference": at(46.0),
            "reference_kind": "restore start",
            "lost_examples": ["c1:77", "c2:78"],
        },
        "objectives": {"rpo_objective_seconds": 60.0, "rto_objective_seconds": rto_objective},
        "fingerprints": {
            "match": True,
            "reference": "primary now",
            "missing_tables": [],
            "unexpected_tables": [],
            "tables": [
                {
                    "table": "public.pgbench_accounts",
                    "match": True,
                    "expected_rows": 100000,
                    "actual_rows": 100000,
                    "compared_by": "ranges",
                    "differing_ranges": [],
                }
            ],
        },
        "load_summary": {
            "requests": 4000,
            "failures": 9,
            "writes_acknowledged": 3000,
            "writes_per_second": 20.5,
            "latency_ms": {"p50": 2, "p95": 9, "p99": 30},
            "duration_seconds": 145.0,
            "users": 2,
            "stats_source": "locust json",
        },
        "credentials": {
            "file": "clusters/staging/cnpg-backup-s3.enc.yaml",
            "recipients": ["age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"],
            "keys": ["ACCESS_KEY_ID", "ACCESS_SECRET_KEY", "BUCKET", "ENDPOINT", "REGION"],
        },
        "target_facts": {
            "kind": "cnpg",
            "cluster": "app-db",
            "namespace": "staging",
            "operator_version": "1.30.0",
            "kubernetes_version": "v1.33.1",
            "backup_style": "plugin",
        },
        "logs": ["logs/operator.log", "logs/app-db-1.log"],
        "cluster_identity": "7714183350231485191",
    }


def write_load_files(folder: Path) -> None:
    """acks.csv: two clients writing 10/s each until the fault, nothing for 9.2 s, then on;
    Locust's history: 9 failures in the second after the fault."""
    lines = []
    for client in ("c1", "c2"):
        seq, t = 0, 1.3
        while t < 145:
            if not FAULT_AT - 0.05 < t < FAULT_AT + 9.15:
                seq += 1
                lines.append(f"{client},{seq},{(T0 + timedelta(seconds=t)).timestamp():.6f}\n")
            t += 0.1
    (folder / "acks.csv").write_text("".join(lines))
    header = (
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,Total Request Count,"
        "Total Failure Count\n"
    )
    rows = []
    for second in range(1, 146):
        failures = 9 if second > FAULT_AT + 1 else 0
        rows.append(f"{int(T0.timestamp()) + second},2,,Aggregated,20,0,{second * 20},{failures}\n")
    (folder / "locust_stats_history.csv").write_text(header + "".join(rows))


def make_run(
    tmp_path: Path,
    name: str,
    journal: dict,
    context: dict,
    *,
    environment: str = "staging",
    load: bool = True,
    receipt: bool = True,
) -> Path:
    folder = tmp_path / "reports" / name
    folder.mkdir(parents=True)
    evidence = build_evidence(
        journal, context, experiment="primary-pod-loss", target="cnpg", environment=environment
    )
    validate(evidence)
    (folder / "evidence.json").write_text(json.dumps(evidence, indent=2))
    (folder / "journal.json").write_text(json.dumps(journal, indent=2))
    if load:
        write_load_files(folder)
    if receipt:
        line = {"seq": 7, "run_id": name, "line_sha256": "ab" * 32}
        (folder / "ledger-receipt.json").write_text(
            json.dumps({"schema": "pgdrill.ledger-receipt/1", "seq": 7, "line": json.dumps(line)})
        )
    return folder


@pytest.fixture
def passed_run(tmp_path) -> Path:
    return make_run(tmp_path, "20261130T200000Z-primary-pod-loss", drill_journal(), drill_context())


@pytest.fixture
def failed_run(tmp_path) -> Path:
    validation = [
        {
            "name": "sentinel <b>row</b>",
            "query": XSS_QUERY,
            "expected": "ok",
            "actual": XSS_ACTUAL,
            "passed": False,
        },
        {
            "name": "pg_amcheck",
            "query": "pg_amcheck --all",
            "expected": "no corruption",
            "actual": "no corruption",
            "passed": True,
        },
    ]
    return make_run(
        tmp_path,
        "20261130T210000Z-primary-pod-loss",
        drill_journal(checklist_status="failed"),
        drill_context(validation=validation, rto_objective=60),
    )


@pytest.fixture
def refused_run(tmp_path) -> Path:
    journal = {
        "status": "interrupted",
        "deviated": False,
        "start": at(0),
        "end": at(0.8),
        "duration": 0.8,
        "experiment": {"title": "t"},
        "steady_states": {"before": None, "after": None, "during": []},
        "run": [],
        "rollbacks": [],
    }
    context = {
        "refused": "production drills need a passing staging run of primary-pod-loss "
        "on a cnpg target within 30 days in the verified ledger",
        "objectives": {"rpo_objective_seconds": 60.0, "rto_objective_seconds": 300.0},
    }
    return make_run(
        tmp_path,
        "20261130T220000Z-primary-pod-loss",
        journal,
        context,
        environment="production",
        load=False,
        receipt=False,
    )


def reports(folder: Path) -> tuple[str, str]:
    evidence = json.loads((folder / "evidence.json").read_text())
    journal = json.loads((folder / "journal.json").read_text())
    written = human.write_reports(folder, evidence, journal)
    assert written[:2] == [folder / "report.html", folder / "report.md"]
    return (folder / "report.html").read_text(), (folder / "report.md").read_text()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def embedded_png(page: str) -> bytes:
    found = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(found) == 1, "exactly one embedded timeline"
    return base64.b64decode(found[0], validate=True)


def guardrail_rows(page: str) -> dict[str, str]:
    section = page.split('<section id="guardrails">')[1].split("</section>")[0]
    rows = re.findall(r"<tr(?: class=\"(\w+)\")?><td>([^<]+)</td>", section)
    return {name: state for state, name in rows}


# -- the passed run --------------------------------------------------------------------------
def test_passed_run_html_has_verdict_guardrails_timeline_and_numbers(passed_run):
    page, md = reports(passed_run)
    assert '<div class="banner passed" id="verdict"><strong>PASSED</strong>' in page
    assert guardrail_rows(page) == {name: "ok" for name in human.GUARDRAILS}
    assert png_size(embedded_png(page)) == (timeline.WIDTH, timeline.HEIGHT) == (1200, 500)
    assert png_size((passed_run / "timeline.png").read_bytes()) == (1200, 500)
    # RTO per phase against the objective, RPO, failover from both sides
    for fact in (
        "RTO 91.875 s against the objective of 300 s: met",
        "RPO 3.25 s against the objective of 60 s: met",
        "12 of 3000 acknowledged writes lost on the restored copy",
        "0 of 1500 acknowledged writes lost on the healed primary",
        "writable primary app-db-2 after 8.5 s",
        "every instance healthy after 24.2 s",
        "the load&#x27;s writes stopped for 9.2 s",
        "the operator recorded the failover to app-db-2 in 6.125 s",
        "recovery reached: LSN 0/C000000, new timeline 3 (from 2)",
        "position: proven to be the requested one",
        "pg_amcheck: passed, 412 relations in app, postgres",
        "validated by this run: yes",
        "operator_version",
        "1.30.0",
        'href="logs/operator.log"',
        "7714183350231485191",
        "ledger line <code>7</code>",
        "clusters/staging/cnpg-backup-s3.enc.yaml",
        "ACCESS_SECRET_KEY",
    ):
        assert fact in page, fact
    # the target's sub-phases in the order they happen, not the stored (sorted) order
    rto = page.split('<section id="rto">')[1].split("</section>")[0]
    assert (
        rto.index("Setting up primary")
        < rto.index("Waiting for the instances")
        < rto.index("Cluster in healthy state")
    )
    assert "<td>restore</td><td>80.5</td>" in rto and "<td>validate</td><td>2.125</td>" in rto


def test_html_is_self_contained_and_never_shows_a_secret(passed_run):
    page, md = reports(passed_run)
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<link" not in page and "@import" not in page
    for text in (page, md):
        assert SECRET not in text  # activity outputs are never copied into the reports
    html_escaped_title = "Primary &lt;pod&gt; loss &amp; restore"
    assert f"<h1>{html_escaped_title}</h1>" in page


def test_markdown_states_the_same_facts(passed_run):
    page, md = reports(passed_run)
    assert md.startswith("# Primary \\<pod\\> loss & restore\n")
    assert "**PASSED**" in md
    for fact in (
        "RTO 91.875 s against the objective of 300 s: met",
        "RPO 3.25 s against the objective of 60 s: met",
        "| RTO (time to a proven recovery) | 91.875 |",
        "12 of 3000 acknowledged writes lost",
        "the operator recorded the failover to app-db-2 in 6.125 s",
        "![timeline of the run](timeline.png)",
        "[logs/operator.log](<logs/operator.log>)",
    ):
        assert fact in md, fact
    for name in human.GUARDRAILS:
        assert f"| {name} |" in md


def test_timeline_lanes_of_a_full_run(passed_run):
    evidence = json.loads((passed_run / "evidence.json").read_text())
    journal = json.loads((passed_run / "journal.json").read_text())
    origin = timeline.run_origin(evidence, journal)
    assert origin == T0.timestamp()
    spans = timeline.timeline_spans(evidence, journal, origin)
    assert [lane for lane in timeline.LANES if any(s.lane == lane for s in spans)] == [
        "preflight",
        "steady state",
        "load",
        "backup",
        "fault",
        "heal",
        "restore",
        "verification",
        "rollbacks",
    ]
    heal = [s for s in spans if s.lane == "heal"]
    assert [(s.kind, s.start, round(s.end, 3)) for s in heal] == [
        ("failover", 20.0, 28.5),
        ("heal", 28.5, 44.2),
        ("operator", 21.0, 27.125),
    ]
    sub = [(s.label, s.start) for s in spans if s.kind.startswith("restore:")]
    assert sub == [
        ("Setting up primary 70.0s", 46.0),
        ("Waiting for the instances to become active 10.5s", 116.0),
        ("Cluster in healthy state 9.25s", 126.5),
    ]
    load = [s for s in spans if s.lane == "load"]
    assert [(round(s.start, 3), s.end) for s in load] == [(0.7, 146.0)]  # to stop-load
    assert [m.label for m in timeline.markers(evidence, journal, origin)] == [
        "fault: delete_primary_pod on app-db-1"
    ]


def test_load_rates_and_locust_failures(passed_run):
    acks, note = timeline.ack_times(passed_run)
    assert note is None and len(acks) > 2000
    edges, rates = timeline.rates(acks, T0.timestamp(), 1.0)
    by_second = dict(zip(edges, rates))
    assert by_second[10.0] == 20.0 and by_second.get(25.0, 0.0) == 0.0
    assert timeline.locust_failures(passed_run) == [(T0.timestamp() + 22, 9)]
    assert timeline.bin_width(30) == 1.0 and timeline.bin_width(3600) == 15.0


# -- the failed run --------------------------------------------------------------------------
def test_failed_run_names_its_reasons_and_escapes_user_strings(failed_run):
    page, md = reports(failed_run)
    evidence = json.loads((failed_run / "evidence.json").read_text())
    assert evidence["verdict"] == "failed"
    assert '<div class="banner failed" id="verdict"><strong>FAILED</strong>' in page
    for reason in evidence["reasons"]:
        assert f"<li>{human.html.escape(reason)}</li>" in page
        assert f"- **why not passed:** {human.md_text(reason)}" in md
    assert any(
        "RTO 91.875s exceeds the objective of 60.0s by 31.875s" in r for r in evidence["reasons"]
    )
    assert "RTO 91.875 s against the objective of 60 s: MISSED by 31.875 s" in page
    assert "RTO 91.875 s against the objective of 60 s: MISSED by 31.875 s" in md
    # what users wrote is text, never markup
    assert "<script>" not in page and "<img src=x" not in page and "<b>row" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&lt;img src=x onerror=alert(1)&gt;&quot;" in page
    assert "<td>sentinel &lt;b&gt;row&lt;/b&gt;</td>" in page
    assert "`SELECT '<script>alert(1)</script>' AS x`" in md  # a code span shows it as text
    assert "sentinel \\<b\\>row\\</b\\>" in md
    assert "<img src=x" not in md.replace("`", "").replace('"\\<img', "")
    rows = guardrail_rows(page)
    assert rows["1. No backup without restore"] == "bad"
    assert rows["4. Evidence-first"] == "bad"
    assert "not validated" in page and "1 of 2 checks passed on the restored copy" in page
    assert '<tr class="bad"><td>sentinel &lt;b&gt;row&lt;/b&gt;</td>' in page
    assert png_size(embedded_png(page)) == (1200, 500)


def test_failed_activity_is_marked_on_the_timeline(failed_run):
    evidence = json.loads((failed_run / "evidence.json").read_text())
    journal = json.loads((failed_run / "journal.json").read_text())
    spans = timeline.timeline_spans(evidence, journal, timeline.run_origin(evidence, journal))
    assert [s.label for s in spans if s.status == "failed"] == [
        "verification-checklist-on-restored-copy"
    ]


# -- the refused run -------------------------------------------------------------------------
def test_refused_run_without_activities_still_reports(refused_run):
    page, md = reports(refused_run)
    evidence = json.loads((refused_run / "evidence.json").read_text())
    assert evidence["verdict"] == "refused"
    assert '<div class="banner refused" id="verdict"><strong>REFUSED</strong>' in page
    assert "preflight refused: production drills need a passing staging run" in page
    assert "**REFUSED**" in md and "preflight refused: production drills" in md
    rows = guardrail_rows(page)
    assert rows["3. Non-prod first"] == "warn"  # the guardrail refused it
    assert "1. No backup without restore" in rows and rows["4. Evidence-first"] == ""
    for fact in (
        "no fault was injected in this run",
        "no restore in this run",
        "RTO not measured against the objective of 300 s: not measured in this run",
        "no activity ran",
        "not recorded in the ledger",
    ):
        assert fact in page and fact in md, fact
    assert png_size(embedded_png(page)) == (1200, 500)


def test_timeline_degrades_without_anything(tmp_path):
    for evidence, journal in (
        ({}, {}),
        ({"verdict": "refused"}, {"start": "not a time"}),
        (
            {"verdict": "interrupted", "fault": {"at": at(5)}},
            {"start": at(0), "run": [{"activity": {"name": "x"}, "start": at(1), "status": None}]},
        ),
    ):
        assert png_size(timeline.draw_timeline(evidence, journal, tmp_path)) == (1200, 500)
    (tmp_path / "acks.csv").write_text("not,an,ack,log\n")
    assert png_size(timeline.draw_timeline({}, {}, tmp_path)) == (1200, 500)
    assert timeline.ack_times(tmp_path)[1].startswith("ack log unreadable")


def test_interrupted_run_from_a_rebuilt_journal(tmp_path):
    """A run found dead: its journal is rebuilt from the activity log (no providers)."""
    journal = {
        "status": "interrupted",
        "deviated": False,
        "start": at(0),
        "end": None,
        "steady_states": {
            "before": {
                "steady_state_met": True,
                "probes": [
                    {
                        "activity": {"name": "primary-accepts-a-write", "type": "probe"},
                        "status": "succeeded",
                        "start": at(0.1),
                        "end": at(0.2),
                    }
                ],
            },
            "after": None,
            "during": [],
        },
        "run": [
            {
                "activity": {"name": "drop-primary-pvc", "type": "action"},
                "status": "succeeded",
                "start": at(1),
                "end": at(1.5),
            },
            {
                "activity": {"name": "restore-latest-backup-into-restore-test", "type": "action"},
                "status": "interrupted",
                "start": at(2),
                "end": None,
            },
        ],
        "rollbacks": [],
        "pgdrill": {"reconstructed_from": "activity log"},
    }
    context = {
        "found_dead": True,
        "current_activity": {"name": "restore-latest-backup-into-restore-test", "phase": "method"},
        "last_completed_activity": "drop-primary-pvc",
        "fault": {"kind": "drop_pvc", "instance": "pg-1", "at": at(1)},
    }
    folder = make_run(tmp_path, "20261130T230000Z-pvc-loss", journal, context, load=False)
    page, md = reports(folder)
    assert "<strong>INTERRUPTED</strong>" in page and "**INTERRUPTED**" in md
    assert (
        "interrupted during restore-latest-backup-into-restore-test; last completed "
        "activity: drop-primary-pvc; found dead by a later command"
    ) in md
    evidence = json.loads((folder / "evidence.json").read_text())
    spans = timeline.timeline_spans(evidence, journal, T0.timestamp())
    assert {(s.lane, s.status) for s in spans} >= {
        ("fault", "succeeded"),
        ("restore", "interrupted"),
    }


# -- markdown escaping ---------------------------------------------------------------------
def test_markdown_escaping_keeps_user_text_as_text():
    assert human.md_text("<script>|x*y*[a](b)`c`") == "\\<script\\>\\|x\\*y\\*\\[a\\](b)\\`c\\`"
    assert human.md_text("two\nlines") == "two lines"
    assert human.md_code("a | b") == "`a \\| b`"
    assert human.md_code("x `y` z") == "``x `y` z``"
    assert human.md_code("`edge`") == "`` `edge` ``"


# -- pgdrill report RUN_DIR ----------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pgdrill")
    report_command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_report_command_regenerates_the_reports(passed_run, capsys):
    args = parse(["report", str(passed_run)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out.split()
    assert printed[:2] == [str(passed_run / "report.html"), str(passed_run / "report.md")]
    first = (passed_run / "report.html").read_bytes()
    assert report_command.run(argparse.Namespace(run_dir=str(passed_run))) == 0
    assert (passed_run / "report.html").read_bytes() == first  # deterministic, picture too


def test_report_command_without_journal_uses_the_evidence(passed_run, capsys):
    (passed_run / "journal.json").unlink()
    assert report_command.run(argparse.Namespace(run_dir=str(passed_run))) == 0
    assert "has no journal.json" in capsys.readouterr().out
    page = (passed_run / "report.html").read_text()
    assert "<strong>PASSED</strong>" in page and "no activity ran" in page


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "holds no evidence.json, so it is not a drill's run folder"),
        (lambda d: (d / "evidence.json").write_text("{not json"), "is not valid JSON"),
        (lambda d: (d / "evidence.json").write_text('{"hello": 1}'), "is not pgdrill evidence"),
    ],
)
def test_report_command_refuses_a_folder_that_is_not_a_run(tmp_path, setup, message):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    setup(folder)
    with pytest.raises(BadInput) as raised:
        report_command.run(argparse.Namespace(run_dir=str(folder)))
    assert raised.value.exit_code == 2
    assert message in raised.value.message and raised.value.fix
    assert not (folder / "report.html").exists()


def test_report_command_names_a_missing_folder(tmp_path):
    with pytest.raises(BadInput, match="is not a folder"):
        report_command.run(argparse.Namespace(run_dir=str(tmp_path / "nope")))
