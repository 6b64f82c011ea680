"""Lost-write counting is exact: a restore to a named restore point taken in the middle of
load, compared with ground truth read from the source."""

from pathlib import Path

import pytest

from actions.backup import mark_restore_point
from actions.load import start_load, stop_load
from actions.restore import cleanup_restore, restore_latest_backup
from pgdrill.chaos.writes import ack_log, present_writes
from pgdrill.core.waiting import poll_until
from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext
from pgdrill.load.acklog import read_acks
from probes.verify import lost_writes

pytestmark = pytest.mark.sandbox


def acked(run_dir):
    return len(read_acks(ack_log(run_dir))) if ack_log(run_dir).exists() else 0


def test_lost_and_expected_absent_match_ground_truth(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    sandbox.wait_ready(timeout=120)
    sandbox.backup(timeout=300)
    start_load(users=4, spawn_rate=4, configuration=cfg)
    try:
        poll_until(lambda: acked(tmp_path) >= 200, timeout=60, what="200 acknowledged writes")
        point = mark_restore_point("mid-load", configuration=cfg)
        before_point = acked(tmp_path)
        poll_until(
            lambda: acked(tmp_path) >= before_point + 200,
            timeout=60,
            what="200 more acknowledged writes after the restore point",
        )
    finally:
        stop_load(configuration=cfg)
    try:
        restore_latest_backup(restore_point="mid-load", configuration=cfg)
        report = lost_writes(on="restore-test", configuration=cfg)

        # ground truth, independently of the ack log's timing: the source holds every write,
        # the copy holds exactly what committed before the restore point
        acks = read_acks(ack_log(tmp_path))
        source = present_writes(sandbox, sandbox.primary())
        copy = present_writes(sandbox, sandbox.restored_instance())
        assert {(a.client_id, a.seq) for a in acks} <= source, "an acked write is not in the source"
        assert copy <= source
        from datetime import datetime

        t_point = datetime.fromisoformat(point["time"]).timestamp()
        acked_before = {(a.client_id, a.seq) for a in acks if a.acked_at <= t_point}
        acked_after = {(a.client_id, a.seq) for a in acks if a.acked_at > t_point}
        assert acked_before <= copy, "a write acknowledged before the restore point was lost"
        assert len(acked_after - copy) > 0, "the load wrote nothing after the restore point"

        assert report["acknowledged_writes"] == len(acks)
        assert report["lost_writes"] == 0
        assert report["expected_absent"] == len(acked_after - copy)
        assert report["present_after_reference"] == len(acked_after & copy)
        assert report["reference_kind"] == "restore point"
        assert RunContext(tmp_path).read()["rpo"]["lost_writes"] == 0
    finally:
        cleanup_restore(configuration=cfg)


def delete_from_copy(sandbox, keys) -> None:
    with sandbox.connect(sandbox.restored_instance(), "app") as conn:
        conn.autocommit = True
        for client_id, seq in keys:
            deleted = conn.execute(
                "DELETE FROM pgdrill_ledger WHERE client_id = %s AND seq = %s", (client_id, seq)
            ).rowcount
            assert deleted == 1


def verdict(cfg):
    from pgdrill.evidence.build import judge
    from tests.test_evidence import journal

    return judge(journal(), RunContext(Path(cfg[RUN_DIR_KEY])).read())


def test_rows_deleted_from_the_middle_of_restore_test_fail_the_drill(
    sandbox, sandbox_env, tmp_path
):
    """The end-to-end control of the lost-write count and of the hole rule: the same
    restored copy passes, then loses exactly one acknowledged row (lost_writes == 1, FAILED),
    then 500 more from the middle of the ack log's range (FAILED, although the newest writes
    are all there, so the old rule's RPO was 0)."""
    from probes.verify import checklist_passes

    cfg = {RUN_DIR_KEY: str(tmp_path)}
    sandbox.wait_ready(timeout=120)
    sandbox.backup(timeout=300)
    start_load(users=4, spawn_rate=4, configuration=cfg)
    try:
        poll_until(lambda: acked(tmp_path) >= 1200, timeout=120, what="1,200 acknowledged writes")
    finally:
        stop_load(configuration=cfg)
    # the load's WAL into the archive, so that the copy holds it
    sandbox._cluster().wait_archiving(sandbox.primary().name)
    try:
        restore_latest_backup(configuration=cfg)
        checklist_passes(configuration=cfg)
        acks = sorted(read_acks(ack_log(tmp_path)), key=lambda a: a.acked_at)
        copy = present_writes(sandbox, sandbox.restored_instance())
        in_copy = [a for a in acks if (a.client_id, a.seq) in copy]
        assert len(in_copy) >= 1100, "the restored copy lacks most of the load"

        clean = lost_writes(on="restore-test", configuration=cfg)
        assert clean["holes"] == 0
        assert verdict(cfg) == ("passed", []), "the control copy must pass"

        one = in_copy[100]
        delete_from_copy(sandbox, [(one.client_id, one.seq)])
        report = lost_writes(on="restore-test", configuration=cfg)
        assert report["lost_writes"] == clean["lost_writes"] + 1
        assert report["holes"] == 1 and report["hole_examples"] == [f"{one.client_id}:{one.seq}"]
        state, reasons = verdict(cfg)
        assert state == "failed" and any("missing from the restored copy" in r for r in reasons)

        middle = in_copy[300:800]
        delete_from_copy(sandbox, [(a.client_id, a.seq) for a in middle])
        report = lost_writes(on="restore-test", configuration=cfg)
        assert report["holes"] == 501
        # RPO runs from the oldest lost write, not from the newest present one
        assert (
            report["rpo_seconds"] >= round(in_copy[-1].acked_at - in_copy[100].acked_at, 3) - 0.001
        )
        state, reasons = verdict(cfg)
        assert state == "failed" and any(
            "501 acknowledged writes are missing" in r for r in reasons
        )
    finally:
        cleanup_restore(configuration=cfg)
