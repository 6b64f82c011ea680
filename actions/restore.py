"""Restore actions: the latest backup into the isolated restore-test target, and cleanup."""

from __future__ import annotations

from datetime import datetime

from chaoslib.types import Configuration, Secrets

from pgdrill.bucket.restore_gate import check_wal_chain
from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.core.console import say
from pgdrill.core.errors import PgdrillError
from pgdrill.core.model import RecoveryTarget
from pgdrill.restore.checks import backup_destination, check_restore_point_in_wal
from pgdrill.restore.facts import read_reached_position
from pgdrill.restore.plan import choose_backup
from pgdrill.restore.position import archive_end_mismatch, position_mismatch
from pgdrill.restore.repair import (
    RepairRefused,
    RepairReport,
    copy_table_checked,
    reference_for,
    repair_refusals,
)

__all__ = ["restore_latest_backup", "cleanup_restore", "repair_table_from_restore"]


@activity
def restore_latest_backup(
    target_time: str = None,
    restore_point: str = None,
    target_lsn: str = None,
    timeout_seconds: int = 900,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict:
    """Restore from the object store into the isolated `restore-test` target (step 3 of the
    safe workflow): the newest backup that can reach the recovery target, then WAL replay up
    to the end of the archive (default), a time (`target_time`, ISO-8601 with offset), a named
    restore point (`restore_point`: a name given to actions.backup.mark_restore_point in this
    run, or a restore point name as written in the WAL) or an LSN (`target_lsn`). The copy
    never archives into the source's backup path.
    Then it proves where recovery stopped: it reads the new timeline's history file and
    records `reached` (LSN, timeline, reason) beside `requested`; the activity fails, naming
    both positions, when recovery stopped anywhere but the requested point (another restore
    point of the same name, an earlier LSN, a time before the target, or — for latest —
    before the last WAL segment the archive listed when the restore started: replay that
    ended early at a damaged segment). The source's flush LSN at the start is recorded too.
    Refused before restore-test is touched: an object store without a completed backup, a
    target time before the oldest backup ended, a restore point neither marked in this run
    nor in the source's WAL since the chosen backup began, and a restore the WAL archive
    cannot take where asked (pgdrill.bucket.restore_gate): a gap after the backup stops a
    restore to latest (PostgreSQL would promote at the gap as if it were the end), a target
    past the gap, or a backup whose own WAL has a hole — the refusal quotes the sentence
    `pgdrill bucket-report` prints. The bucket report is recorded in the run context
    (`bucket`, and what the gate checked in `wal_chain`).
    Returns backup id, requested and reached positions and phase timings; the copy is not
    "successful" until probes.verify.checklist_passes validates it."""
    ctx = run_context(configuration)
    point = (ctx.read().get("restore_points") or {}).get(restore_point or "")
    real_name = point.get("real_name", point.get("name")) if point else restore_point
    recovery = RecoveryTarget.parse(target_time, target_lsn, real_name)
    target = ready_target(configuration, secrets)
    not_after = datetime.fromisoformat(point["time"]) if point else None
    backup = choose_backup(
        target.list_backups(), recovery, not_after, where=backup_destination(target)
    )
    # refused here too, before restore-test is touched: a WAL gap would make PostgreSQL stop
    # replay early and promote quietly ("latest"), or fail late (a target past the gap)
    gate = check_wal_chain(target, backup, recovery, point.get("lsn") if point else None)
    ctx.update(wal_chain=gate.record, bucket=gate.report)
    if gate.refusal:
        raise gate.error()
    # refused here, before restore-test is touched: a name neither marked in this run nor
    # in the WAL would replay the whole archive and end in PostgreSQL's FATAL
    wal_check = (
        check_restore_point_in_wal(target, real_name, backup)
        if recovery.kind == "restore_point" and not point
        else None
    )
    requested = {
        **recovery.to_dict(),
        "name": restore_point,
        "real_name": real_name,
        "expected_lsn": point.get("lsn") if point else None,
    }
    if recovery.kind != "restore_point":
        requested.pop("real_name")
        requested.pop("expected_lsn")
    # recorded before the restore, so an interrupted restore still names what it restored
    record = {
        "backup_id": backup.id,
        "target": requested,
        "requested": requested,
        "started_at": None,
        "phases": {},
    }
    if wal_check:
        record["restore_point_check"] = wal_check
    ctx.update(backup=backup.to_dict(), restore=record)
    source_flush = _source_flush_lsn(target)
    result = target.restore(backup, recovery, timeout=float(timeout_seconds))
    record.update(
        started_at=result.started_at.isoformat(),
        phases=result.phases,
        phase_details=result.phase_details,
        instance=result.instance.to_dict(),
    )
    with target.connect(result.instance, "postgres") as conn:
        reached = read_reached_position(conn)
    mismatch = position_mismatch(recovery, reached, requested.get("expected_lsn"), real_name)
    if mismatch is None and recovery.kind == "latest":
        mismatch = archive_end_mismatch(reached, gate.record.get("archive_end"))
    record.update(
        reached=reached.to_dict(),
        position_ok=mismatch is None,
        position_error=mismatch,
        archive_end=gate.record.get("archive_end"),
        source_flush_lsn=source_flush,
    )
    ctx.update(restore=record)
    if mismatch:
        raise PgdrillError(
            f"the restore did not stop where it was asked to: {mismatch}",
            fix="use a restore point name that is unique in the WAL (the "
            "default of mark_restore_point), or take a new backup after "
            "the older point",
        )
    say(
        f"restore-test is up from backup {backup.id} in {sum(result.phases.values()):.1f}s; "
        f"recovery stopped at {reached.describe()}"
    )
    return record


def _source_flush_lsn(target) -> str | None:
    """The source primary's WAL flush position as the restore starts (for the evidence: how
    far the source was beyond what the archive held), or None when it cannot be read."""
    try:
        with target.connect(target.primary(), "postgres") as conn:
            return str(conn.execute("SELECT pg_current_wal_flush_lsn()").fetchone()[0])
    except Exception:
        return None


@activity
def cleanup_restore(configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """Remove the restore-test instance and its storage. Safe to call when there is none;
    use it in `rollbacks` with strategy `always`."""
    from pgdrill.targets import get_target

    get_target(configuration, secrets).cleanup_restore()
    return True


@activity
def repair_table_from_restore(
    table: str = "pgbench_accounts",
    database: str = "app",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict:
    """Put a damaged table back on the primary from the restore-test copy — only when that
    cannot make things worse: the copy passed its checklist (and pg_amcheck), recovery
    stopped exactly at the requested restore point, and the copy's fingerprints equal those
    captured at that point (probes.verify.capture_fingerprints before the damage,
    fingerprints_match after the restore). Otherwise it refuses, leaves the primary
    untouched and the evidence (`repair`) says why.
    The repair is one transaction on the primary: TRUNCATE, COPY every row from
    restore-test, fingerprint the result against the pre-damage fingerprint, COMMIT only if
    they are equal (TRUNCATE also drops a physically corrupted file). Use it as a rollback
    after a corruption drill, before cleanup_restore. A run that injected no fault (say,
    interrupted before it) has nothing to repair: the report says so and nothing fails.
    Returns the repair report."""
    ctx = run_context(configuration)
    data = ctx.read()
    label = ((data.get("restore") or {}).get("requested") or {}).get("name")
    report = RepairReport(table=table, reference=label)
    if not data.get("fault"):
        # e.g. a drill interrupted before its fault: there is nothing to repair
        say(f"repair of {table}: no fault was injected in this run, nothing to repair")
        ctx.update(repair=report.to_dict())
        return report.to_dict()
    report.refused = repair_refusals(data, table, label)
    target = ready_target(configuration, secrets)
    restored = target.restored_instance()
    if restored is None and not report.refused:
        report.refused.append("there is no restore-test copy to repair from")
    if report.refused:
        ctx.update(repair=report.to_dict())
        raise RepairRefused(
            f"repair of {table} refused, the primary is untouched: " + "; ".join(report.refused)
        )
    try:
        with (
            target.connect(restored, database) as src,
            target.connect(target.primary(), database) as dst,
        ):
            report.rows = copy_table_checked(src, dst, table, reference_for(data, table, label))
    except RepairRefused as exc:
        report.refused.append(exc.message)
        ctx.update(repair=report.to_dict())
        raise
    report.performed = True
    ctx.update(repair=report.to_dict())
    say(
        f"repaired {table} on the primary from restore-test: {report.rows} rows, equal to "
        f"its fingerprint at {label!r}"
    )
    return report.to_dict()
