"""`pgdrill ledger verify`, `pgdrill runs` (pure, ledgers built with append_run) and
`pgdrill backups` against the real session sandbox."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgdrill.cli import main
from pgdrill.evidence import ledger


@pytest.fixture(autouse=True)
def _isolated_reports(tmp_path, monkeypatch):
    """Keep every command away from the repository's own reports/."""
    monkeypatch.setenv("PGDRILL_REPORTS", str(tmp_path / "reports"))


def record_run(reports: Path, run_id: str, **overrides) -> dict:
    run_dir = reports / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "evidence.json").write_text(json.dumps({"verdict": "passed"}))
    (run_dir / "journal.json").write_text(json.dumps({"status": "completed"}))
    now = datetime.now(UTC).isoformat()
    record = {
        "run_id": run_id,
        "experiment": "pvc-loss",
        "environment": "develop",
        "target": "sandbox",
        "cluster": "sandbox",
        "cluster_identity": "1",
        "backup": {
            "id": "20261130T223912",
            "begin_lsn": "0/4000028",
            "end_lsn": "0/4000120",
            "end_time": now,
        },
        "verdict": "passed",
        "started_at": now,
        "ended_at": now,
        "rto_seconds": 12.25,
        "lost_writes": 0,
        "restore_reached": None,
        **overrides,
    }
    return ledger.append_run(reports, run_dir, record)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ledger_verify_ok_and_runs_listing(tmp_path, capsys):
    reports = tmp_path / "reports"
    record_run(reports, "run-a")
    record_run(
        reports,
        "run-b",
        verdict="failed",
        backup=None,
        rto_seconds=None,
        lost_writes=None,
        environment="staging",
        target="cnpg",
    )
    code, out, _ = cli(capsys, "ledger", "verify", "--reports", str(reports))
    assert code == 0 and out.startswith("ledger OK: 2 runs")

    code, out, _ = cli(capsys, "runs", "--reports", str(reports))
    assert code == 0
    header, second, first = out.splitlines()  # newest first
    assert header.split() == [
        "seq",
        "run",
        "experiment",
        "env",
        "target",
        "verdict",
        "rto_s",
        "lost",
        "backup",
        "ended_at",
    ]
    assert first.split()[:9] == [
        "1",
        "run-a",
        "pvc-loss",
        "develop",
        "sandbox",
        "passed",
        "12.2",
        "0",
        "20261130T223912",
    ]
    assert second.split()[:9] == [
        "2",
        "run-b",
        "pvc-loss",
        "staging",
        "cnpg",
        "failed",
        "-",
        "-",
        "-",
    ]

    code, out, _ = cli(capsys, "runs", "--json")  # --reports defaults to $PGDRILL_REPORTS
    rows = json.loads(out)
    assert code == 0 and [r["run_id"] for r in rows] == ["run-b", "run-a"]  # newest first
    assert rows[1]["backup_id"] == "20261130T223912" and rows[1]["rto_seconds"] == 12.25
    assert {
        "seq",
        "experiment",
        "environment",
        "target",
        "verdict",
        "lost_writes",
        "ended_at",
    } <= set(rows[1])


def test_an_empty_reports_folder_has_a_valid_empty_ledger(tmp_path, capsys):
    assert cli(capsys, "ledger", "verify")[:2] == (
        0,
        f"ledger OK: 0 runs ({tmp_path}/reports/ledger.jsonl)\n",
    )
    code, out, _ = cli(capsys, "runs", "--json")
    assert code == 0 and json.loads(out) == []


def test_a_tampered_ledger_fails_verify_and_runs(tmp_path, capsys):
    reports = tmp_path / "reports"
    for name in ("run-a", "run-b", "run-c"):
        record_run(reports, name)
    path = ledger.ledger_path(reports)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")  # the middle line deleted

    code, out, _ = cli(capsys, "ledger", "verify")
    assert code == 1 and "does NOT verify" in out
    assert "  line 2: has seq 3, expected 2" in out

    code, out, err = cli(capsys, "runs")
    assert code == 1 and out == ""
    assert "does not verify: line 2 " in err and "fix: restore" in err
    assert "Traceback" not in err


# -- pgdrill backups on the real sandbox ----------------------------------------------------------
LSN = re.compile(r"^[0-9A-F]+/[0-9A-F]+$")


@pytest.mark.sandbox
def test_backups_are_verified_only_by_a_passing_restore_in_the_ledger(
    sandbox, sandbox_env, tmp_path, capsys
):
    from probes.backup import latest_backup_verified

    reports = tmp_path / "reports"
    home = str(sandbox.layout.home)
    identity = sandbox.cluster_identity()
    restored = sandbox.backup(timeout=300)
    run_id = "20261130T230000Z-backup-restore"
    record_run(
        reports,
        run_id,
        experiment="backup-restore",
        cluster_identity=identity,
        backup={
            "id": restored.id,
            "begin_lsn": restored.begin_lsn,
            "end_lsn": restored.end_lsn,
            "end_time": restored.end_time.isoformat(),
        },
    )
    newer = sandbox.backup(timeout=300)
    assert newer.id != restored.id

    code, out, _ = cli(capsys, "backups", "--json", "--home", home, "--reports", str(reports))
    data = json.loads(out)
    assert code == 0 and data["gate"] is None
    assert data["cluster"] == "sandbox" and data["cluster_identity"] == identity
    rows = {b["id"]: b for b in data["backups"]}
    assert rows[restored.id]["verified"] is True and rows[restored.id]["verified_by"] == run_id
    assert rows[newer.id]["verified"] is False and rows[newer.id]["verified_by"] is None
    for row in rows.values():
        assert LSN.match(row["begin_lsn"]) and LSN.match(row["end_lsn"])
        assert isinstance(row["size"], int) and row["size"] > 100_000
        # the session's sandbox may have failed over before: any timeline, but a real one
        assert row["begin_time"] and row["end_time"] and row["timeline"] >= 1
        assert row["status"] == "DONE"
    assert [b["id"] for b in data["backups"]] == sorted(rows)  # oldest first

    code, out, err = cli(
        capsys, "backups", "--json", "--require-verified", "--home", home, "--reports", str(reports)
    )
    gate = json.loads(out)["gate"]
    assert code == 1 and gate["passed"] is False and newer.id in gate["reason"]
    assert newer.id in err

    code, out, _ = cli(
        capsys,
        "backups",
        "--require-verified",
        "--max-age-days",
        "1",
        "--home",
        home,
        "--reports",
        str(reports),
    )
    assert code == 0 and f"verified by {run_id}" in out and "gate: passed" in out

    # the probe reads the same verified ledger, through the experiment's configuration
    assert latest_backup_verified(max_age_days=1, configuration={"reports_dir": str(reports)})
    assert not latest_backup_verified(configuration={"reports_dir": str(tmp_path / "none")})
    assert "no verified recent backup" in capsys.readouterr().err

    # the run's evidence edited after it was recorded: nothing it vouched for counts any more
    (reports / run_id / "evidence.json").write_text(json.dumps({"verdict": "passed!"}))
    code, out, err = cli(capsys, "backups", "--json", "--home", home, "--reports", str(reports))
    assert code == 1 and out == "" and "line 1 " in err and "evidence.json" in err
