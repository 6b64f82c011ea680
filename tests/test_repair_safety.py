"""Acceptance: the repair never makes things worse. A restored copy that failed its
checklist, or whose tables differ from the pre-damage fingerprints, is never copied into the
primary: the repair refuses and the primary's table keeps its rows and fingerprint."""

import pytest
from chaoslib.exceptions import ActivityFailed

from actions.backup import mark_restore_point
from actions.restore import cleanup_restore, repair_table_from_restore, restore_latest_backup
from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext
from pgdrill.verification.fingerprint import fingerprint_tables
from probes.verify import capture_fingerprints, checklist_passes, fingerprints_match

pytestmark = pytest.mark.sandbox

TABLE = "pgbench_accounts"


def primary_print(sandbox):
    with sandbox.connect(sandbox.primary()) as conn:
        return fingerprint_tables(conn, [TABLE])[f"public.{TABLE}"]


def restore_to_point(sandbox, cfg):
    sandbox.wait_ready(timeout=120)
    mark_restore_point("pre-damage", configuration=cfg)
    capture_fingerprints(tables=[TABLE], label="pre-damage", configuration=cfg)
    # stands in for corrupt_table (the primary's table stays intact, so that a refused repair
    # can be seen to leave it as it was)
    RunContext.from_configuration(cfg).update(fault={"kind": "corrupt_table", "table": TABLE})
    restore_latest_backup(restore_point="pre-damage", configuration=cfg)


def test_repair_refuses_a_copy_that_failed_its_checklist(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "checks:\n  - name: sentinel-row\n"
        "    query: SELECT value FROM pgdrill_sentinel WHERE key = 'drill'\n"
        "    expected: not-ok\n"
    )
    before = primary_print(sandbox)
    try:
        restore_to_point(sandbox, cfg)
        with pytest.raises(ActivityFailed, match="sentinel-row"):
            checklist_passes(checklist=str(wrong), configuration=cfg)
        assert (
            fingerprints_match(restore_point="pre-damage", tables=[TABLE], configuration=cfg)
            is True
        )
        with pytest.raises(ActivityFailed, match="refused.*failed its checklist: sentinel-row"):
            repair_table_from_restore(TABLE, configuration=cfg)
    finally:
        cleanup_restore(configuration=cfg)
    after = primary_print(sandbox)
    assert (after.rows, after.digest) == (before.rows, before.digest) == (100000, before.digest)
    repair = RunContext(tmp_path).read()["repair"]
    assert repair["performed"] is False and repair["rows"] is None
    assert any("sentinel-row" in r for r in repair["refused"])


def test_repair_refuses_a_copy_whose_fingerprints_differ(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    before = primary_print(sandbox)
    try:
        restore_to_point(sandbox, cfg)
        checklist_passes(configuration=cfg)
        # the copy is damaged after its checklist passed: 10 rows fewer, same balances
        with sandbox.connect(sandbox.restored_instance()) as conn:
            conn.execute(f"DELETE FROM {TABLE} WHERE aid <= 10 AND abalance = 0")
        with pytest.raises(ActivityFailed, match="differ"):
            fingerprints_match(restore_point="pre-damage", tables=[TABLE], configuration=cfg)
        with pytest.raises(ActivityFailed, match="refused.*fingerprints differ"):
            repair_table_from_restore(TABLE, configuration=cfg)
    finally:
        cleanup_restore(configuration=cfg)
    after = primary_print(sandbox)
    assert (after.rows, after.digest) == (before.rows, before.digest)


def test_a_repair_whose_result_differs_is_rolled_back(sandbox, sandbox_env, tmp_path):
    from pgdrill.restore.repair import RepairRefused, copy_table_checked

    cfg = {RUN_DIR_KEY: str(tmp_path)}
    before = primary_print(sandbox)
    try:
        sandbox.wait_ready(timeout=120)
        restore_latest_backup(configuration=cfg)
        with sandbox.connect(sandbox.restored_instance()) as conn:
            conn.execute(f"UPDATE {TABLE} SET abalance = abalance + 1 WHERE aid = 4321")
        with (
            sandbox.connect(sandbox.restored_instance()) as src,
            sandbox.connect(sandbox.primary()) as dst,
        ):
            with pytest.raises(RepairRefused, match="rolled back"):
                copy_table_checked(src, dst, TABLE, before)
    finally:
        cleanup_restore(configuration=cfg)
    after = primary_print(sandbox)
    assert (after.rows, after.digest) == (before.rows, before.digest)


def test_a_run_without_a_fault_has_nothing_to_repair(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    before = primary_print(sandbox)
    report = repair_table_from_restore(TABLE, configuration=cfg)
    assert report["performed"] is False and report["refused"] == []
    after = primary_print(sandbox)
    assert (after.rows, after.digest) == (before.rows, before.digest)
