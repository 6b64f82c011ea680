"""A restore that cannot work for bad input is refused in the preflight, before the first
activity — before the load, the backup or the fault — not halfway through the drill."""

import json

import pytest

from pgdrill.targets.sandbox import postgres
from tests.conftest import REPO, newest_run_folder, run_chaos
from tests.test_evidence import validate

pytestmark = pytest.mark.sandbox


def variant(tmp_path, source, name, **arguments):
    experiment = json.loads((REPO / source).read_text())
    for activity in experiment["method"]:
        if activity["provider"].get("func") == "restore_latest_backup":
            activity["provider"]["arguments"].update(arguments)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(experiment))
    return str(path)


def refused(out, tmp_path):
    folder = newest_run_folder(tmp_path / "reports")
    evidence = json.loads((folder / "evidence.json").read_text())
    journal = json.loads((folder / "journal.json").read_text())
    validate(evidence)
    assert out.returncode != 0
    assert evidence["verdict"] == "refused", evidence["reasons"]
    assert journal["run"] == [] and evidence["fault"] is None and evidence["load"] is None
    return evidence["reasons"][0]


def test_an_unknown_restore_point_is_refused_before_anything_runs(sandbox, sandbox_env, tmp_path):
    pid = postgres.postmaster_pid(sandbox.layout.data_dir(sandbox.primary().name))
    path = variant(
        tmp_path,
        "experiments/pitr-restore-point.json",
        "unknown-point",
        restore_point="never-marked",
    )
    reason = refused(run_chaos(path, sandbox_env, tmp_path), tmp_path)
    assert "restore point 'never-marked' was not created in this run" in reason
    assert postgres.postmaster_pid(sandbox.layout.data_dir(sandbox.primary().name)) == pid


def test_a_target_time_before_every_backup_is_refused_before_anything_runs(
    sandbox, sandbox_env, tmp_path
):
    path = variant(
        tmp_path,
        "experiments/backup-restore.json",
        "too-old",
        target_time="2000-01-01T00:00:00+00:00",
    )
    reason = refused(run_chaos(path, sandbox_env, tmp_path), tmp_path)
    assert "no backup ended before the recovery target 2000-01-01T00:00:00+00:00" in reason


def test_the_shipped_restores_pass_the_preflight(sandbox, sandbox_env, tmp_path):
    out = run_chaos("experiments/pitr-restore-point.json", sandbox_env, tmp_path)
    folder = next(p for p in (tmp_path / "reports").iterdir() if p.is_dir())
    context = json.loads((folder / "context.json").read_text())
    assert out.returncode == 0, out.stderr[-2000:]
    [checked] = context["preflight_restores"]
    assert checked["activity"] == "restore-to-the-restore-point"
    assert "restore_point" not in checked  # marked by the method itself: nothing to look up


def test_a_cluster_the_sandbox_does_not_run_is_refused(sandbox, sandbox_env, tmp_path):
    out = run_chaos(
        "experiments/backup-restore.json", {**sandbox_env, "PGDRILL_CLUSTER": "pg-main"}, tmp_path
    )
    reason = refused(out, tmp_path)
    assert "runs cluster 'sandbox', not 'pg-main'" in reason
