"""Fault injection: lose the primary, lose an instance's storage, corrupt a table, lose the
whole cluster."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.core.errors import BadInput
from pgdrill.core.model import Instance
from pgdrill.pg.replication import replication_of

__all__ = ["delete_primary_pod", "drop_pvc", "corrupt_table", "destroy_cluster"]


def _record(
    configuration: Configuration,
    kind: str,
    victim: Instance,
    started: tuple[float, float],
    **details,
) -> dict:
    """Record the fault with the instant it was injected (taken before the call, so that
    recovery measured from it includes everything the fault caused): wall-clock time for
    people, and the monotonic clock that durations are measured with."""
    wall, mono = started
    fault = {
        **details,
        "kind": kind,
        "instance": victim.name,
        "role": str(victim.role),
        "at": datetime.fromtimestamp(wall, UTC).isoformat(),
        "epoch": wall,
        "monotonic": mono,
    }
    run_context(configuration).update(fault=fault)
    return fault


@activity
def delete_primary_pod(configuration: Configuration = None, secrets: Secrets = None) -> dict:
    """Kill the primary abruptly: on the sandbox its postmaster gets SIGKILL; on CNPG the
    primary pod is deleted. The operator (or the sandbox supervisor) must promote a replica.
    Returns the fault record (kind, instance, time)."""
    target = ready_target(configuration, secrets)
    replication = replication_of(target)
    started = (time.time(), time.monotonic())
    victim = target.kill_primary()
    return _record(configuration, "delete_primary_pod", victim, started, replication=replication)


@activity
def drop_pvc(
    instance: str = "primary",
    unarchived_wal_segments: int = 0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict:
    """Destroy an instance's storage: `primary`, `replica` or an instance name. On the
    sandbox the instance is killed and its data directory deleted; on CNPG its PVC and pod
    are deleted. The cluster must heal by failover and re-cloning.
    `unarchived_wal_segments` (a primary only): switch WAL that many times right before the
    loss, so the primary dies with completed segments its archiver has not uploaded yet —
    the worst case under write load, made certain rather than left to timing (the WAL
    archive then has a hole at the failover: actions.backup.backfill_wal_archive).
    Returns the fault record (kind, instance, time; `archive_lag` when WAL was switched)."""
    target = ready_target(configuration, secrets)
    members = target.instances()
    if instance in ("primary", "replica"):
        chosen = [m for m in members if str(m.role) == instance]
    else:
        chosen = [m for m in members if m.name == instance]
    if not chosen:
        names = ", ".join(m.name for m in members)
        raise BadInput(
            f"no instance {instance!r} in the cluster",
            fix=f"use primary, replica or one of: {names}",
        )
    primary = str(chosen[0].role) == "primary"
    if int(unarchived_wal_segments) < 0 or (unarchived_wal_segments and not primary):
        raise BadInput(
            "unarchived_wal_segments must be 0 or more, and only for the primary",
            fix="drop_pvc(instance='primary', unarchived_wal_segments=4)",
        )
    replication = replication_of(target) if primary else None
    extra = {"replication": replication} if replication else {}
    if unarchived_wal_segments:
        extra["archive_lag"] = leave_unarchived_wal(target, int(unarchived_wal_segments))
    started = (time.time(), time.monotonic())
    victim = target.drop_storage(chosen[0])
    return _record(configuration, "drop_pvc", victim, started, **extra)


def leave_unarchived_wal(target, segments: int) -> dict:
    """Complete `segments` WAL segments on the primary at once (a commit, then
    pg_switch_wal, each time) and read how far its archiver got: the primary's archive lag
    at the instant of the fault."""
    with target.connect(target.primary(), "postgres") as conn:
        for _ in range(segments):
            conn.execute("SELECT txid_current()")
            conn.execute("SELECT pg_switch_wal()")
        current, archived = conn.execute(
            "SELECT pg_walfile_name(pg_current_wal_lsn()), last_archived_wal FROM pg_stat_archiver"
        ).fetchone()
    return {"switched_segments": segments, "current_wal": current, "last_archived_wal": archived}


@activity
def corrupt_table(
    table: str = "pgbench_accounts",
    mode: str = "logical",
    fraction: float = 0.1,
    database: str = "app",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict:
    """Corrupt a table on the primary. `logical`: application-style damage — delete about
    `fraction`/2 of the rows and change a numeric column in about `fraction`/2; it replicates,
    so only point-in-time recovery helps. `physical`: overwrite bytes of one on-disk page and
    evict it from cache; data checksums must detect it (the activity fails if they do not).
    Take a restore point and fingerprints first. Returns what was damaged."""
    if mode not in ("logical", "physical"):
        raise BadInput(f"unknown corruption mode {mode!r}", fix="use logical or physical")
    if not 0 < float(fraction) <= 1:
        raise BadInput(f"fraction {fraction} must be in (0, 1]")
    target = ready_target(configuration, secrets)
    started = (time.time(), time.monotonic())
    if mode == "physical":
        record = target.corrupt_page(table, database)
        if not record["detected"]:
            raise BadInput(
                f"the corrupted page of {table} was read without error: data "
                "checksums are off or the page was not re-read from disk",
                fix="enable data checksums (initdb --data-checksums)",
            )
    else:
        record = _logical_damage(target, table, float(fraction), database)
    return _record(configuration, "corrupt_table", target.primary(), started, mode=mode, **record)


def _logical_damage(target, table: str, fraction: float, database: str) -> dict:
    from psycopg import errors, sql

    ident = sql.Identifier(*table.split("."))
    with target.connect(target.primary(), database) as conn:
        try:
            column = conn.execute(
                "SELECT a.attname FROM pg_attribute a "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                "AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, "
                "'numeric'::regtype) AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE "
                "i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY(i.indkey)) "
                "ORDER BY a.attnum LIMIT 1",
                (table,),
            ).fetchone()
        except errors.UndefinedTable as exc:
            raise BadInput(f"table {table!r} does not exist in database {database!r}") from exc
        share = fraction / 2 if column else fraction
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE random() < %s").format(ident), (share,)
        ).rowcount
        updated = 0
        if column:
            col = sql.Identifier(column[0])
            updated = conn.execute(
                sql.SQL("UPDATE {} SET {} = {} + 1 WHERE random() < %s").format(ident, col, col),
                (share,),
            ).rowcount
    return {
        "table": table,
        "rows_deleted": deleted,
        "rows_updated": updated,
        "column_updated": column[0] if column else None,
    }


@activity
def destroy_cluster(
    min_writes_after_backup: int = 20,
    archive_timeout_seconds: int = 120,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict:
    """Destroy the whole cluster: every instance and its storage (sandbox: every postmaster
    SIGKILLed and every data directory deleted, the supervisor told first so that it heals
    nothing; CNPG: the Cluster and all its PVCs deleted). Only in develop and staging.
    Nothing is destroyed unless every check passes first: the bucket holds a completed
    backup, the load (when one runs) acknowledged `min_writes_after_backup` writes after that
    backup ended, and the WAL archive works — pg_switch_wal on the primary and its segment
    archived within `archive_timeout_seconds`: that is the archived end every write
    acknowledged before it must survive. Rebuild with
    actions.rebuild.rebuild_cluster_from_bucket. A CNPG Cluster that Flux applies (its
    labels) is refused unless the setting `flux_suspend` is true: then its Kustomization or
    HelmRelease is suspended right before the destruction and left suspended (evidence
    `flux`). Returns the fault record (kind, cluster, instances, old archive, archived end,
    time)."""
    from actions.rebuild import checks_before_destroying, old_archive_listing
    from pgdrill.chaos.preflight import flux_owner_to_suspend
    from pgdrill.core.console import say
    from pgdrill.targets.cnpg.flux import stays_suspended_note, suspended_record

    ctx = run_context(configuration)
    target = ready_target(configuration, secrets)
    checked = checks_before_destroying(
        target, ctx, configuration, int(min_writes_after_backup), float(archive_timeout_seconds)
    )
    owner = flux_owner_to_suspend(configuration, target)  # refused without flux_suspend
    if owner is not None:  # else Flux re-creates the Cluster from git mid-drill
        target.suspend_flux(owner)
        note = stays_suspended_note(owner, checked["location"].server_name)
        ctx.update(flux=suspended_record(owner, note))
        say(note)
    started = (time.time(), time.monotonic())
    try:
        destroyed = target.destroy_cluster()
    except BaseException as exc:  # half-destroyed is destroyed: the evidence and rollback know
        ctx.update(
            fault={
                **{k: v for k, v in checked.items() if k != "location"},
                "kind": "destroy_cluster",
                "role": "cluster",
                "instance": (configuration or {}).get("cluster") or "?",
                "at": datetime.fromtimestamp(started[0], UTC).isoformat(),
                "epoch": started[0],
                "monotonic": started[1],
                "destroy_error": str(exc) or type(exc).__name__,
            }
        )
        raise
    ended = time.time()
    listing = old_archive_listing(checked["location"])
    record = {
        **{k: v for k, v in checked.items() if k != "location"},
        "instances": destroyed["instances"],
        "server_name": destroyed["server_name"],
        "archive": destroyed["archive"],
        "destroyed_epoch": ended,
        "old_archive_at_destroy": listing,
    }
    ctx.update(destroyed=destroyed)
    wall, mono = started
    fault = {
        **record,
        "kind": "destroy_cluster",
        "instance": destroyed["cluster"],
        "role": "cluster",
        "at": datetime.fromtimestamp(wall, UTC).isoformat(),
        "epoch": wall,
        "monotonic": mono,
    }
    ctx.update(fault=fault)
    return fault
