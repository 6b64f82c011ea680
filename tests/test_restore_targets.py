"""Restores stop where asked: a named restore point, or the end of the archive."""

import pytest
from chaoslib.exceptions import ActivityFailed

from actions.backup import mark_restore_point
from actions.restore import cleanup_restore, restore_latest_backup
from pgdrill.evidence.runcontext import RUN_DIR_KEY
from pgdrill.targets.sandbox.cluster import SandboxCluster
from pgdrill.targets.sandbox.state import RESTORE_NAME
from probes.sql import query_value

pytestmark = pytest.mark.sandbox


def write_rows(sandbox, first, last):
    with sandbox.connect(sandbox.primary()) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS pitr_probe (id int PRIMARY KEY)")
        conn.execute(
            "INSERT INTO pitr_probe SELECT generate_series(%s::int, %s::int)", (first, last)
        )


def test_restore_to_named_point_and_to_latest(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    sandbox.wait_ready(timeout=120)
    with sandbox.connect(sandbox.primary()) as conn:
        conn.execute("DROP TABLE IF EXISTS pitr_probe")
    sandbox.backup(timeout=300)
    write_rows(sandbox, 1, 10)
    point = mark_restore_point("before-bad-change", configuration=cfg)
    assert point["lsn"]
    write_rows(sandbox, 11, 25)
    try:
        record = restore_latest_backup(restore_point="before-bad-change", configuration=cfg)
        assert record["target"] == {
            "kind": "restore_point",
            "name": "before-bad-change",
            "real_name": point["real_name"],
            "expected_lsn": point["lsn"],
            "lsn": None,
            "time": None,
        }
        assert point["real_name"].startswith("before-bad-change@")
        assert record["reached"]["lsn"] == point["lsn"] and record["position_ok"] is True
        assert (
            query_value(
                "SELECT count(*) FROM pitr_probe", instance="restore-test", configuration=cfg
            )
            == 10
        )

        state = sandbox.layout.read()
        cluster = SandboxCluster(sandbox.layout, state, sandbox._cluster().run_as)
        cluster.wait_archiving(state.primary_name)
        restore_latest_backup(configuration=cfg)
        assert (
            query_value(
                "SELECT count(*) FROM pitr_probe", instance="restore-test", configuration=cfg
            )
            == 25
        )
    finally:
        cleanup_restore(configuration=cfg)
    assert sandbox.restored_instance() is None


def test_unknown_restore_point_is_refused_before_restoring(sandbox, sandbox_env, tmp_path):
    """A name neither marked in this run nor in the WAL since the backup began is refused
    before restore-test is touched (it used to replay the whole archive and end in
    PostgreSQL's FATAL "recovery ended before configured recovery target was reached")."""
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    cleanup_restore(configuration=cfg)
    backup = max((b for b in sandbox.list_backups() if b.completed), key=lambda b: b.end_time)
    with pytest.raises(ActivityFailed) as err:
        restore_latest_backup(restore_point="never-created", timeout_seconds=120, configuration=cfg)
    assert str(err.value) == (
        f"restore point 'never-created' was not created in this run and is not in the WAL "
        f"since backup {backup.id} (began at LSN {backup.begin_lsn})\n"
        f"  fix: mark it with actions.backup.mark_restore_point, or check the name"
    )
    assert sandbox.restored_instance() is None
    assert not sandbox.layout.data_dir(RESTORE_NAME).exists()


def test_fingerprint_mismatch_is_bisected_to_the_damaged_key(sandbox, sandbox_env, tmp_path):
    from pgdrill.evidence.runcontext import RunContext
    from probes.verify import fingerprints_match

    cfg = {RUN_DIR_KEY: str(tmp_path)}
    sandbox.wait_ready(timeout=120)
    try:
        restore_latest_backup(configuration=cfg)
        assert fingerprints_match(configuration=cfg) is True
        with sandbox.connect(sandbox.restored_instance()) as conn:
            conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 4321")
        with pytest.raises(ActivityFailed, match="pgbench_accounts key ranges"):
            fingerprints_match(configuration=cfg)
        evidence = RunContext(tmp_path).read()["fingerprints"]
        assert evidence["match"] is False
        table = next(t for t in evidence["tables"] if t["table"].endswith("pgbench_accounts"))
        assert [t for t in evidence["tables"] if not t["match"]] == [table]
        [[lo, hi]] = table["narrowed_ranges"]
        assert lo <= 4321 < hi and hi - lo <= 64
    finally:
        cleanup_restore(configuration=cfg)
