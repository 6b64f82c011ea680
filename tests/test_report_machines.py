"""Reports for machines: JUnit XML (pgdrill.reports.junit) and Prometheus metrics
(pgdrill.reports.metrics), from realistic evidence built by pgdrill.evidence.build out of Chaos
Toolkit journals of the pvc-loss experiment: a passing run with failover and restore, a run
whose checklist failed, a refused production run and an interrupted one. The Pushgateway is a
real HTTP server on 127.0.0.1 in a thread."""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgdrill.core.errors import TargetError
from pgdrill.evidence import ledger
from pgdrill.evidence.build import build_evidence
from pgdrill.reports import junit, metrics
from pgdrill.reports.junit import junit_xml, write_junit
from pgdrill.reports.metrics import metrics_text, push, write_metrics

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT = json.loads((REPO / "experiments" / "pvc-loss.json").read_text())
T0 = datetime(2026, 11, 30, 20, 0, 0, tzinfo=UTC)
LABELS = {"experiment": "pvc-loss", "environment": "develop", "cluster": "sandbox"}


# -- realistic journals and contexts --------------------------------------------------------
def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def record(
    activity: dict,
    clock: list,
    *,
    status="succeeded",
    seconds=1.0,
    output=True,
    exception=None,
    tolerance_met=None,
) -> dict:
    """A journal record as chaoslib writes it (activity copy, output, start, status, end,
    duration, exception lines of a failure)."""
    start = clock[0]
    clock[0] += seconds
    rec = {
        "activity": copy.deepcopy(activity),
        "output": output,
        "start": at(start),
        "status": status,
        "end": at(clock[0]),
        "duration": seconds,
    }
    if exception:
        rec["exception"] = exception
    if tolerance_met is not None:
        rec["tolerance_met"] = tolerance_met
    return rec


def probes() -> list[dict]:
    return EXPERIMENT["steady-state-hypothesis"]["probes"]


def journal(
    *,
    status="completed",
    before=True,
    method=None,
    after=True,
    rollbacks=True,
    deviated=False,
    end=600.0,
) -> dict:
    clock = [0.0]
    steady_before = (
        {
            "steady_state_met": True,
            "probes": [record(p, clock, tolerance_met=True) for p in probes()],
        }
        if before
        else None
    )
    run = (
        [record(a, clock, seconds=10.0) for a in EXPERIMENT["method"]]
        if method is None
        else method(clock)
    )
    steady_after = (
        {
            "steady_state_met": True,
            "probes": [record(p, clock, tolerance_met=True) for p in probes()],
        }
        if after
        else None
    )
    rolled = [record(a, clock) for a in EXPERIMENT["rollbacks"]] if rollbacks else []
    return {
        "chaoslib-version": "1.45.1",
        "experiment": copy.deepcopy(EXPERIMENT),
        "start": at(0),
        "end": at(end),
        "duration": end,
        "status": status,
        "deviated": deviated,
        "steady_states": {"before": steady_before, "after": steady_after, "during": []},
        "run": run,
        "rollbacks": rolled,
    }


CHECKS = [
    {
        "name": "sentinel",
        "query": "SELECT value FROM pgdrill_sentinel",
        "expected": "ok",
        "actual": "ok",
        "passed": True,
    },
    {
        "name": "accounts",
        "query": "SELECT count(*) FROM pgbench_accounts",
        "expected": 100000,
        "actual": 100000,
        "passed": True,
    },
    {
        "name": "pg_amcheck",
        "query": "pg_amcheck --heapallindexed --parent-check --checkunique",
        "expected": "no corruption",
        "actual": "no corruption",
        "passed": True,
    },
]


