"""Acceptance: an interrupted drill cleans up and leaves evidence. SIGINT and SIGTERM in the
middle of the restore run the rollbacks at once; SIGKILL leaves partial evidence and the
next `pgdrill` command finishes it and removes the leftovers; a following drill passes."""

import json
import signal
import subprocess
from pathlib import Path

import pytest

from pgdrill.core.procs import pid_alive
from pgdrill.core.waiting import poll_until
from pgdrill.targets.sandbox.state import RESTORE_NAME
from tests.conftest import CHAOS, PGDRILL, REPO, only_run_folder, run_chaos
from tests.test_evidence import validate

pytestmark = pytest.mark.sandbox

EXPERIMENT = "experiments/backup-restore.json"
RESTORE_ACTIVITY = "restore-latest-backup-into-restore-test"


def start_drill(env, tmp_path):
    return subprocess.Popen(
        [
            CHAOS,
            "--no-version-check",
            "--no-log-file",
            "run",
            "--journal-path",
            str(tmp_path / "journal.json"),
            EXPERIMENT,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_mid_restore(sandbox, reports: Path) -> Path:
    """The run folder, once barman-cloud-restore is writing into restore-test."""

    def restoring():
        folders = [p for p in reports.glob("*") if p.is_dir()]
        if not folders:
            return None
        try:
            context = json.loads((folders[0] / "context.json").read_text())
        except (OSError, ValueError):
            return None
        current = (context.get("current_activity") or {}).get("name")
        data = sandbox.layout.data_dir(RESTORE_NAME)
        return folders[0] if current == RESTORE_ACTIVITY and data.is_dir() else None

    return poll_until(restoring, timeout=240, interval=0.05, what="the drill's restore to start")


def assert_interrupted_and_clean(sandbox, folder: Path, found_dead: bool) -> dict:
    evidence = json.loads((folder / "evidence.json").read_text())
    validate(evidence)
    assert evidence["verdict"] == "interrupted", evidence["reasons"]
    assert evidence["interruption"] == {
        "during": RESTORE_ACTIVITY,
        "phase": "method",
        "last_completed_activity": "manual-backup",
        "found_dead": found_dead,
    }
    journal = json.loads((folder / "journal.json").read_text())
    assert journal["status"] == "interrupted"
    assert [(r["activity"]["name"], r["status"]) for r in journal["run"]] == [
        ("start-load", "succeeded"),
        ("manual-backup", "succeeded"),
        (RESTORE_ACTIVITY, "interrupted"),
    ]
    assert sandbox.restored_instance() is None
    assert not sandbox.layout.instance_dir(RESTORE_NAME).exists()
    assert not (folder / "run.lock").exists()
    ledger = [
        json.loads(line) for line in (folder.parent / "ledger.jsonl").read_text().splitlines()
    ]
    assert [(e["run_id"], e["verdict"]) for e in ledger] == [(folder.name, "interrupted")]
    return journal


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_restore_runs_the_rollbacks_and_says_interrupted(
    signum, sandbox, sandbox_env, tmp_path
):
    sandbox.wait_ready(timeout=120)
    drill = start_drill(sandbox_env, tmp_path)
    try:
        folder = wait_mid_restore(sandbox, tmp_path / "reports")
        drill.send_signal(signum)
        output, _ = drill.communicate(timeout=240)
    finally:
        drill.kill()
    assert drill.returncode != 0
    assert "verdict: INTERRUPTED" in output
    journal = assert_interrupted_and_clean(sandbox, folder, found_dead=False)
    assert [(r["activity"]["name"], r["status"]) for r in journal["rollbacks"]] == [
        ("stop-load", "succeeded"),
        ("remove-restore-test", "succeeded"),
    ]


def test_sigkill_mid_drill_is_finished_by_the_next_command_and_a_drill_then_passes(
    sandbox, sandbox_env, tmp_path
):
    sandbox.wait_ready(timeout=120)
    drill = start_drill(sandbox_env, tmp_path)
    try:
        folder = wait_mid_restore(sandbox, tmp_path / "reports")
        # let barman-cloud-restore write into restore-test: the leftovers are the point here
        data = sandbox.layout.data_dir(RESTORE_NAME)
        poll_until(
            lambda: data.is_dir() and any(data.iterdir()),
            timeout=120,
            interval=0.02,
            what="barman-cloud-restore to write into restore-test",
        )
        drill.send_signal(signal.SIGKILL)
        drill.communicate(timeout=60)
    finally:
        drill.kill()
    partial = json.loads((folder / "evidence.json").read_text())
    assert partial["verdict"] == "running" and partial["partial"] is True
    validate(partial)
    load_pid = json.loads((folder / "context.json").read_text())["load"]["pid"]
    assert (folder / "run.lock").exists()

    # the next pgdrill command finds the dead run first
    out = subprocess.run(
        [PGDRILL, "sandbox", "status"],
        cwd=REPO,
        env=sandbox_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert f"found run {folder.name} interrupted" in out.stderr
    assert_interrupted_and_clean(sandbox, folder, found_dead=True)
    assert not pid_alive(load_pid)
    evidence = json.loads((folder / "evidence.json").read_text())
    assert "removed its restore-test copy" in " ".join(
        json.loads((folder / "context.json").read_text())["recovery_cleanup"]
    )
    assert evidence.get("partial") is None

    # and the next drill runs and passes
    reports_next = tmp_path / "next"
    env = {**sandbox_env, "PGDRILL_REPORTS": str(reports_next)}
    done = run_chaos(EXPERIMENT, env, tmp_path)
    evidence = json.loads((only_run_folder(reports_next) / "evidence.json").read_text())
    assert done.returncode == 0, (evidence["reasons"], done.stderr[-2000:])
    assert evidence["verdict"] == "passed"
