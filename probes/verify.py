"""Verification probes on the restored copy: the Restore Verification Checklist, table
fingerprints and lost acknowledged writes (RPO)."""

from __future__ import annotations

import time

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.chaos.writes import lost_writes_on, restore_reference
from pgdrill.amcheck import amcheck_check, run_amcheck
from pgdrill.checklist import load_checklist, record_validation, run_checklist
from pgdrill.fingerprint import (
    TableFingerprint, compare_fingerprints, fingerprint_tables, fingerprint_tables_like,
    narrow_difference,
)
from pgdrill.console import say
from pgdrill.errors import PgdrillError

__all__ = ["checklist_passes", "capture_fingerprints", "fingerprints_match", "lost_writes"]

DEFAULT_TABLES = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers"]


@activity
def checklist_passes(checklist: str = "experiments/checklists/app.yaml", amcheck: bool = True,
                     configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """Run the checklist (YAML: named SQL queries with expected values) against the
    restore-test copy, then PostgreSQL's own consistency check, `pg_amcheck
    --heapallindexed` over all its databases (a built-in step named `pg_amcheck`; turn it
    off with amcheck=false). Every result is recorded as evidence (`validation`, `amcheck`);
    fails naming each query whose value differs and each corrupt relation pg_amcheck found.
    Evidence-first: a restore succeeds only once this passes."""
    plan = load_checklist(checklist)
    target = ready_target(configuration, secrets)
    restored = _restored(target)
    t0 = time.monotonic()
    with target.connect(restored, plan.database) as conn:
        results = run_checklist(conn, plan)
    amcheck_result = None
    if amcheck:
        say("running pg_amcheck --heapallindexed on the restored copy")
        amcheck_result = run_amcheck(restored, client_env=target.client_env(restored))
        results.append(amcheck_check(amcheck_result))
    record_validation(run_context(configuration), results, seconds=time.monotonic() - t0,
                      checklist=plan.path, amcheck=amcheck_result)
    return True


def _restored(target):
    restored = target.restored_instance()
    if restored is None:
        raise PgdrillError("there is no restore-test instance",
                           fix="run actions.restore.restore_latest_backup first")
    return restored


@activity
def capture_fingerprints(tables: list = None, label: str = None, database: str = "app",
                         configuration: Configuration = None, secrets: Secrets = None) -> dict:
    """Fingerprint `tables` (default: the pgbench tables) on the primary now — row counts
    and order-independent hashes per primary-key range — and keep them as the reference
    named `label` (default: the newest restore point of this run). Call it right after
    actions.backup.mark_restore_point and before a fault. Returns {table: rows}."""
    target = ready_target(configuration, secrets)
    ctx = run_context(configuration)
    data = ctx.read()
    if label is None:
        points = data.get("restore_points") or {}
        label = max(points.values(), key=lambda p: p["time"])["name"] if points else "source"
    with target.connect(target.primary(), database) as conn:
        prints = fingerprint_tables(conn, list(tables or DEFAULT_TABLES))
    ctx.merge("fingerprints_reference",
              **{label: {name: fp.to_dict() for name, fp in prints.items()}})
    say(f"fingerprints of {', '.join(prints)} captured as {label!r}")
    return {name: fp.rows for name, fp in prints.items()}


@activity
def fingerprints_match(restore_point: str = None, tables: list = None, database: str = "app",
                       configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """Compare the restore-test copy's table fingerprints with a reference: those captured
    at `restore_point` (capture_fingerprints), or, without one, the primary's tables now
    (right for tables the drill does not write). Records `fingerprints` in the evidence and
    fails naming each table and key range that differs; against the live primary, each
    differing range is also bisected down to the narrowest key ranges that differ."""
    target = ready_target(configuration, secrets)
    ctx = run_context(configuration)
    if restore_point:
        stored = (ctx.read().get("fingerprints_reference") or {}).get(restore_point)
        if not stored:
            raise PgdrillError(f"no fingerprints were captured for restore point "
                               f"{restore_point!r}", fix="call capture_fingerprints after "
                               "mark_restore_point")
        reference = {name: TableFingerprint.from_dict(fp) for name, fp in stored.items()}
        label = restore_point
    else:
        with target.connect(target.primary(), database) as conn:
            reference = fingerprint_tables(conn, list(tables or DEFAULT_TABLES))
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
        bad = [f"{t['table']} key ranges "
               f"{t.get('narrowed_ranges') or [[r['lo'], r['hi']] for r in t['differing_ranges']]}"
               for t in diff["tables"] if not t["match"]]
        raise PgdrillError("restored fingerprints differ from " + label + ": " + "; ".join(bad))
    say(f"fingerprints of the restored copy match {label}")
    return True


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
def lost_writes(on: str = "restore-test", configuration: Configuration = None,
                secrets: Secrets = None) -> dict:
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
        report = lost_writes_on(target, _restored(target), ctx.run_dir, reference, kind,
                                source=target.primary())
        ctx.update(rpo=report.to_dict())
    elif on == "primary":
        fault = data.get("fault") or {}
        report = lost_writes_on(target, target.primary(), ctx.run_dir, None, "failover check",
                                witnesses_before=fault.get("epoch"))
        ctx.merge("failover", **_failover_counts(report))
    else:
        raise PgdrillError(f"lost_writes(on={on!r}): use restore-test or primary")
    say(f"{report.lost_writes} of {report.acknowledged_writes} acknowledged writes lost on "
        f"{on}" + (f" ({report.holes} of them holes: older than writes that survived)"
                   if report.holes else "")
        + f"; {report.expected_absent} expected absent; RPO {report.rpo_seconds}s")
    return report.to_dict()


def _failover_counts(report) -> dict:
    return {"acknowledged_writes": report.acknowledged_writes,
            "lost_writes": report.lost_writes, "rpo_seconds": report.rpo_seconds,
            "lost_examples": report.lost_examples, "holes": report.holes,
            "hole_examples": report.hole_examples}