def context(validation=None) -> dict:
    return {
        "experiment": "pvc-loss",
        "cluster": "sandbox",
        "started_at": at(0),
        "objectives": {"rpo_objective_seconds": 60.0, "rto_objective_seconds": 300.0},
        "credentials": {
            "file": ".pgdrill/cnpg-backup-s3.enc.yaml",
            "recipients": ["age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgp"],
            "keys": ["ACCESS_KEY_ID", "ACCESS_SECRET_KEY"],
        },
        "backup": {
            "id": "20261130T195500",
            "end_time": at(-300),
            "begin_lsn": "0/5000028",
            "end_lsn": "0/5000120",
        },
        "fault": {"kind": "drop_pvc", "instance": "sandbox-1", "at": at(40)},
        "failover": {
            "seconds": 4.2,
            "healthy_seconds": 11.5,
            "primary": "sandbox-2",
            "lost_writes": 0,
            "acknowledged_writes": 812,
            "client_write_outage": {
                "seconds": 5.1,
                "last_ack_before": at(39.9),
                "first_ack_after": at(45.0),
            },
        },
        "restore": {
            "backup_id": "20261130T195500",
            "started_at": at(70),
            "phases": {
                "download_base_backup": 3.0,
                "configure_recovery": 0.5,
                "replay_wal_and_promote": 6.5,
            },
            "target": {"kind": "latest"},
            "requested": {"kind": "latest"},
            "position_ok": True,
            "reached": {
                "timeline": 2,
                "parent_timeline": 1,
                "lsn": "0/6000000",
                "reason": "no recovery target specified",
                "stop_kind": "latest",
            },
        },
        "validation": CHECKS if validation is None else validation,
        "validation_seconds": 2.0,
        "rpo": {
            "acknowledged_writes": 1500,
            "lost_writes": 2,
            "expected_absent": 10,
            "present_after_reference": 0,
            "rpo_seconds": 1.25,
            "reference": at(70),
            "reference_kind": "restore start",
            "lost_examples": ["c1:700", "c2:699"],
        },
    }


def evidence_of(journal_: dict, context_: dict, environment="develop") -> dict:
    return build_evidence(
        journal_, context_, experiment="pvc-loss", target="sandbox", environment=environment
    )


def passed_run() -> tuple[dict, dict]:
    j = journal()
    return evidence_of(j, context()), j


def failed_checklist_run() -> tuple[dict, dict]:
    checks = copy.deepcopy(CHECKS)
    checks[1].update(actual=99990, passed=False)

    def method(clock):
        run = []
        for activity in EXPERIMENT["method"]:
            if activity["name"] == "verification-checklist-on-restored-copy":
                run.append(
                    record(
                        activity,
                        clock,
                        status="failed",
                        output=None,
                        exception=[
                            "Traceback (most recent call last):\n",
                            "  ...\n",
                            (
                                "chaoslib.exceptions.ActivityFailed: "
                                "pgdrill.core.errors.PgdrillError: "
                                "validation failed on the restored copy: accounts "
                                "(expected 100000, got 99990)\n"
                            ),
                        ],
                    )
                )
            else:
                run.append(record(activity, clock, seconds=10.0))
        return run

    j = journal(method=method)
    return evidence_of(j, context(validation=checks)), j


def refused_run() -> tuple[dict, dict]:
    j = journal(status="interrupted", before=False, method=lambda clock: [], after=False, end=1.0)
    ctx = {
        "experiment": "pvc-loss",
        "cluster": "sandbox",
        "started_at": at(0),
        "objectives": {"rpo_objective_seconds": 60.0, "rto_objective_seconds": 300.0},
        "refused": "production drill of 'pvc-loss' refused (guardrail: non-prod first): no "
        "passing staging run of 'pvc-loss' on a sandbox target in the ledger "
        "within the last 30 days; allow_production is not set",
    }
    return evidence_of(j, ctx, environment="production"), j


def interrupted_run() -> tuple[dict, dict]:
    def method(clock):
        run = [record(a, clock, seconds=10.0) for a in EXPERIMENT["method"][:3]]
        cut = record(EXPERIMENT["method"][3], clock, status="interrupted", output=None)
        return [*run, cut]

    j = journal(status="interrupted", method=method, after=False, end=80.0)
    ctx = context(validation=[])
    for key in ("restore", "validation_seconds", "rpo", "backup"):
        ctx.pop(key)
    ctx["failover"] = None
    ctx.update(
        interrupted_activity={"name": "cluster-heals", "phase": "method"},
        last_completed_before_interruption="drop-primary-pvc",
    )
    return evidence_of(j, ctx), j


