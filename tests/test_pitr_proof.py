"""Acceptance: a point-in-time restore proves where it stopped. Run twice with no backup in
between, each run restores to its *own* restore point (names are unique per run) and loses
nothing acknowledged before it; two restore points with the same exact name make recovery
stop at the first one, and the verdict fails naming both LSNs."""

import json

import pytest

from tests.conftest import REPO, newest_run_folder, run_chaos
from tests.test_evidence import validate

pytestmark = pytest.mark.sandbox

PITR = "experiments/pitr-restore-point.json"


def test_pitr_twice_without_a_new_backup_reaches_each_runs_own_point(sandbox_env, tmp_path):
    reports = tmp_path / "reports"
    evidences = []
    for attempt in (1, 2):
        out = run_chaos(PITR, sandbox_env, tmp_path)
        folder = newest_run_folder(reports)
        evidence = json.loads((folder / "evidence.json").read_text())
        assert out.returncode == 0, (attempt, evidence["reasons"], out.stderr[-3000:])
        evidences.append(evidence)
    first, second = evidences
    assert first["backup"]["id"] == second["backup"]["id"], "a backup was taken in between"
    for evidence in evidences:
        validate(evidence)
        assert evidence["verdict"] == "passed", evidence["reasons"]
        point = evidence["restore_points"]["mid-load"]
        assert point["real_name"] != "mid-load" and point["real_name"].startswith("mid-load@")
        reached = evidence["restore"]["reached"]
        assert reached["lsn"] == point["lsn"]
        assert reached["stop_kind"] == "restore_point"
        assert reached["stop_value"] == point["real_name"]
        assert evidence["restore"]["position_ok"] is True
        assert evidence["rpo"]["lost_writes"] == 0
        assert evidence["rpo"]["acknowledged_writes"] > evidence["rpo"]["expected_absent"] > 0
        assert evidence["amcheck"]["passed"] is True
    assert first["restore"]["reached"]["lsn"] != second["restore"]["reached"]["lsn"]


def test_a_restore_point_name_used_twice_stops_at_the_first_and_fails(sandbox_env, tmp_path):
    experiment = json.loads((REPO / PITR).read_text())
    mark = {
        "type": "action",
        "name": "mark-dup",
        "provider": {
            "type": "python",
            "module": "actions.backup",
            "func": "mark_restore_point",
            "arguments": {"name": "dup-point", "exact": True},
        },
    }
    write = {
        "type": "probe",
        "name": "a-write-between-the-two-points",
        "provider": {
            "type": "python",
            "module": "probes.sql",
            "func": "writes_succeed",
            "arguments": {},
        },
    }
    restore = next(a for a in experiment["method"] if a["name"] == "restore-to-the-restore-point")
    restore["provider"]["arguments"]["restore_point"] = "dup-point"
    checklist = next(
        a for a in experiment["method"] if a["name"] == "verification-checklist-on-restored-copy"
    )
    experiment["method"] = [mark, write, {**mark, "name": "mark-dup-again"}, restore, checklist]
    path = tmp_path / "dup-point.json"
    path.write_text(json.dumps(experiment))

    out = run_chaos(str(path), sandbox_env, tmp_path)
    assert out.returncode != 0
    folder = newest_run_folder(tmp_path / "reports")
    evidence = json.loads((folder / "evidence.json").read_text())
    journal = json.loads((folder / "journal.json").read_text())
    validate(evidence)
    first_lsn = journal["run"][0]["output"]["lsn"]
    second_lsn = journal["run"][2]["output"]["lsn"]
    assert first_lsn != second_lsn
    assert evidence["verdict"] == "failed"
    assert evidence["restore"]["position_ok"] is False
    assert evidence["restore"]["reached"]["lsn"] == first_lsn
    message = next(r for r in evidence["reasons"] if "wrong recovery position" in r)
    assert first_lsn in message and second_lsn in message
    console = out.stdout + out.stderr
    assert first_lsn in console and second_lsn in console
    # the copy never counted: its backup is not validated by this run
    assert evidence["backup"]["validated"] is False
