"""Which backup a restore starts from. Pure: the same answer CNPG's recovery would need."""

from __future__ import annotations

from datetime import datetime

from pgdrill.errors import TargetError
from pgdrill.model import Backup, RecoveryTarget


def choose_backup(backups: list[Backup], target: RecoveryTarget,
                  not_after: datetime | None = None) -> Backup:
    """The newest completed backup that can reach `target`.

    For "latest" that is simply the newest. For a time, the newest that ended at or before
    it. For a restore point or LSN whose creation time is known (`not_after`), the newest
    that ended before then; otherwise the newest (replay fails clearly if it is too new)."""
    done = sorted((b for b in backups if b.completed and b.end_time),
                  key=lambda b: b.end_time)
    if not done:
        raise TargetError("there is no completed backup in the object store",
                          fix="take one first (actions.backup.trigger_backup)")
    limit = target.time if target.kind == "time" else not_after
    if limit is None:
        return done[-1]
    eligible = [b for b in done if b.end_time <= limit]
    if not eligible:
        raise TargetError(
            f"no backup ended before the recovery target {limit.isoformat()}; the oldest "
            f"completed backup {done[0].id} ended {done[0].end_time.isoformat()}",
            fix="choose a later recovery target, or keep older backups")
    return eligible[-1]