# -- JUnit ----------------------------------------------------------------------------------
def parse(xml: str):
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    counts = {
        "tests": len(cases),
        "failures": sum(c.find("failure") is not None for c in cases),
        "errors": sum(c.find("error") is not None for c in cases),
        "skipped": sum(c.find("skipped") is not None for c in cases),
    }
    for key, value in counts.items():  # what a JUnit consumer reads must add up
        assert int(suite.get(key)) == value, key
        assert int(root.get(key)) == value, key
    for case in cases:
        assert len([c for c in case if c.tag in ("failure", "error", "skipped")]) <= 1
    return suite, cases, counts


def by_class(cases, group):
    return [c for c in cases if c.get("classname") == f"pgdrill.pvc-loss.{group}"]


def outcome(case) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def named(cases, name):
    [case] = [c for c in cases if c.get("name") == name]
    return case


def test_junit_of_a_passing_run_has_a_case_per_probe_activity_check_guardrail_objective():
    evidence, j = passed_run()
    assert evidence["verdict"] == "passed"
    suite, cases, counts = parse(junit_xml(evidence, j))
    assert suite.get("name") == "pvc-loss"
    assert suite.get("hostname") is None
    assert suite.get("timestamp") == "2026-11-30T20:00:00"
    assert suite.get("time") == "600.000"
    assert counts == {
        "tests": 1 + 4 + 10 + 4 + 2 + 3 + 4 + 2,
        "failures": 0,
        "errors": 0,
        "skipped": 0,
    }
    assert len(by_class(cases, "steady_state_before")) == 4
    assert len(by_class(cases, "steady_state_after")) == 4
    assert [c.get("name") for c in by_class(cases, "method")] == [
        a["name"] for a in EXPERIMENT["method"]
    ]
    assert [c.get("name") for c in by_class(cases, "checklist")] == [
        "sentinel",
        "accounts",
        "pg_amcheck",
    ]
    assert [c.get("name") for c in by_class(cases, "guardrails")] == [
        junit.GUARDRAIL_BACKUP,
        junit.GUARDRAIL_CREDENTIALS,
        junit.GUARDRAIL_NONPROD,
        junit.GUARDRAIL_EVIDENCE,
    ]
    assert [c.get("name") for c in by_class(cases, "objectives")] == [
        "RPO objective",
        "RTO objective",
    ]
    assert named(cases, "start-load").get("time") == "10.000"
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["pgdrill.verdict"] == "passed"
    assert properties["pgdrill.environment"] == "develop"
    assert "cnpg-backup-s3.enc.yaml" in named(cases, junit.GUARDRAIL_CREDENTIALS).findtext(
        "system-out"
    )


def test_junit_of_a_failed_checklist_names_the_query_and_what_it_returned():
    evidence, j = failed_checklist_run()
    assert evidence["verdict"] == "failed"
    _, cases, counts = parse(junit_xml(evidence, j))
    assert counts["failures"] == 4 and counts["errors"] == 0 and counts["skipped"] == 0
    failing = {c.get("name"): c.find("failure") for c in cases if outcome(c) == "failure"}
    assert set(failing) == {
        "verification-checklist-on-restored-copy",
        "accounts",
        junit.GUARDRAIL_BACKUP,
        junit.GUARDRAIL_EVIDENCE,
    }
    assert failing["accounts"].get("message") == "expected 100000, got 99990"
    assert "SELECT count(*) FROM pgbench_accounts" in failing["accounts"].text
    activity = failing["verification-checklist-on-restored-copy"]
    assert activity.get("message") == (
        "validation failed on the restored copy: accounts (expected 100000, got 99990)"
    )
    assert "Traceback" in activity.text
    assert "20261130T195500 is not validated" in failing[junit.GUARDRAIL_BACKUP].get("message")
    assert (
        failing[junit.GUARDRAIL_EVIDENCE]
        .get("message")
        .startswith("verdict failed: activity 'verification-checklist-on-restored-copy' failed")
    )
    assert outcome(named(cases, "pg_amcheck")) == "passed"


