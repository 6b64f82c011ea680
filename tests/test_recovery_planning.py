from datetime import UTC, datetime, timedelta

import pytest

from pgdrill.core.errors import BadInput, TargetError
from pgdrill.core.model import Backup, RecoveryTarget
from pgdrill.restore.plan import choose_backup

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def backup(i, status="DONE"):
    end = T0 + timedelta(hours=i)
    return Backup(id=f"b{i}", status=status, begin_time=end - timedelta(minutes=1), end_time=end)


BACKUPS = [backup(0), backup(1), backup(2), backup(3, status="FAILED")]


def test_latest_takes_newest_completed():
    assert choose_backup(BACKUPS, RecoveryTarget()).id == "b2"


def test_time_target_takes_newest_ending_before_it():
    target = RecoveryTarget(time=T0 + timedelta(hours=1, minutes=30))
    assert choose_backup(BACKUPS, target).id == "b1"


def test_restore_point_uses_its_creation_time():
    target = RecoveryTarget(name="before-change")
    assert choose_backup(BACKUPS, target, not_after=T0 + timedelta(minutes=5)).id == "b0"


def test_target_before_every_backup_is_refused_with_the_oldest_named():
    with pytest.raises(TargetError) as err:
        choose_backup(BACKUPS, RecoveryTarget(time=T0 - timedelta(hours=1)))
    assert "b0" in str(err.value)


def test_no_backup_at_all():
    with pytest.raises(TargetError, match="no completed backup"):
        choose_backup([backup(0, status="FAILED")], RecoveryTarget())


def test_only_one_recovery_target():
    with pytest.raises(BadInput, match="only one recovery target"):
        RecoveryTarget.parse(target_time="2026-11-24T10:00:00+00:00", restore_point="x")


def test_target_time_needs_offset_and_iso_format():
    with pytest.raises(BadInput, match="no timezone"):
        RecoveryTarget.parse(target_time="2026-11-24T10:00:00")
    with pytest.raises(BadInput, match="not an ISO-8601"):
        RecoveryTarget.parse(target_time="yesterday")
    assert RecoveryTarget.parse(restore_point="p").kind == "restore_point"
    assert RecoveryTarget.parse().kind == "latest"
