"""Bad input gets one line naming the problem and the fix, a non-zero exit, and nothing is
destroyed: `pgdrill validate` before a drill, the preflight of `chaos run`, and the checks
restore_latest_backup makes before it touches restore-test."""

import copy
import dataclasses
import json
import os
import subprocess
import uuid
from datetime import timedelta

import pytest
from chaoslib.exceptions import ActivityFailed

import actions.restore
from actions.restore import cleanup_restore, restore_latest_backup
from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext
from pgdrill.targets.sandbox.state import RESTORE_NAME
from pgdrill.targets.sandbox.target import SandboxTarget
from tests.conftest import PGDRILL, REPO, only_run_folder, run_chaos

EXPERIMENTS = sorted(str(p.relative_to(REPO)) for p in (REPO / "experiments").glob("*.json"))


def validate(*paths, tmp_path, **env):
    return subprocess.run(
        [PGDRILL, "validate", *map(str, paths)],
        cwd=REPO,
        env={**os.environ, "PGDRILL_REPORTS": str(tmp_path / "reports"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(out, *, code=2):
    """Exit `code`, `pgdrill: error: <one line>` and `  fix: ...`, no traceback."""
    assert out.returncode == code, (out.stdout, out.stderr)
    assert "Traceback" not in out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("pgdrill: error: ") and lines[1].startswith("  fix: ")
    return lines


def assert_no_restore_test(sandbox):
    assert sandbox.restored_instance() is None
    assert not sandbox.layout.instance_dir(RESTORE_NAME).exists()


# -- pgdrill validate ------------------------------------------------------------------------
def test_truncated_experiment_names_line_and_column(tmp_path):
    broken = tmp_path / "pvc-loss.json"
    broken.write_text((REPO / "experiments/pvc-loss.json").read_text()[:500])
    lines = assert_one_line_error(validate(broken, tmp_path=tmp_path))
    assert lines[0] == (
        f"pgdrill: error: {broken}:4:18: Unterminated string starting here; "
        f"the file ends before the JSON does (truncated?)"
    )
    assert "fix the JSON at line 4, column 18" in lines[1]


def test_syntax_error_in_yaml_experiment_names_line_and_column(tmp_path):
    broken = tmp_path / "drill.yaml"
    broken.write_text("title: x\n  description: [\n")
    lines = assert_one_line_error(validate(broken, tmp_path=tmp_path))
    assert lines[0].startswith(f"pgdrill: error: {broken}:2:")


def test_every_shipped_experiment_is_valid(tmp_path):
    out = validate(*EXPERIMENTS, tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{path}: valid" for path in EXPERIMENTS]


def test_unknown_target_fails_validation(tmp_path):
    lines = assert_one_line_error(
        validate("experiments/pvc-loss.json", tmp_path=tmp_path, PGDRILL_TARGET="nope")
    )
    assert lines == [
        "pgdrill: error: experiments/pvc-loss.json: unknown target 'nope' "
        "(pgdrill_target or PGDRILL_TARGET)",
        "  fix: set pgdrill_target to one of sandbox, cnpg",
    ]


def test_missing_checklist_fails_validation(tmp_path):
    missing = tmp_path / "nope.yaml"
    lines = assert_one_line_error(
        validate("experiments/pvc-loss.json", tmp_path=tmp_path, PGDRILL_CHECKLIST=str(missing))
    )
    assert lines[0] == (
        "pgdrill: error: experiments/pvc-loss.json: configuration key checklist "
        f"(PGDRILL_CHECKLIST): cannot read checklist {missing}: No such file or "
        "directory"
    )


def test_first_bad_file_stops_validation(tmp_path):
    experiment = json.loads((REPO / "experiments/pvc-loss.json").read_text())
    experiment["runtime"] = {}
    bad = tmp_path / "no-rollbacks.json"
    bad.write_text(json.dumps(experiment))
    out = validate(
        "experiments/pvc-loss.json", bad, "experiments/backup-restore.json", tmp_path=tmp_path
    )
    lines = assert_one_line_error(out)
    assert out.stdout.splitlines() == ["experiments/pvc-loss.json: valid"]
    assert "the rollback strategy is None, not 'always'" in lines[0]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda e: e.update(controls=[]), "the pgdrill control is not declared"),
        (
            lambda e: e["steady-state-hypothesis"]["probes"][0]["provider"].update(func="nope"),
            "The python module 'probes.sql' does not expose a function called 'nope'",
        ),
        (
            lambda e: e["steady-state-hypothesis"]["probes"][2]["provider"]["arguments"].update(
                max_age=1
            ),
            "argument 'max_age' is not part of the function signature",
        ),
    ],
    ids=["no-control", "unknown-function", "unknown-argument"],
)
def test_experiment_mistakes_fail_validation(tmp_path, change, expected):
    experiment = json.loads((REPO / "experiments/pvc-loss.json").read_text())
    change(experiment)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(experiment))
    lines = assert_one_line_error(validate(bad, tmp_path=tmp_path))
    assert expected in lines[0]