def test_junit_of_a_refused_run_fails_the_preflight_and_skips_what_never_ran():
    evidence, j = refused_run()
    assert evidence["verdict"] == "refused"
    _, cases, counts = parse(junit_xml(evidence, j))
    assert counts == {
        "tests": 1 + 4 + 10 + 4 + 2 + 1 + 4 + 2,
        "failures": 2,
        "errors": 0,
        "skipped": 4 + 10 + 4 + 1 + 3 + 2,
    }
    preflight = named(cases, "preflight").find("failure")
    assert preflight.get("message").startswith("production drill of 'pvc-loss' refused")
    nonprod = named(cases, junit.GUARDRAIL_NONPROD).find("failure")
    assert "no passing staging run" in nonprod.get("message")
    for case in by_class(cases, "method"):
        assert (
            case.find("skipped")
            .get("message")
            .startswith("not run: the preflight refused the drill: production drill")
        )
    assert {outcome(c) for c in by_class(cases, "rollbacks")} == {"passed"}
    assert outcome(named(cases, "checklist")) == "skipped"
    assert outcome(named(cases, "RTO objective")) == "skipped"


def test_junit_of_an_interrupted_run_errors_the_cut_activity_and_skips_the_rest():
    evidence, j = interrupted_run()
    assert evidence["verdict"] == "interrupted"
    _, cases, counts = parse(junit_xml(evidence, j))
    assert counts["errors"] == 1 and counts["failures"] == 0
    assert named(cases, "cluster-heals").find("error").get("type") == "Interrupted"
    method = by_class(cases, "method")
    assert [outcome(c) for c in method] == ["passed"] * 3 + ["error"] + ["skipped"] * 6
    assert method[-1].find("skipped").get("message") == (
        "not run: the run was interrupted during 'cluster-heals'"
    )
    assert {outcome(c) for c in by_class(cases, "steady_state_after")} == {"skipped"}
    assert {outcome(c) for c in by_class(cases, "steady_state_before")} == {"passed"}
    guardrails = {c.get("name"): outcome(c) for c in by_class(cases, "guardrails")}
    assert guardrails == {
        junit.GUARDRAIL_BACKUP: "skipped",
        junit.GUARDRAIL_CREDENTIALS: "passed",
        junit.GUARDRAIL_NONPROD: "passed",
        junit.GUARDRAIL_EVIDENCE: "skipped",
    }


def test_a_probe_out_of_tolerance_fails_and_the_probes_after_it_are_skipped():
    clock = [0.0]
    records = [
        record(probes()[0], clock, tolerance_met=True),
        record(probes()[1], clock, output={"replicas": 0}, tolerance_met=False),
    ]
    cases = junit.activity_cases(
        "steady_state_after", records, [p["name"] for p in probes()], "unused", hypothesis=True
    )
    assert [c.outcome for c in cases] == ["passed", "failure", "skipped", "skipped"]
    assert cases[1].message == 'tolerance not met: the probe returned {"replicas": 0}'
    assert cases[2].message.startswith("not run: an earlier probe")


def test_xml_survives_control_characters_and_repeated_activity_names(tmp_path):
    evidence, j = failed_checklist_run()
    j["run"][0]["status"] = "failed"
    j["run"][0]["exception"] = ['ActivityFailed: \x1b[31mboom\x00\x1b[0m <&> "quoted"\n']
    j["run"].append(copy.deepcopy(j["run"][1]))
    path = write_junit(tmp_path, evidence, j)
    assert path == tmp_path / "junit.xml"
    _, cases, _ = parse(path.read_text(encoding="utf-8"))
    assert "boom" in named(cases, "start-load").find("failure").get("message")
    assert named(cases, "manual-backup #2") is not None


# -- Prometheus metrics ---------------------------------------------------------------------
def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, name, **extra):
    found = [s.value for s in fams[name].samples if s.labels == {**LABELS, **extra}]
    assert len(found) == 1, (name, extra, fams[name].samples)
    return found[0]


