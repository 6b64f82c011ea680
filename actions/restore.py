"""Restore actions: the latest backup into the isolated restore-test target, and cleanup."""

from __future__ import annotations

from datetime import datetime

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.console import say
from pgdrill.model import RecoveryTarget
from pgdrill.restore_plan import choose_backup

__all__ = ["restore_latest_backup", "cleanup_restore", "repair_table_from_restore"]


@activity
def restore_latest_backup(target_time: str = None, restore_point: str = None,
                          target_lsn: str = None, timeout_seconds: int = 900,
                          configuration: Configuration = None, secrets: Secrets = None) -> dict:
    """Restore from the object store into the isolated `restore-test` target (step 3 of the
    safe workflow): the newest backup that can reach the recovery target, then WAL replay up
    to the end of the archive (default), a time (`target_time`, ISO-8601 with offset), a named
    restore point (`restore_point`) or an LSN (`target_lsn`). The copy never archives into the
    source's backup path. Returns backup id, recovery target and phase timings; it is not
    "successful" until probes.verify.checklist_passes validates it."""
    recovery = RecoveryTarget.parse(target_time, target_lsn, restore_point)
    target = ready_target(configuration)
    ctx = run_context(configuration)
    known = ctx.read().get("restore_points", {}).get(restore_point or "")
    not_after = datetime.fromisoformat(known["time"]) if known else None
    backup = choose_backup(target.list_backups(), recovery, not_after)
    result = target.restore(backup, recovery, timeout=float(timeout_seconds))
    record = {
        "backup_id": backup.id,
        "target": recovery.to_dict(),
        "started_at": result.started_at.isoformat(),
        "phases": result.phases,
        "instance": result.instance.to_dict(),
    }
    ctx.update(backup=backup.to_dict(), restore=record)
    say(f"restore-test is up from backup {backup.id} in {sum(result.phases.values()):.1f}s")
    return record


@activity
def cleanup_restore(configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """Remove the restore-test instance and its storage. Safe to call when there is none;
    use it in `rollbacks` with strategy `always`."""
    from pgdrill.targets import get_target

    get_target(configuration).cleanup_restore()
    return True


@activity
def repair_table_from_restore(table: str = "pgbench_accounts", database: str = "app",
                              configuration: Configuration = None,
                              secrets: Secrets = None) -> dict:
    """Put a damaged table back from the validated restore-test copy: TRUNCATE it on the
    primary and COPY every row over from restore-test (the usual repair after a
    point-in-time restore into a side instance; TRUNCATE also drops a physically corrupted
    file). Use it as a rollback after a corruption drill, before cleanup_restore.
    Returns the number of rows copied."""
    from psycopg import sql

    target = ready_target(configuration)
    restored = target.restored_instance()
    if restored is None:
        raise ValueError("there is no restore-test copy to repair from")
    ident = sql.Identifier(*table.split("."))
    rows = 0
    with target.connect(restored, database) as src, target.connect(target.primary(),
                                                                     database) as dst:
        with dst.transaction():
            dst.execute(sql.SQL("TRUNCATE {}").format(ident))
            with src.cursor().copy(sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(ident)) \
                    as out, dst.cursor().copy(
                        sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(ident)) as inp:
                for chunk in out:
                    inp.write(chunk)
        rows = dst.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]
    say(f"repaired {table} on the primary from restore-test: {rows} rows")
    return {"table": table, "rows": rows}