# -- chaos run -------------------------------------------------------------------------------
def test_unknown_target_refuses_the_drill_with_the_fix(tmp_path):
    home, reports = tmp_path / "home", tmp_path / "reports"
    env = {
        **os.environ,
        "PGDRILL_TARGET": "nope",
        "PGDRILL_HOME": str(home),
        "PGDRILL_REPORTS": str(reports),
    }
    out = run_chaos("experiments/backup-restore.json", env, tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stdout + out.stderr
    assert "fix: set pgdrill_target to one of sandbox, cnpg" in out.stderr
    evidence = json.loads((only_run_folder(reports) / "evidence.json").read_text())
    assert evidence["verdict"] == "refused"
    assert evidence["reasons"] == ["preflight refused: unknown target 'nope'"]
    assert not home.exists(), "nothing may be created for a refused drill"


# -- restore_latest_backup: refused before restore-test is touched -----------------------------
class ServerNameTarget(SandboxTarget):
    """The session sandbox with its bucket read under another serverName: a real, empty
    backup path in the same S3 server. (`SandboxTarget(cluster="nobody")` on the same home is
    not that: the sandbox's state names its one cluster, and its backups are listed.)"""

    def _cluster(self):
        cluster = copy.copy(super()._cluster())
        cluster.state = dataclasses.replace(cluster.state, cluster=self.cluster_name)
        return cluster


@pytest.mark.sandbox
def test_empty_object_store_is_refused_naming_bucket_and_server(
    sandbox, sandbox_env, tmp_path, monkeypatch
):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    nobody = ServerNameTarget(home=sandbox.layout.home, cluster="nobody")
    assert nobody.list_backups() == []
    monkeypatch.setattr(actions.restore, "ready_target", lambda configuration, secrets: nobody)
    cleanup_restore(configuration=cfg)
    with pytest.raises(ActivityFailed) as err:
        restore_latest_backup(configuration=cfg)
    store = sandbox._cluster().store
    assert str(err.value) == (
        f"there is no completed backup in the object store s3://{store.bucket}/nobody/ (bucket "
        f"{store.bucket}, serverName nobody, at {store.endpoint_url})\n"
        f"  fix: take one first (actions.backup.trigger_backup), or check the bucket and "
        f"serverName (the cluster name)"
    )
    assert_no_restore_test(sandbox)
    assert "restore" not in RunContext(tmp_path).read()


@pytest.mark.sandbox
def test_target_time_before_the_oldest_backup_is_refused(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    oldest = min((b for b in sandbox.list_backups() if b.completed), key=lambda b: b.end_time)
    too_early = oldest.end_time - timedelta(minutes=1)
    cleanup_restore(configuration=cfg)
    with pytest.raises(ActivityFailed) as err:
        restore_latest_backup(target_time=too_early.isoformat(), configuration=cfg)
    assert str(err.value) == (
        f"no backup ended before the recovery target {too_early.isoformat()}; the oldest "
        f"completed backup {oldest.id} ended {oldest.end_time.isoformat()}\n"
        f"  fix: choose a later recovery target, or keep older backups"
    )
    assert_no_restore_test(sandbox)
    assert "restore" not in RunContext(tmp_path).read()


def create_point(sandbox, name, archived=True):
    """A restore point written straight into the WAL (not marked by this run), archived."""
    from actions.backup import wait_archived

    with sandbox.connect(sandbox.primary(), "postgres") as conn:
        end = str(conn.execute("SELECT pg_create_restore_point(%s)", (name,)).fetchone()[0])
        segment = conn.execute("SELECT pg_walfile_name(%s::pg_lsn)", (end,)).fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
        if archived:
            wait_archived(conn, segment, timeout=120)
    return end


@pytest.mark.sandbox
def test_restore_point_only_in_wal_before_the_backup_is_refused_and_restore_test_kept(
    sandbox, sandbox_env, tmp_path
):
    """A name written into the WAL by someone else restores (no false refusal); a name that is
    only in the WAL *before* the chosen backup began is refused, and the restore-test copy
    the earlier restore left is not touched."""
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    sandbox.wait_ready(timeout=120)
    old, new = f"old-{uuid.uuid4().hex[:8]}", f"new-{uuid.uuid4().hex[:8]}"
    create_point(sandbox, old, archived=False)
    backup = sandbox.backup(timeout=300)
    new_end = create_point(sandbox, new)
    try:
        record = restore_latest_backup(restore_point=new, configuration=cfg)
        assert record["backup_id"] == backup.id
        check = record["restore_point_check"]
        assert check["checked"] is True and check["since_lsn"] == backup.begin_lsn
        assert record["reached"]["lsn"] == new_end and record["position_ok"] is True
        assert record["reached"]["reason"] == f'at restore point "{new}"'
        before = sandbox.layout.read()

        with pytest.raises(ActivityFailed) as err:
            restore_latest_backup(restore_point=old, configuration=cfg)
        assert str(err.value) == (
            f"restore point '{old}' was not created in this run and is not in the WAL since "
            f"backup {backup.id} (began at LSN {backup.begin_lsn})\n"
            f"  fix: mark it with actions.backup.mark_restore_point, or check the name"
        )
        after = sandbox.layout.read()
        assert (after.restore_port, after.restore_backup_id) == (
            before.restore_port,
            before.restore_backup_id,
        )
        with sandbox.connect(sandbox.restored_instance(), "postgres") as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
        assert RunContext(tmp_path).read()["restore"]["requested"]["name"] == new
    finally:
        cleanup_restore(configuration=cfg)
    assert_no_restore_test(sandbox)
