"""Where recovery stopped, read from the history file, judged against the request (pure)."""

from datetime import UTC, datetime

import pytest

from pgdrill.core.errors import TargetError
from pgdrill.core.model import RecoveryTarget
from pgdrill.restore.position import lsn_to_int, parse_history, position_mismatch

POINT = RecoveryTarget(name="mid@run-1")


def history(reason: str, lsn: str = "0/5019FF8", parent: int = 1) -> str:
    return f"{parent}\t{lsn}\t{reason}\n"


def test_lsn_order_is_numeric_across_the_slash():
    assert lsn_to_int("0/FFFFFFFF") < lsn_to_int("1/0") < lsn_to_int("1/10")
    with pytest.raises(TargetError, match="not a PostgreSQL LSN"):
        lsn_to_int("nonsense")


def test_each_reason_postgres_writes_is_understood():
    cases = {
        "no recovery target specified": ("latest", None, None),
        'at restore point "mid@run-1"': ("restore_point", "mid@run-1", None),
        "after LSN 0/5000060": ("lsn", "0/5000060", "after"),
        "before transaction 1234": ("xid", "1234", "before"),
        "reached consistency": ("immediate", None, None),
        "before 2026-11-30 20:15:27.547253+00": ("time", "2026-11-30 20:15:27.547253+00", "before"),
    }
    for reason, (kind, value, edge) in cases.items():
        reached = parse_history(history(reason), timeline=2)
        assert (reached.stop_kind, reached.stop_value, reached.stop_edge) == (kind, value, edge)
        assert reached.timeline == 2 and reached.parent_timeline == 1


def test_the_last_switch_of_a_longer_history_is_the_one_recovery_made():
    text = "1\t0/3000000\tno recovery target specified\n\n" + history(
        'at restore point "x"', parent=2
    )
    reached = parse_history(text, timeline=3)
    assert (reached.parent_timeline, reached.stop_value) == (2, "x")


def test_an_empty_or_garbled_history_file_is_an_error():
    with pytest.raises(TargetError, match="no switch line"):
        parse_history("", timeline=2)
    with pytest.raises(TargetError, match="cannot read the history line"):
        parse_history("garbage\n", timeline=2)


def test_restore_point_must_be_reached_at_the_lsn_it_was_created_at():
    reached = parse_history(history('at restore point "mid@run-1"'), timeline=2)
    assert position_mismatch(POINT, reached, "0/5019FF8", "mid@run-1") is None
    # an older restore point of the same name comes first in the WAL
    earlier = parse_history(history('at restore point "mid@run-1"', lsn="0/4000100"), 2)
    why = position_mismatch(POINT, earlier, "0/5019FF8", "mid@run-1")
    assert why and "0/5019FF8" in why and "0/4000100" in why


def test_restore_point_of_another_name_or_the_end_of_the_archive_fails():
    other = parse_history(history('at restore point "mid@run-0"'), timeline=2)
    assert "not at restore point 'mid@run-1'" in position_mismatch(POINT, other)
    end = parse_history(history("no recovery target specified"), timeline=2)
    assert position_mismatch(POINT, end) is not None


def test_latest_must_stop_at_the_end_of_the_archive():
    latest = RecoveryTarget()
    assert (
        position_mismatch(latest, parse_history(history("no recovery target specified"), 2)) is None
    )
    assert position_mismatch(latest, parse_history(history('at restore point "x"'), 2))


def test_lsn_target_must_not_stop_before_the_requested_lsn():
    target = RecoveryTarget(lsn="0/5000060")
    assert position_mismatch(target, parse_history(history("after LSN 0/5000060"), 2)) is None
    assert position_mismatch(target, parse_history(history("after LSN 0/5000100"), 2)) is None
    assert "before the requested LSN" in position_mismatch(
        target, parse_history(history("after LSN 0/4FFFFF0"), 2)
    )


def test_time_target_may_not_stop_before_the_target_beyond_the_tolerance():
    target = RecoveryTarget(time=datetime(2026, 11, 30, 20, 15, 27, tzinfo=UTC))
    ok = parse_history(history("before 2026-11-30 20:15:27.547253+00"), 2)
    assert position_mismatch(target, ok) is None
    within = parse_history(history("after 2026-11-30 20:15:26.5+00"), 2)
    assert position_mismatch(target, within) is None
    early = parse_history(history("after 2026-11-30 20:10:00+00"), 2)
    assert "before the recovery target time" in position_mismatch(target, early)
    assert position_mismatch(target, parse_history(history("no recovery target specified"), 2))


def test_latest_must_reach_the_archive_end_listed_when_the_restore_started():
    from pgdrill.bucket.restore_gate import archive_end
    from pgdrill.restore.position import ReachedPosition, archive_end_mismatch

    row = {"recoverable_to": {"segment": "000000010000000000000009", "lsn": "0/A000000"}}
    end = archive_end(row, 16 * 1024 * 1024)
    assert end == {
        "segment": "000000010000000000000009",
        "begins_at": "0/9000000",
        "ends_at": "0/A000000",
    }

    def reached(lsn):
        return ReachedPosition(2, 1, lsn, "no recovery target specified", "latest")

    assert archive_end_mismatch(reached("0/9000060"), end) is None
    assert archive_end_mismatch(reached("0/B000028"), end) is None  # WAL archived since
    early = archive_end_mismatch(reached("0/6FFFFE8"), end)
    assert early and "before the end of the archive" in early and "0/9000000" in early
    assert archive_end_mismatch(reached("0/6FFFFE8"), None) is None  # nothing listed
    assert archive_end({"recoverable_to": None}, 16 * 1024 * 1024) is None
