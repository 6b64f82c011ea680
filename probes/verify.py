"""Verification probes on the restored copy: the Restore Verification Checklist, table
fingerprints and lost acknowledged writes (RPO)."""

from __future__ import annotations

import dataclasses
import time

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.chaos.writes import lost_writes_on, restore_reference
from pgdrill.core.console import say
from pgdrill.core.errors import PgdrillError
from pgdrill.load.writes import LEDGER
from pgdrill.verification.amcheck import amcheck_check, run_amcheck
from pgdrill.verification.checklist import (
    ISOLATION_CHECK,
    CheckResult,
    load_checklist,
    record_validation,
    run_checklist,
)
from pgdrill.verification.fingerprint import (
    TableFingerprint,
    compare_fingerprints,
    fingerprint_tables,
    fingerprint_tables_like,
    narrow_difference,
    user_tables,
)

__all__ = ["checklist_passes", "capture_fingerprints", "fingerprints_match", "lost_writes"]

# Without `tables`, capture_fingerprints and fingerprints_match read every user table of
# the database (pgdrill.verification.fingerprint.user_tables) but DRILL_WRITTEN_TABLES.
#
# Tables the drill itself writes while it runs. The restored copy stops at the end of the
# archive or at a restore point while they go on changing on the primary, so they differ
# from "the primary now" and from a reference captured a moment after the restore point,
# on a perfect restore; and their loss is judged elsewhere. Excluded by name in every schema
# (both are created unqualified, through the writer's search_path):
# - LEDGER (pgdrill_ledger): the load's writes (actions.load, pgdrill.load), each acknowledged
#   write checked row by row by lost_writes (evidence `rpo` and `failover`);
# - pgdrill_heartbeat: a row per call of probes.sql.writes_succeed (the steady-state
#   hypothesis "the primary accepts a write"), which holds nothing but its own id and time.
DRILL_WRITTEN_TABLES = (LEDGER, "pgdrill_heartbeat")