def test_metrics_of_a_passing_run():
    evidence, _ = passed_run()
    fams = families(metrics_text(evidence))
    assert all(name.startswith("pgdrill_") for name in fams)
    assert all(f.type == "gauge" for f in fams.values())
    end = (T0 + timedelta(seconds=600)).timestamp()
    assert value(fams, "pgdrill_last_run_timestamp_seconds") == end
    assert value(fams, "pgdrill_last_success_timestamp_seconds") == end
    assert value(fams, "pgdrill_verdict", verdict="passed") == 1
    for other in ("failed", "refused", "interrupted"):
        assert value(fams, "pgdrill_verdict", verdict=other) == 0
    assert value(fams, "pgdrill_rto_seconds") == 12.0
    assert {s.labels["phase"]: s.value for s in fams["pgdrill_rto_phase_seconds"].samples} == {
        "download_base_backup": 3.0,
        "configure_recovery": 0.5,
        "replay_wal_and_promote": 6.5,
        "validate": 2.0,
    }
    assert value(fams, "pgdrill_lost_writes") == 2
    assert value(fams, "pgdrill_rpo_seconds") == 1.25
    assert value(fams, "pgdrill_failover_writable_primary_seconds") == 4.2
    assert value(fams, "pgdrill_failover_healthy_seconds") == 11.5
    assert value(fams, "pgdrill_failover_client_write_outage_seconds") == 5.1
    assert value(fams, "pgdrill_failover_lost_writes") == 0
    assert value(fams, "pgdrill_backup_age_seconds") == 900.0
    assert value(fams, "pgdrill_checklist_passed_checks") == 3
    assert value(fams, "pgdrill_checklist_failed_checks") == 0
    assert value(fams, "pgdrill_objective_seconds", objective="rto") == 300
    assert value(fams, "pgdrill_objective_met", objective="rto") == 1
    assert value(fams, "pgdrill_objective_met", objective="rpo") == 1


def ledger_entry(verdict, ended, **overrides):
    return {
        "run_id": f"r-{ended}",
        "experiment": "pvc-loss",
        "environment": "develop",
        "target": "sandbox",
        "cluster": "sandbox",
        "verdict": verdict,
        "started_at": at(ended - 60),
        "ended_at": at(ended),
        **overrides,
    }


def test_last_success_comes_from_the_ledger_for_the_same_experiment_environment_cluster():
    evidence, _ = failed_checklist_run()
    entries = [
        ledger_entry("passed", -7200),
        ledger_entry("passed", -3600),
        ledger_entry("failed", -60),
        ledger_entry("passed", -30, cluster="other"),
        ledger_entry("passed", -20, environment="staging"),
        ledger_entry("passed", -10, experiment="backup-restore"),
    ]
    fams = families(metrics_text(evidence, ledger_entries=entries))
    assert (
        value(fams, "pgdrill_last_success_timestamp_seconds")
        == (T0 - timedelta(hours=1)).timestamp()
    )
    assert value(fams, "pgdrill_verdict", verdict="failed") == 1
    assert value(fams, "pgdrill_checklist_passed_checks") == 2
    assert value(fams, "pgdrill_checklist_failed_checks") == 1
    # without the ledger a failed run cannot know; with an empty one there was never a success
    assert "pgdrill_last_success_timestamp_seconds" not in families(metrics_text(evidence))
    assert (
        value(
            families(metrics_text(evidence, ledger_entries=[])),
            "pgdrill_last_success_timestamp_seconds",
        )
        == 0
    )


