"""Which backup a restore starts from. Pure: the same answer CNPG's recovery would need."""

from __future__ import annotations

import re
from datetime import datetime

from pgdrill.core.errors import TargetError
from pgdrill.core.model import Backup, RecoveryTarget

WAL_FILE = re.compile(r"^[0-9A-F]{8}([0-9A-F]{8})([0-9A-F]{8})$")
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


def backup_start_lsn(backup: Backup, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str | None:
    """Where replay of `backup` starts: its begin LSN, else the start of its first WAL
    segment (`begin_wal`, assuming `segment_size`), else None."""
    if backup.begin_lsn:
        return backup.begin_lsn
    match = WAL_FILE.match(backup.begin_wal or "")
    if not match:
        return None
    segno = int(match.group(1), 16) * (0x100000000 // segment_size) + int(match.group(2), 16)
    lsn = segno * segment_size
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def choose_backup(
    backups: list[Backup],
    target: RecoveryTarget,
    not_after: datetime | None = None,
    where: str | None = None,
) -> Backup:
    """The newest completed backup that can reach `target`.

    For "latest" that is simply the newest. For a time, the newest that ended at or before
    it. For a restore point or LSN whose creation time is known (`not_after`), the newest
    that ended before then; otherwise the newest (replay fails clearly if it is too new).
    `where` names the object store (bucket, serverName) in the refusal when there is none."""
    done = sorted((b for b in backups if b.completed and b.end_time), key=lambda b: b.end_time)
    if not done:
        others = f"; {len(backups)} not completed" if backups else ""
        raise TargetError(
            f"there is no completed backup in the object store"
            f"{' ' + where if where else ''}{others}",
            fix="take one first (actions.backup.trigger_backup), or check the "
            "bucket and serverName (the cluster name)",
        )
    limit = target.time if target.kind == "time" else not_after
    if limit is None:
        return done[-1]
    eligible = [b for b in done if b.end_time <= limit]
    if not eligible:
        raise TargetError(
            f"no backup ended before the recovery target {limit.isoformat()}; the oldest "
            f"completed backup {done[0].id} ended {done[0].end_time.isoformat()}",
            fix="choose a later recovery target, or keep older backups",
        )
    return eligible[-1]