@activity
def checklist_passes(
    checklist: str = "experiments/checklists/app.yaml",
    amcheck: bool = True,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> bool:
    """Run the checklist (YAML: named SQL queries with expected values) against the
    restore-test copy, then PostgreSQL's own consistency check, `pg_amcheck
    --heapallindexed` over all its databases (a built-in step named `pg_amcheck`; turn it
    off with amcheck=false). Every result is recorded as evidence (`validation`, `amcheck`);
    fails naming each query whose value differs and each corrupt relation pg_amcheck found.
    One more built-in step, `isolated-from-source-archive`, is proven by the target: the
    sandbox's copy runs with archive_mode off; a CNPG copy (archive_mode is always on under
    CNPG) has no archive in its stored Cluster. Evidence-first: a restore succeeds only once
    this passes."""
    plan = load_checklist(checklist)
    plan = dataclasses.replace(
        plan, checks=tuple(c for c in plan.checks if c.name != ISOLATION_CHECK)
    )
    target = ready_target(configuration, secrets)
    restored = _restored(target)
    t0 = time.monotonic()
    with target.connect(restored, plan.database) as conn:
        results = run_checklist(conn, plan)
    # built in, proven by the target: the copy cannot write into the source's archive
    read, expected, actual, isolated = target.restore_isolation()
    results.append(
        CheckResult(
            name=ISOLATION_CHECK, query=read, expected=expected, actual=actual, passed=isolated
        )
    )
    amcheck_result = None
    if amcheck:
        say("running pg_amcheck --heapallindexed on the restored copy")
        amcheck_result = run_amcheck(restored, client_env=target.client_env(restored))
        results.append(amcheck_check(amcheck_result))
    record_validation(
        run_context(configuration),
        results,
        seconds=time.monotonic() - t0,
        checklist=plan.path,
        amcheck=amcheck_result,
    )
    return True


def _restored(target):
    restored = target.restored_instance()
    if restored is None:
        raise PgdrillError(
            "there is no restore-test instance",
            fix="run actions.restore.restore_latest_backup first",
        )
    return restored


@activity
def capture_fingerprints(
    tables: list = None,
    label: str = None,
    database: str = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict:
    """Fingerprint `tables` on the primary now — row counts and order-independent hashes per
    primary-key range — and keep them as the reference named `label` (default: the newest
    restore point of this run). Default tables: every user table of `database` (ordinary
    and partitioned tables, permanent, outside the system schemas) except those the drill
    itself writes, pgdrill_ledger (the load, judged by lost_writes) and pgdrill_heartbeat
    (probes.sql.writes_succeed). Default database: the checklist's (configuration
    `checklist`), else app. Call it right after actions.backup.mark_restore_point and
    before a fault. Returns {table: rows}."""
    target = ready_target(configuration, secrets)
    ctx = run_context(configuration)
    data = ctx.read()
    if label is None:
        points = data.get("restore_points") or {}
        label = max(points.values(), key=lambda p: p["time"])["name"] if points else "source"
    database = _database(database, configuration)
    with target.connect(target.primary(), database) as conn:
        prints = fingerprint_tables(conn, _tables(conn, tables))
    ctx.merge(
        "fingerprints_reference", **{label: {name: fp.to_dict() for name, fp in prints.items()}}
    )
    # where they were taken: a later comparison reads the same database
    ctx.merge("fingerprints_reference_database", **{label: database})
    say(f"fingerprints of {', '.join(prints)} captured as {label!r}")
    return {name: fp.rows for name, fp in prints.items()}


@activity
def fingerprints_match(
    restore_point: str = None,
    tables: list = None,
    database: str = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> bool:
    """Compare the restore-test copy's table fingerprints with a reference: those captured
    at `restore_point` (capture_fingerprints: the tables captured then), or, without one,
    the primary's tables now. Default tables: every user table of `database` (ordinary and
    partitioned tables, permanent, outside the system schemas) except pgdrill_ledger and
    pgdrill_heartbeat, which the drill itself writes (the load's writes are judged by
    lost_writes). Default database: the checklist's (configuration `checklist`), else app.
    Records `fingerprints` (every table compared) in the evidence and fails naming each
    table and key range that differs, and each table missing from the copy; against the
    live primary, each differing range is also bisected down to the narrowest key ranges
    that differ."""
    target = ready_target(configuration, secrets)
    ctx = run_context(configuration)
    database = _database(database, configuration)
    if restore_point:
        stored = (ctx.read().get("fingerprints_reference") or {}).get(restore_point)
        if not stored:
            raise PgdrillError(
                f"no fingerprints were captured for restore point {restore_point!r}",
                fix="call capture_fingerprints after mark_restore_point",
            )
        reference = {name: TableFingerprint.from_dict(fp) for name, fp in stored.items()}
        label = restore_point
    else:
        with target.connect(target.primary(), database) as conn:
            reference = fingerprint_tables(conn, _tables(conn, tables))
        label = "primary now"
    with target.connect(_restored(target), database) as conn:
        actual = fingerprint_tables_like(conn, reference)
        diff = compare_fingerprints(reference, actual)
        if not diff["match"] and not restore_point:
            # the source is live: bisect into each differing range (a restore point's
            # source has moved on since, so there is nothing to bisect against)
            with target.connect(target.primary(), database) as source:
                _narrow(diff, source, conn)
    ctx.update(fingerprints={**diff, "reference": label})
    if not diff["match"]:
        bad = [
            f"{t['table']} key ranges "
            f"{t.get('narrowed_ranges') or [[r['lo'], r['hi']] for r in t['differing_ranges']]}"
            for t in diff["tables"]
            if not t["match"]
        ]
        bad += [f"{name} missing from the restored copy" for name in diff["missing_tables"]]
        raise PgdrillError("restored fingerprints differ from " + label + ": " + "; ".join(bad))
    say(f"fingerprints of the restored copy match {label}")
    return True


def _database(database: str | None, configuration: Configuration) -> str:
    """`database`, else the database of the drill's checklist (configuration `checklist`),
    else app."""
    if database:
        return database
    checklist = (configuration or {}).get("checklist")
    return load_checklist(checklist).database if checklist else "app"


def _tables(conn, tables: list | None) -> list[str]:
    """`tables` if given (all of them, even a table the drill writes), else the default:
    every user table but DRILL_WRITTEN_TABLES."""
    if tables:
        return list(tables)
    return user_tables(conn, exclude=DRILL_WRITTEN_TABLES)


def _narrow(diff: dict, source, copy) -> None:
    for table in diff["tables"]:
        if table["match"] or not reference_keyed(table):
            continue
        narrowed = []
        for r in table["differing_ranges"]:
            narrowed += narrow_difference(source, copy, table["table"], r["lo"], r["hi"])
        table["narrowed_ranges"] = [[lo, hi] for lo, hi in narrowed]


def reference_keyed(table: dict) -> bool:
    """Only tables compared range by range (single integer key) can be bisected."""
    return table.get("compared_by") == "ranges"


@activity
def lost_writes(
    on: str = "restore-test", configuration: Configuration = None, secrets: Secrets = None
) -> dict:
    """Count the load's acknowledged writes missing on `restore-test` (evidence `rpo`:
    writes acknowledged after the recovery target, or after the restore began for
    "latest", are expected absent; the others are lost, and RPO runs from the oldest lost
    one; writes the source primary itself no longer holds are counted apart as
    source_missing) or on the `primary` after a fault (evidence `failover`: every
    acknowledged write should have survived; more lost than failover_lost_writes_objective,
    default 0, fails the drill). A lost write older than a write that survived is a hole
    (lag only loses the newest writes) and fails the drill whatever the objectives.
    Returns acknowledged_writes, lost_writes, holes, expected_absent and rpo_seconds."""
    target = ready_target(configuration, secrets)
    ctx = run_context(configuration)
    data = ctx.read()
    if on == "restore-test":
        reference, kind = restore_reference(data)
        report = lost_writes_on(
            target, _restored(target), ctx.run_dir, reference, kind, source=target.primary()
        )
        ctx.update(rpo=report.to_dict())
    elif on == "primary":
        fault = data.get("fault") or {}
        report = lost_writes_on(
            target,
            target.primary(),
            ctx.run_dir,
            None,
            "failover check",
            witnesses_before=fault.get("epoch"),
        )
        ctx.merge("failover", **_failover_counts(report))
    else:
        raise PgdrillError(f"lost_writes(on={on!r}): use restore-test or primary")
    say(
        f"{report.lost_writes} of {report.acknowledged_writes} acknowledged writes lost on "
        f"{on}"
        + (
            f" ({report.holes} of them holes: older than writes that survived)"
            if report.holes
            else ""
        )
        + f"; {report.expected_absent} expected absent; RPO {report.rpo_seconds}s"
    )
    return report.to_dict()


def _failover_counts(report) -> dict:
    return {
        "acknowledged_writes": report.acknowledged_writes,
        "lost_writes": report.lost_writes,
        "rpo_seconds": report.rpo_seconds,
        "lost_examples": report.lost_examples,
        "holes": report.holes,
        "hole_examples": report.hole_examples,
    }
