"""The real drill, through Chaos Toolkit's own CLI, on a real sandbox."""

import json

import pytest

from tests.conftest import assert_failover_hole_closed, only_run_folder, run_chaos
from tests.test_evidence import validate

pytestmark = pytest.mark.sandbox


def test_pvc_loss_drill_passes_with_evidence(sandbox_env, tmp_path):
    out = run_chaos("experiments/pvc-loss.json", sandbox_env, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    folder = only_run_folder(tmp_path / "reports")
    assert folder.name.endswith("-pvc-loss")
    journal = json.loads((folder / "journal.json").read_text())
    assert journal["status"] == "completed" and journal["deviated"] is False
    evidence = json.loads((folder / "evidence.json").read_text())
    assert evidence["verdict"] == "passed", evidence["reasons"]
    validate(evidence)
    assert evidence["experiment"] == "pvc-loss" and evidence["target"] == "sandbox"
    assert evidence["restore"]["rto_seconds"] > 0
    assert set(evidence["restore"]["phases"]) >= {"restore", "ready", "validate"}
    assert "download_base_backup" in evidence["restore"]["phase_details"]
    assert evidence["backup"]["id"] == evidence["restore"]["backup_id"]
    assert evidence["backup"]["validated"] is True
    assert evidence["failover"]["seconds"] > 0
    # any hole the lost primary left in the archive was closed before the restore, which
    # then reached the end of the archive (below); the report says what it found
    assert_failover_hole_closed(evidence)
    assert "WAL archive after the failover: " in (folder / "report.md").read_text()
    assert evidence["validation"] and all(v["passed"] for v in evidence["validation"])
    assert (folder / "summary.md").read_text().startswith("# pvc-loss: PASSED")
    # the same facts for people and machines (issue 10)
    for name in ("report.html", "report.md", "junit.xml", "metrics.prom"):
        assert (folder / name).is_file(), name
    assert "data:image/png;base64," in (folder / "report.html").read_text()
    from prometheus_client.parser import text_string_to_metric_families

    verdicts = {
        s.labels["verdict"]: s.value
        for family in text_string_to_metric_families((folder / "metrics.prom").read_text())
        if family.name == "pgdrill_verdict"
        for s in family.samples
    }
    assert verdicts["passed"] == 1.0 and verdicts["failed"] == 0.0
    # recovery provably replayed to the end of the archive, and PostgreSQL's own check passed
    assert evidence["restore"]["position_ok"] is True
    assert evidence["restore"]["reached"]["stop_kind"] == "latest"
    assert evidence["amcheck"]["passed"] is True and evidence["amcheck"]["problems"] == []
    assert [v["name"] for v in evidence["validation"]][-1] == "pg_amcheck"
    # every rollback (strategy always) ran and succeeded; restore-test is gone
    assert [(r["activity"]["name"], r["status"]) for r in journal["rollbacks"]] == [
        ("stop-load", "succeeded"),
        ("remove-restore-test", "succeeded"),
    ]
    assert not (folder / "run.lock").exists()
    ledger = [
        json.loads(line) for line in (folder.parent / "ledger.jsonl").read_text().splitlines()
    ]
    assert [(e["run_id"], e["verdict"], e["backup"]["id"]) for e in ledger] == [
        (folder.name, "passed", evidence["backup"]["id"])
    ]


def test_wrong_expected_value_fails_the_drill_and_names_the_query(sandbox_env, tmp_path):
    checklist = tmp_path / "wrong.yaml"
    checklist.write_text(
        "checks:\n"
        "  - name: sentinel-row\n"
        "    query: SELECT value FROM pgdrill_sentinel WHERE key = 'drill'\n"
        "    expected: definitely-not-ok\n"
        "  - name: accepts-writes\n"
        "    query: SELECT NOT pg_is_in_recovery()\n"
        "    expected: true\n"
    )
    env = {**sandbox_env, "PGDRILL_CHECKLIST": str(checklist)}
    out = run_chaos("experiments/pvc-loss.json", env, tmp_path)
    assert out.returncode != 0
    console = out.stdout + out.stderr
    assert "sentinel-row" in console and "definitely-not-ok" in console
    evidence = json.loads((only_run_folder(tmp_path / "reports") / "evidence.json").read_text())
    assert evidence["verdict"] == "failed"
    validate(evidence)
    failed = [v for v in evidence["validation"] if not v["passed"]]
    assert [v["name"] for v in failed] == ["sentinel-row"]
    assert failed[0]["actual"] == "ok"
    assert any("sentinel-row" in r for r in evidence["reasons"])
    assert evidence["backup"]["validated"] is False


def test_a_drill_on_a_repaired_sandbox_says_so(sandbox, sandbox_env, tmp_path):
    import os
    import signal

    from pgdrill.core.procs import pid_alive
    from pgdrill.core.waiting import poll_until

    pid = sandbox.layout.read().supervisor_pid
    os.kill(pid, signal.SIGKILL)
    poll_until(lambda: not pid_alive(pid), timeout=10, what="the supervisor to die")
    out = run_chaos("experiments/pitr-restore-point.json", sandbox_env, tmp_path)
    evidence = json.loads((only_run_folder(tmp_path / "reports") / "evidence.json").read_text())
    assert out.returncode == 0, (evidence["reasons"], out.stderr[-2000:])
    assert evidence["verdict"] == "passed"
    [repair] = evidence["preflight"]["repairs"]
    assert repair.startswith("restarted the supervisor")
    assert sandbox.layout.read().supervisor_pid != pid
    assert "repaired in place" in (only_run_folder(tmp_path / "reports") / "summary.md").read_text()
