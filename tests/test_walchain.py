"""WAL continuity and the recoverable window of a barman-cloud bucket, from a listing (pure)."""

import json
from datetime import UTC, datetime

from pgdrill.bucket.walchain import analyse_wal_chain, segment_of
from pgdrill.core.model import Backup


def seg(n: int, tli: int = 1) -> str:
    return f"{tli:08X}{0:08X}{n:08X}"


def wal(n: int, tli: int = 1, suffix: str = ".gz", size: int = 1000) -> tuple[str, int]:
    return (f"wals/{seg(n, tli)[:16]}/{seg(n, tli)}{suffix}", size)


def wals(numbers, tli: int = 1) -> list[tuple[str, int]]:
    return [wal(n, tli) for n in numbers]


def backup(ident: str, begin: int, end: int | None = None, tli: int = 1, hour: int = 0) -> Backup:
    end = begin if end is None else end
    return Backup(
        id=ident,
        status="DONE",
        begin_time=datetime(2026, 12, 1, hour, tzinfo=UTC),
        end_time=datetime(2026, 12, 1, hour, 5, tzinfo=UTC),
        begin_wal=seg(begin, tli),
        end_wal=seg(end, tli),
        timeline=tli,
        begin_lsn=f"0/{begin:X}000028",
        end_lsn=f"0/{end:X}000100",
    )


B1 = "20261201T000000"
B2 = "20261201T060000"
BASE = [(f"base/{B1}/backup.info", 900), (f"base/{B1}/data.tar.gz", 50000)]


def test_a_contiguous_chain_has_no_problem_and_reaches_the_newest_wal():
    chain = analyse_wal_chain(BASE + wals(range(1, 9)), [backup(B1, 2, 3)])
    assert chain.problems == []
    assert chain.gaps == []
    assert chain.first_needed == seg(2) and chain.newest == seg(8)
    [window] = chain.backups
    assert (window.restorable, window.last_segment, window.last_lsn, window.reaches_newest) == (
        True,
        seg(8),
        "0/9000000",
        True,
    )
    assert chain.window.first_backup == B1
    assert chain.window.first_recoverability_point == datetime(2026, 12, 1, 0, 5, tzinfo=UTC)
    assert (chain.window.last_segment, chain.window.reaches_newest) == (seg(8), True)
    [tl] = chain.timelines
    assert (tl.first, tl.last, len(tl.segments)) == (seg(1), seg(8), 8)
    json.dumps(chain.to_dict())


def test_a_missing_segment_after_the_latest_backup_is_named_with_the_last_recoverable_one():
    objects = BASE + wals([1, 2, 3, 4, 5, 6, 8, 9, 10])
    chain = analyse_wal_chain(objects, [backup(B2, 5, hour=6), backup(B1, 2)])
    assert chain.problems == [
        (
            f"point-in-time recovery past {seg(6)} is impossible for backups {B1}, {B2}: "
            f"{seg(7)} is missing (1 segment)"
        )
    ]
    assert [g.to_dict()["first_missing"] for g in chain.gaps] == [seg(7)]
    assert [(w.backup, w.last_segment, w.last_lsn, w.reaches_newest) for w in chain.backups] == [
        (B1, seg(6), "0/7000000", False),
        (B2, seg(6), "0/7000000", False),
    ]
    assert chain.window.last_segment == seg(6) and not chain.window.reaches_newest
    assert chain.window.last_successful_backup_time == datetime(2026, 12, 1, 6, 5, tzinfo=UTC)


def test_a_zero_length_segment_counts_as_missing():
    objects = wals([2, 3, 4, 5]) + [wal(6, size=0)] + wals([8])
    chain = analyse_wal_chain(objects, [backup(B1, 2)])
    assert chain.problems == [
        (
            f"point-in-time recovery past {seg(5)} is impossible for backup {B1}: "
            f"{seg(6)} is an empty (zero-byte) object (2 segments)"
        )
    ]
    assert chain.gaps[0].empty == [seg(6)] and chain.gaps[0].last_missing == seg(7)
    assert chain.timelines[0].empty == [seg(6)]


def test_a_gap_before_the_oldest_backup_does_not_matter():
    chain = analyse_wal_chain(wals([1, 4, 5, 6]), [backup(B1, 4)])
    assert chain.problems == [] and chain.gaps == []
    assert chain.window.last_segment == seg(6)


HISTORY = {2: "1\t0/6000028\tno recovery target specified\n"}


