"""Acceptance: no backup without restore. After the `make drill` experiment, `pgdrill backups`
shows the drilled backup verified (by that run) and every other backup not;
`--require-verified` fails as soon as the newest backup is one no drill has restored."""

import json
import subprocess

import pytest

from tests.conftest import PGDRILL, REPO, only_run_folder, run_chaos

pytestmark = pytest.mark.sandbox


def backups(env, *args):
    return subprocess.run(
        [PGDRILL, "backups", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_drilled_backup_is_verified_and_a_newer_one_fails_the_gate(
    sandbox, sandbox_env, tmp_path
):
    drill = run_chaos("experiments/pvc-loss.json", sandbox_env, tmp_path)
    folder = only_run_folder(tmp_path / "reports")
    evidence = json.loads((folder / "evidence.json").read_text())
    assert drill.returncode == 0, (evidence["reasons"], drill.stderr[-2000:])
    drilled = evidence["backup"]["id"]

    listed = backups(sandbox_env, "--json", "--require-verified")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    by_id = {b["id"]: b for b in report["backups"]}
    assert len(by_id) >= 2, "the sandbox's first backup and the drill's manual backup"
    assert by_id[drilled]["verified"] is True and by_id[drilled]["verified_by"] == folder.name
    assert [b for b in by_id.values() if b["verified"]] == [by_id[drilled]]
    assert by_id[drilled]["begin_lsn"] and by_id[drilled]["end_lsn"]
    assert report["gate"]["passed"] is True

    newer = sandbox.backup(timeout=300).id
    gate = backups(sandbox_env, "--json", "--require-verified")
    assert gate.returncode == 1
    assert newer in json.loads(gate.stdout)["gate"]["reason"]
    assert newer in gate.stderr
    # a verified backup from today is enough for a monthly gate
    assert backups(sandbox_env, "--require-verified", "--max-age-days", "35").returncode == 0
