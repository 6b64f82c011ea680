"""Backup actions: a manual backup before any change, and named restore points."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.core.console import say
from pgdrill.core.errors import BadInput, TargetError
from pgdrill.core.waiting import poll_until
from pgdrill.pg.archive_status import ArchiverWatch
from pgdrill.restore.points import MAX_RESTORE_POINT_NAME, unique_restore_point_name

# PostgreSQL refuses restore point names longer than this (MAXFNAMELEN - 1)

__all__ = ["trigger_backup", "mark_restore_point", "backfill_wal_archive"]


@activity
def trigger_backup(
    wait: bool = True,
    timeout_seconds: int = 600,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict:
    """Take one controlled manual base backup of the current primary to the object store
    (step 2 of the safe workflow) and wait until it completes (at most `timeout_seconds`).
    Returns the backup (id, begin/end time, WAL range); the drill restores the newest one.
    `wait=False` is not supported: a drill must know the backup exists before any fault."""
    if not wait:
        raise BadInput(
            "trigger_backup(wait=False) is not supported: a drill needs the "
            "backup to exist before injecting a fault",
            fix="remove `wait` or set it to true",
        )
    target = ready_target(configuration, secrets)
    backup = target.backup(timeout=float(timeout_seconds))
    say(f"backup {backup.id} completed at {backup.end_time.isoformat()}")
    archive_backup_end(target, backup, timeout=float(timeout_seconds))
    run_context(configuration).update(manual_backup=backup.to_dict())
    return backup.to_dict()


def archive_backup_end(target, backup, *, timeout: float) -> None:
    """A backup is restorable only once the WAL segment it ends in is archived. CNPG marks an
    object-store Backup completed before that segment is archived (barman-cloud-backup does
    not wait for it), so it reaches the bucket only when it fills or at archive_timeout
    (CNPG's default: 5 minutes), and a restore started before then cannot become
    consistent. Switch WAL on the primary and wait until that segment is archived."""
    if not backup.end_wal:
        return
    with target.connect(target.primary(), "postgres") as conn:
        last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
        if last and last[:24] >= backup.end_wal:
            return
        say(f"switching WAL so that {backup.end_wal}, where backup {backup.id} ends, is archived")
        conn.execute("SELECT pg_switch_wal()")
        wait_archived(
            conn,
            backup.end_wal,
            timeout=timeout,
            what=f"WAL segment {backup.end_wal} (the end of backup {backup.id})",
        )


def wait_archived(conn, segment: str, timeout: float, what: str | None = None) -> None:
    """Poll pg_stat_archiver until `segment` (or a later one) is archived."""

    # the same "archived up to" rule as the sandbox's wait; no stall limit: `timeout` bounds it
    watch = ArchiverWatch(segment, stall=float("inf"), clock=time.monotonic)

    def archived() -> bool:
        return watch.reached(
            conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
        )

    poll_until(
        archived,
        timeout=timeout,
        interval=0.2,
        what=f"{what or f'WAL segment {segment} (with the restore point)'} to be archived",
        fix="check WAL archiving: pg_stat_archiver on the primary, the object store",
    )


@activity
def mark_restore_point(
    name: str = "pgdrill",
    exact: bool = False,
    archive_timeout_seconds: int = 120,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict:
    """Create a named restore point on the primary (pg_create_restore_point) and switch WAL so
    it reaches the archive. A later restore in the same run stops exactly there
    (restore_latest_backup(restore_point=name)), and the restore proves it did: the LSN of
    the point is recorded and compared with where recovery really stopped.
    The name written into the WAL is `name@<run id>`, unique per run, because PostgreSQL
    stops at the *first* restore point of a name it meets; `exact=True` writes `name` as
    given (for restore points other tools will use). It returns once the WAL segment
    holding the point is archived (at most `archive_timeout_seconds`), so a restore can
    reach it. Returns {name, real_name, lsn, time};
    `time` is taken just before the point is created, so every write acknowledged before it
    is certain to precede the point in the WAL."""
    if not name or not str(name).strip():
        raise BadInput(
            "a restore point needs a name", fix='e.g. mark_restore_point(name="pre-change")'
        )
    ctx = run_context(configuration)
    real_name = name if exact else unique_restore_point_name(name, ctx.run_dir.name)
    if len(real_name.encode()) > MAX_RESTORE_POINT_NAME:
        raise BadInput(
            f"restore point name {real_name!r} is longer than {MAX_RESTORE_POINT_NAME} bytes",
            fix="use a shorter name",
        )
    target = ready_target(configuration, secrets)
    before = datetime.now(UTC)
    with target.connect(target.primary(), "postgres") as conn:
        lsn = str(conn.execute("SELECT pg_create_restore_point(%s)", (real_name,)).fetchone()[0])
        segment = conn.execute("SELECT pg_walfile_name(%s::pg_lsn)", (lsn,)).fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
        wait_archived(conn, segment, timeout=float(archive_timeout_seconds))
    point = {
        "name": name,
        "real_name": real_name,
        "exact": bool(exact),
        "lsn": lsn,
        "time": before.isoformat(),
    }
    ctx.merge("restore_points", **{name: point})
    say(f"restore point {real_name!r} at {lsn}")
    return point


@activity
def backfill_wal_archive(
    timeout_seconds: int = 180, configuration: Configuration = None, secrets: Secrets = None
) -> dict:
    """After a failover, close the WAL archive's hole at the timeline switch: the segments
    the lost primary had completed but not archived. The promoted replica holds them in
    pg_wal but PostgreSQL never archives streamed WAL (archive_mode=on), so every backup
    taken before the failover would stop there. They are re-marked .ready on the new
    primary and its own archive_command uploads them; this waits (at most
    `timeout_seconds`) until the bucket lists every one. Fails, naming the segments, when
    the new primary no longer holds them: the hole is then permanent. Recorded as the
    evidence's `wal_backfill` (holes found, segments, seconds to close).
    Returns that record."""
    from pgdrill.bucket.backfill import backfill

    target = ready_target(configuration, secrets)
    outcome = backfill(target, timeout=float(timeout_seconds))
    record = outcome.to_dict()
    run_context(configuration).update(wal_backfill=record)
    if not outcome.closed:
        raise TargetError(
            outcome.problem or "the WAL archive's hole could not be closed", fix=outcome.fix
        )
    return record