def test_a_timeline_switch_follows_the_history():
    objects = (
        wals(range(2, 6))
        + [wal(6, suffix=".partial"), ("wals/00000002.history", 42)]
        + wals(range(6, 10), tli=2)
        + wals([7, 8, 9, 10, 11])
    )  # old timeline's leftovers
    chain = analyse_wal_chain(objects, [backup(B1, 2)], HISTORY)
    assert chain.problems == []
    assert chain.timeline == 2 and chain.newest == seg(9, tli=2)
    assert (chain.window.last_segment, chain.window.timeline, chain.window.last_lsn) == (
        seg(9, tli=2),
        2,
        "0/A000000",
    )
    assert [t.timeline for t in chain.timelines] == [1, 2] and chain.timelines[1].history


def test_a_missing_switch_segment_is_named_on_the_new_timeline():
    objects = wals(range(2, 6)) + wals(range(7, 10), tli=2)
    chain = analyse_wal_chain(objects, [backup(B1, 2)], HISTORY)
    assert chain.problems == [
        (
            f"point-in-time recovery past {seg(5)} is impossible for backup {B1}: "
            f"{seg(6, tli=2)} is missing (1 segment)"
        )
    ]


def test_a_missing_history_is_a_problem():
    chain = analyse_wal_chain(wals(range(2, 6)) + wals(range(6, 8), tli=2), [backup(B1, 2)])
    assert chain.problems[0] == (
        "the history of timeline 2 (00000002.history) was not given: "
        "the WAL of earlier timelines cannot be followed"
    )


def test_compression_suffixes_are_stripped():
    suffixes = [".gz", ".bz2", ".xz", ".snappy", ".zst", ".lz4", ""]
    objects = [wal(n, suffix=s) for n, s in enumerate(suffixes, start=1)]
    chain = analyse_wal_chain(objects, [backup(B1, 1)])
    assert chain.problems == []
    assert chain.timelines[0].segments == [seg(n) for n in range(1, 8)]
    assert segment_of(seg(0x10) + "", 16 * 1024 * 1024) == (1, 0x10)


def test_partial_and_backup_files_are_not_segments():
    objects = (
        wals([2, 3])
        + [
            (f"wals/0000000100000000/{seg(4)}.00000028.backup.gz", 300),
            (f"wals/0000000100000000/{seg(4)}.partial", 16777216),
            (f"wals/0000000100000000/{seg(4)}.partial.gz", 5000),
        ]
        + wals([5, 6])
    )
    chain = analyse_wal_chain(objects, [backup(B1, 2)])
    assert chain.problems == [
        (
            f"point-in-time recovery past {seg(3)} is impossible for backup {B1}: "
            f"{seg(4)} is missing (1 segment)"
        )
    ]


def test_a_backup_whose_begin_wal_is_missing_cannot_be_restored():
    chain = analyse_wal_chain(wals(range(4, 9)), [backup(B1, 3, 4), backup(B2, 6, hour=6)])
    assert chain.problems == [
        f"backup {B1} cannot be restored at all: its first WAL segment {seg(3)} is missing"
    ]
    assert [w.restorable for w in chain.backups] == [False, True]
    assert chain.window.first_backup == B2 and chain.window.reaches_newest


def test_a_gap_inside_a_backup_makes_it_unrestorable():
    chain = analyse_wal_chain(wals([2, 3, 5, 6]), [backup(B1, 2, 4)])
    assert chain.problems == [
        (
            f"backup {B1} cannot be restored at all: {seg(4)} is missing (1 segment), needed to "
            f"reach the backup's end ({seg(4)})"
        )
    ]
    assert chain.window is None


def test_an_empty_bucket():
    chain = analyse_wal_chain([], [])
    assert chain.problems == [
        "the bucket holds no completed base backup: there is nothing to recover from"
    ]
    assert chain.window is None and chain.timelines == [] and chain.newest is None
    json.dumps(chain.to_dict())
    only_wal = analyse_wal_chain(wals([1, 2]), [])
    assert only_wal.problems == [
        (
            "the bucket holds no completed base backup: there is nothing to recover from (the WAL "
            "archive alone cannot be restored)"
        )
    ]


def timed(numbers, minute0: int = 0, tli: int = 1) -> list[tuple[str, int, datetime]]:
    """Segments with upload times: segment n archived at 07:<minute0 + n>."""
    return [(*wal(n, tli), datetime(2026, 12, 1, 7, minute0 + n, tzinfo=UTC)) for n in numbers]


