"""Closing the WAL archive's hole at a failover: the re-queue script on a real pg_wal
layout, and what a hole that cannot be closed says. (The whole path — a primary lost with
unarchived WAL, the hole found, PostgreSQL archiving it again, the restore reaching the end —
runs in tests/test_drill_e2e.py on the sandbox and in tests/lab on the real operator.)"""

import subprocess

import pytest

from pgdrill.bucket import backfill
from pgdrill.bucket.walchain import analyse_wal_chain
from pgdrill.pg import archive_status
from tests.test_walchain import B1, HISTORY, backup, seg, wals


def run_script(pgdata, segments):
    proc = subprocess.run(
        archive_status.requeue_command(segments),
        env={"PGDATA": str(pgdata), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc


def pg_wal(tmp_path, files: dict[str, str | None]):
    """A data directory whose pg_wal holds `files` (name -> archive status or None)."""
    wal = tmp_path / "pgdata" / "pg_wal"
    (wal / "archive_status").mkdir(parents=True)
    for name, status in files.items():
        (wal / name).write_bytes(b"\0" * 64)
        if status:
            (wal / "archive_status" / f"{name}.{status}").touch()
    return tmp_path / "pgdata"


def statuses(pgdata) -> set[str]:
    return {p.name for p in (pgdata / "pg_wal" / "archive_status").iterdir()}


def test_streamed_segments_marked_done_are_queued_for_the_archiver_again(tmp_path):
    a, b, c, d = seg(4), seg(5), seg(6), seg(7)
    pgdata = pg_wal(tmp_path, {a: "done", b: "ready", c: None, seg(9): "done"})
    proc = run_script(pgdata, [a, b, c, d])
    assert proc.returncode == 0, proc.stderr
    assert archive_status.parse_requeue(proc.stdout, [a, b, c, d]) == {
        a: "requeued",
        b: "queued",
        c: "marked",
        d: "absent",
    }
    # PostgreSQL's archiver takes every .ready; a segment not asked about is left alone
    assert statuses(pgdata) == {f"{a}.ready", f"{b}.ready", f"{c}.ready", f"{seg(9)}.done"}
    assert backfill.unarchivable(archive_status.parse_requeue(proc.stdout, [a, b, c, d])) == [d]


def test_without_a_pg_wal_the_script_fails_and_nothing_is_reported(tmp_path):
    proc = run_script(tmp_path / "nothing", [seg(4)])
    assert proc.returncode == 3 and "no pg_wal" in proc.stderr
    assert archive_status.parse_requeue(proc.stdout, [seg(4)]) == {seg(4): "unreported"}


def test_only_segment_names_reach_the_shell():
    with pytest.raises(ValueError, match="not WAL segment names"):
        archive_status.requeue_command([seg(4), "x; rm -rf /"])


def test_a_failover_hole_lists_its_segments_and_a_permanent_one_names_the_cost():
    objects = wals(range(2, 4)) + [("wals/00000002.history", 42)] + wals(range(6, 10), tli=2)
    chain = analyse_wal_chain(objects, [backup(B1, 2)], HISTORY)
    [hole] = backfill.failover_holes(chain)
    assert backfill.hole_segments(hole, 16 * 1024 * 1024) == [seg(4), seg(5)]
    message = backfill.permanent_hole_message(
        "pg-main-2", {seg(4): "requeued", seg(5): "absent"}, [hole]
    )
    assert message.startswith(
        f"the WAL archive's hole at the failover cannot be closed: "
        f"pg-main-2 no longer holds {seg(5)} (absent) in pg_wal. "
        f"point-in-time recovery past {seg(3)} is impossible"
    )
    assert seg(4) + " (" not in message