def test_last_success_read_from_a_verified_ledger_in_the_reports_folder(tmp_path):
    reports = tmp_path / "reports"
    run_dir = reports / "20261129T200000Z-pvc-loss"
    run_dir.mkdir(parents=True)
    (run_dir / "evidence.json").write_text("{}")
    (run_dir / "journal.json").write_text("{}")
    ledger.append_run(reports, run_dir, {**ledger_entry("passed", -86400), "run_id": run_dir.name})
    evidence, _ = refused_run()
    evidence = {**evidence, "environment": "develop"}
    path = write_metrics(tmp_path, evidence, ledger_entries=reports)
    assert path == tmp_path / "metrics.prom"
    fams = families(path.read_text())
    assert (
        value(fams, "pgdrill_last_success_timestamp_seconds")
        == (T0 - timedelta(days=1)).timestamp()
    )
    assert value(fams, "pgdrill_verdict", verdict="refused") == 1
    for absent in (
        "pgdrill_rto_seconds",
        "pgdrill_failover_writable_primary_seconds",
        "pgdrill_backup_age_seconds",
        "pgdrill_checklist_passed_checks",
        "pgdrill_objective_met",
    ):
        assert absent not in fams
    assert value(fams, "pgdrill_objective_seconds", objective="rpo") == 60


def test_metrics_of_an_interrupted_run():
    evidence, _ = interrupted_run()
    fams = families(metrics_text(evidence))
    assert value(fams, "pgdrill_verdict", verdict="interrupted") == 1
    assert (
        value(fams, "pgdrill_last_run_timestamp_seconds")
        == (T0 + timedelta(seconds=80)).timestamp()
    )
    assert "pgdrill_last_success_timestamp_seconds" not in fams
    assert "pgdrill_rto_seconds" not in fams


# -- the Pushgateway ------------------------------------------------------------------------
class Gateway:
    """A real HTTP server on 127.0.0.1 that records what it receives and answers `status`."""

    def __init__(self, status=200):
        self.requests = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                self._record()

            def do_POST(self):
                self._record()

            def _record(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gateway.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)


def test_push_puts_the_metrics_under_job_and_labels():
    evidence, _ = passed_run()
    with Gateway() as gateway:
        push(evidence, gateway.url, timeout=5)
    [request] = gateway.requests
    assert request["method"] == "PUT"
    assert request["path"] == (
        "/metrics/job/pgdrill/cluster/sandbox/environment/develop/experiment/pvc-loss"
    )
    assert "Authorization" not in request["headers"]
    fams = families(request["body"].decode())
    assert value(fams, "pgdrill_verdict", verdict="passed") == 1
    assert value(fams, "pgdrill_rto_seconds") == 12.0


def test_push_sends_url_credentials_as_basic_auth():
    evidence, _ = refused_run()
    with Gateway() as gateway:
        url = gateway.url.replace("http://", "http://pusher:s3cr%40t@") + "/"
        push(evidence, url, job="drills", timeout=5, ledger_entries=[])
    [request] = gateway.requests
    assert request["path"].startswith("/metrics/job/drills/")
    assert (
        request["headers"]["Authorization"]
        == "Basic " + base64.b64encode(b"pusher:s3cr@t").decode()
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_gateway_is_a_target_error_naming_the_url_without_credentials():
    evidence, _ = passed_run()
    port = closed_port()
    with pytest.raises(TargetError) as caught:
        push(evidence, f"http://pusher:hunter22@127.0.0.1:{port}", timeout=5)
    text = str(caught.value)
    assert f"http://***@127.0.0.1:{port}" in caught.value.message
    assert "hunter22" not in text and "pusher" not in text
    assert f"curl http://127.0.0.1:{port}/-/ready" in caught.value.fix
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("status", "fix"), [(500, "is a Pushgateway"), (401, "refused the credentials")]
)
def test_a_gateway_answering_an_error_is_a_target_error(status, fix):
    evidence, _ = passed_run()
    with Gateway(status=status) as gateway:
        url = gateway.url.replace("http://", "http://pusher:hunter22@")
        with pytest.raises(TargetError) as caught:
            push(evidence, url, timeout=5)
    assert f"HTTP {status}" in caught.value.message
    assert fix in caught.value.fix
    assert "hunter22" not in str(caught.value)


def test_redact_url():
    assert metrics.redact_url("https://u:p@gw.example:9091/x") == "https://***@gw.example:9091/x"
    assert metrics.redact_url("u:p@gw:9091") == "***@gw:9091"
    assert metrics.redact_url("http://gw:9091") == "http://gw:9091"
