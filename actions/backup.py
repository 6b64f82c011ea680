"""Backup actions: a manual backup before any change, and named restore points."""

from __future__ import annotations

from datetime import UTC, datetime

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.console import say

__all__ = ["trigger_backup", "mark_restore_point"]


@activity
def trigger_backup(wait: bool = True, timeout_seconds: int = 600,
                   configuration: Configuration = None, secrets: Secrets = None) -> dict:
    """Take one controlled manual base backup of the current primary to the object store
    (step 2 of the safe workflow) and wait until it completes (at most `timeout_seconds`).
    Returns the backup (id, begin/end time, WAL range); the drill restores the newest one.
    `wait=False` is not supported: a drill must know the backup exists before any fault."""
    if not wait:
        raise ValueError("trigger_backup(wait=False) is not supported: a drill needs the "
                         "backup to exist before injecting a fault")
    target = ready_target(configuration)
    backup = target.backup(timeout=float(timeout_seconds))
    say(f"backup {backup.id} completed at {backup.end_time.isoformat()}")
    run_context(configuration).update(manual_backup=backup.to_dict())
    return backup.to_dict()


@activity
def mark_restore_point(name: str = "pgdrill", configuration: Configuration = None,
                       secrets: Secrets = None) -> dict:
    """Create a named restore point on the primary (pg_create_restore_point) and switch WAL so
    it reaches the archive. A later restore can stop exactly there (restore_point=name).
    Returns {name, lsn, time}; `time` is taken just before the point is created, so every
    write acknowledged before it is certain to precede the point in the WAL."""
    target = ready_target(configuration)
    before = datetime.now(UTC)
    with target.connect(target.primary(), "postgres") as conn:
        lsn = str(conn.execute("SELECT pg_create_restore_point(%s)", (name,)).fetchone()[0])
        conn.execute("SELECT pg_switch_wal()")
    point = {"name": name, "lsn": lsn, "time": before.isoformat()}
    ctx = run_context(configuration)
    ctx.update(restore_points={**ctx.read().get("restore_points", {}), name: point})
    say(f"restore point {name!r} at {lsn}")
    return point
