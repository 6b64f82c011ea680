"""Finding a restore point in the primary's WAL with pg_waldump, across timelines."""

import pytest

from pgdrill.core.errors import WalNotAvailable
from pgdrill.core.model import Backup, Role
from pgdrill.core.waiting import poll_until
from pgdrill.restore import walscan
from pgdrill.restore.plan import backup_start_lsn
from pgdrill.restore.position import lsn_to_int

SEG = 16 * 1024 * 1024
# pg_waldump 18's output, as read on a sandbox
OUTPUT = """\
rmgr: XLOG        len (rec/tot):     34/    34, tx:          0, lsn: 0/040000F8, prev 0/04000080, desc: BACKUP_END 0/4000028
rmgr: XLOG        len (rec/tot):     98/    98, tx:          0, lsn: 0/05000028, prev 0/04000120, desc: RESTORE_POINT barman_20261130T232533
rmgr: XLOG        len (rec/tot):     98/    98, tx:          0, lsn: 0/05000090, prev 0/05000028, desc: RESTORE_POINT hello world
rmgr: XLOG        len (rec/tot):     98/    98, tx:          0, lsn: 1A/00000028, prev 0/05000160, desc: RESTORE_POINT x@y
"""


def test_restore_point_records_are_parsed_with_their_names_and_lsns():
    assert walscan.restore_points(OUTPUT) == [
        ("0/5000028", "barman_20261130T232533"),
        ("0/5000090", "hello world"),
        ("1A/28", "x@y"),
    ]


def touch(pg_wal, *names):
    pg_wal.mkdir(exist_ok=True)
    for name in names:
        (pg_wal / name).touch()


def test_each_segment_is_read_from_the_newest_timeline_that_owns_it(tmp_path):
    # timeline 1 until 0/8000000 (the switch segment 8 only exists on timeline 2), timeline 2
    # until the middle of segment 0xA, timeline 3 since
    touch(
        tmp_path,
        *(f"0000000100000000000000{n:02X}" for n in range(3, 8)),
        "000000020000000000000008",
        "000000020000000000000009",
        "00000002000000000000000A",
        "00000003000000000000000A",
        "00000003000000000000000B",
        "000000010000000000000008.partial",
    )
    history = walscan.parse_history(
        "1\t0/8000000\tno recovery target specified\n2\t0/A000100\tno recovery target specified\n"
    )
    ranges = walscan.timeline_ranges(3, history)
    assert ranges == [(1, 0, 0x8000000), (2, 0x8000000, 0xA000100), (3, 0xA000100, None)]
    plan = walscan.plan_segments({p.name for p in tmp_path.iterdir()}, ranges, 4, 0xB, SEG)
    assert plan == {
        4: "000000010000000000000004",
        5: "000000010000000000000005",
        6: "000000010000000000000006",
        7: "000000010000000000000007",
        8: "000000020000000000000008",
        9: "000000020000000000000009",
        0xA: "00000003000000000000000A",
        0xB: "00000003000000000000000B",
    }


def test_wal_no_longer_in_pg_wal_cannot_tell(tmp_path):
    touch(tmp_path, "000000010000000000000007", "000000010000000000000008")
    with pytest.raises(WalNotAvailable, match="000000010000000000000005 .* is no longer in"):
        walscan.plan_segments(
            {p.name for p in tmp_path.iterdir()},
            walscan.timeline_ranges(1, []),
            5,
            8,
            SEG,
            where=str(tmp_path),
        )


def test_backup_start_lsn_from_begin_lsn_or_first_segment():
    backup = Backup(
        id="b",
        status="DONE",
        begin_time=None,
        end_time=None,
        begin_wal="00000002000000010000000A",
        begin_lsn=None,
    )
    assert backup_start_lsn(backup) == "1/A000000"
    assert (
        backup_start_lsn(
            Backup(
                id="b",
                status="DONE",
                begin_time=None,
                end_time=None,
                begin_wal="000000010000000000000004",
                begin_lsn="0/4000028",
            )
        )
        == "0/4000028"
    )
    assert backup_start_lsn(Backup(id="b", status="DONE", begin_time=None, end_time=None)) is None


@pytest.mark.sandbox
def test_restore_points_are_found_across_a_failover(sandbox):
    """After a failover the primary's pg_wal holds the backup's WAL on the old timeline and
    the new timeline since the switch: a point marked before the failover and one after are
    both found from the backup's begin LSN; a point before it is not."""
    sandbox.wait_ready(timeout=120)
    with sandbox.connect(sandbox.primary(), "postgres") as conn:
        conn.execute("SELECT pg_create_restore_point('walscan-before-backup')")
    backup = sandbox.backup(timeout=300)
    with sandbox.connect(sandbox.primary(), "postgres") as conn:
        before = str(
            conn.execute("SELECT pg_create_restore_point('walscan-before-failover')").fetchone()[0]
        )
        conn.execute("SELECT pg_switch_wal()")
        old_timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
    replica = next(i for i in sandbox.instances() if i.role == Role.REPLICA)

    def replica_has_it() -> bool:
        with sandbox.connect(replica, "postgres") as conn:
            return conn.execute(
                "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", (before,)
            ).fetchone()[0]

    poll_until(replica_has_it, timeout=60, what="the replica to receive the restore point")
    sandbox.kill_primary()
    sandbox.wait_ready(timeout=300)
    with sandbox.connect(sandbox.primary(), "postgres") as conn:
        after = str(
            conn.execute("SELECT pg_create_restore_point('walscan-after-failover')").fetchone()[0]
        )
        walfile = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
    assert int(walfile[:8], 16) > old_timeline, "the failover made a new timeline"

    found_before = sandbox.find_restore_point("walscan-before-failover", backup.begin_lsn)
    found_after = sandbox.find_restore_point("walscan-after-failover", backup.begin_lsn)
    # the record's start, a little before the end pg_create_restore_point returned
    assert 0 < lsn_to_int(before) - lsn_to_int(found_before) <= 128
    assert 0 < lsn_to_int(after) - lsn_to_int(found_after) <= 128
    assert sandbox.find_restore_point("walscan-before-backup", backup.begin_lsn) is None
    assert sandbox.find_restore_point("walscan-after-failover", after) is None


@pytest.mark.sandbox
def test_wal_gone_from_pg_wal_cannot_tell_and_the_restore_is_not_refused(sandbox):
    """WAL from before the oldest segment in pg_wal (here: segment 0, which never exists)
    gives "cannot tell", and restore_latest_backup's check lets the restore go ahead."""
    from pgdrill.restore.checks import check_restore_point_in_wal

    with pytest.raises(WalNotAvailable, match="is no longer in .*pg_wal"):
        sandbox.find_restore_point("anything", "0/28")
    backup = Backup(id="ancient", status="DONE", begin_time=None, end_time=None, begin_lsn="0/28")
    check = check_restore_point_in_wal(sandbox, "anything", backup)
    assert check["checked"] is False and check["found_lsn"] is None
    assert "is no longer in" in check["note"]