def test_with_upload_times_the_gap_sentence_names_the_last_recoverable_instant():
    objects = BASE + timed([2, 3, 4, 5, 6, 8, 9])
    chain = analyse_wal_chain(objects, [backup(B1, 2), backup(B2, 4, hour=6)])
    sentence = (
        f"point-in-time recovery past {seg(6)} is impossible for backups {B1}, {B2}: "
        f"{seg(7)} is missing (1 segment); replay ends at LSN 0/7000000, so the last "
        f"recoverable instant is at the latest 2026-12-01T07:06:00+00:00, when {seg(6)} "
        f"was archived (the bucket keeps no commit times: the segment's upload time "
        f"bounds the last commit it holds)"
    )
    assert chain.problems == [sentence]
    [gap] = chain.gaps
    assert (gap.problem, gap.last_lsn) == (sentence, "0/7000000")
    assert gap.last_archived_at == datetime(2026, 12, 1, 7, 6, tzinfo=UTC)
    # the same sentence is what a restore of either backup to the newest WAL is refused with
    assert chain.restore_problems == {B1: sentence, B2: sentence}
    assert gap.to_dict()["last_archived_at"] == "2026-12-01T07:06:00+00:00"
    json.dumps(chain.to_dict())


def test_restore_problems_name_only_the_backups_a_gap_stops():
    objects = timed([2, 3, 5, 6, 7, 8])
    chain = analyse_wal_chain(
        objects, [backup(B1, 2), backup(B2, 3, 4, hour=6), backup("20261201T120000", 6, hour=12)]
    )
    assert set(chain.restore_problems) == {B1, B2}
    assert chain.restore_problems[B2] == chain.problems[0]
    assert chain.restore_problems[B2].startswith(f"backup {B2} cannot be restored at all")
    assert chain.restore_problems[B1].startswith(f"point-in-time recovery past {seg(3)}")
    assert [h["timeline"] for h in chain.to_dict()["history"]] == [1]


def test_the_instant_of_a_gap_at_an_empty_object_is_the_segment_before_it():
    objects = timed([2, 3]) + [(*wal(4, size=0), datetime(2026, 12, 1, 8, tzinfo=UTC))]
    chain = analyse_wal_chain(objects + timed([5]), [backup(B1, 2)])
    assert chain.gaps[0].empty == [seg(4)]
    assert chain.gaps[0].last_archived_at == datetime(2026, 12, 1, 7, 3, tzinfo=UTC)


def test_the_lost_primarys_unarchived_segments_before_a_switch_are_a_failover_hole():
    # timeline 1 ends inside segment 6 (HISTORY); the old primary archived up to 3, the new
    # primary archived the switch segment and on: 4 and 5 were only ever streamed
    objects = wals(range(2, 4)) + [("wals/00000002.history", 42)] + wals(range(6, 10), tli=2)
    chain = analyse_wal_chain(objects, [backup(B1, 2)], HISTORY)
    [gap] = chain.gaps
    assert (gap.first_missing, gap.last_missing, gap.switch_to) == (seg(4), seg(5), 2)
    assert gap.to_dict()["failover_hole"] is True
    assert chain.problems == [gap.problem]
    assert gap.problem.startswith(
        f"point-in-time recovery past {seg(3)} is impossible for "
        f"backup {B1}: {seg(4)} is missing (2 segments); these are "
        f"the last segments of timeline 1 before the switch to "
        f"timeline 2 (a failover)"
    )
    assert "backfill_wal_archive" in gap.problem and "new backup" in gap.problem


def test_a_gap_that_does_not_end_at_a_switch_is_not_a_failover_hole():
    mid_timeline = analyse_wal_chain(wals([2, 3, 5, 6, 7, 8]), [backup(B1, 2)])
    on_the_new_timeline = analyse_wal_chain(
        wals(range(2, 6)) + wals([6, 8, 9], tli=2), [backup(B1, 2)], HISTORY
    )
    ends_a_segment_early = analyse_wal_chain(
        wals([2, 3, 5]) + wals(range(6, 9), tli=2), [backup(B1, 2)], HISTORY
    )
    for chain in (mid_timeline, on_the_new_timeline, ends_a_segment_early):
        [gap] = chain.gaps
        assert gap.switch_to is None and "failover" not in gap.problem
