"""A destroyed cluster rebuilt from its bucket alone, and verified: after a cluster loss the
rebuilt cluster IS the restored copy (cluster-loss drill, with actions.faults.destroy_cluster).

Evidence: `restore` is the rebuild (backup, phases, where recovery stopped, `rebuild`: the old
and new serverName and archives, whether the old folder stayed untouched, the first backup of
the rebuilt cluster); `rpo` the acknowledged writes missing from the rebuilt primary, against
the archived end sealed before the destruction."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.core.console import say
from pgdrill.core.errors import BadInput, PgdrillError, PreflightRefused
from pgdrill.core.model import RecoveryTarget

__all__ = [
    "rebuild_cluster_from_bucket",
    "rebuilt_checklist_passes",
    "rebuilt_fingerprints_match",
    "lost_writes_after_rebuild",
    "rebuild_if_destroyed",
]

from pgdrill.verification.checklist import ISOLATION_CHECK


@activity
def rebuild_cluster_from_bucket(
    timeout_seconds: int = 900,
    first_backup: bool = True,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict:
    """Rebuild the cluster that actions.faults.destroy_cluster destroyed in this run, under
    its own name, from the bucket alone: the newest completed backup of its OLD archive,
    WAL replayed from the old serverName to the end of the archive, promotion, archiving
    into a NEW serverName (`<old>-r<N>`, checked empty first as CNPG does), replicas
    re-created from the new primary (CNPG: a new Cluster with bootstrap.recovery from an
    externalClusters entry that reads the old archive). Then it proves the rebuild: recovery
    stopped at the end of the archive, not before the archived end sealed before the
    destruction; the new archive differs from the old and receives WAL; the old folder got
    no object since the destruction. With `first_backup`, takes the rebuilt cluster's first
    base backup (into the new serverName). Returns the `restore` record."""
    from pgdrill.restore.facts import read_reached_position
    from pgdrill.restore.plan import choose_backup
    from pgdrill.restore.position import lsn_to_int, position_mismatch
    from pgdrill.targets.cnpg.catalog import list_store_backups

    ctx = run_context(configuration)
    data = ctx.read()
    fault = _destroy_fault(data)
    target = ready_target(configuration, secrets)
    old = _location(target, fault)
    backup = choose_backup(
        list_store_backups(old.client(), old.destination_path, old.server_name),
        RecoveryTarget(),
        where=old.archive,
    )
    # the old folder as the destruction left it (taken now if the destruction was cut short)
    at_destroy = fault.get("old_archive_at_destroy") or old_archive_listing(old)
    latest = RecoveryTarget().to_dict()
    record = {
        "backup_id": backup.id,
        "target": latest,
        "requested": latest,
        "started_at": None,
        "phases": {},
        "kind": "rebuild_from_bucket",
    }
    ctx.update(backup=backup.to_dict(), restore=record)
    result = target.rebuild_from_backup(
        backup, data.get("destroyed"), timeout=float(timeout_seconds)
    )
    record.update(
        started_at=result.started_at.isoformat(),
        phases=result.phases,
        phase_details=result.phase_details,
        instance=result.instance.to_dict(),
    )
    with target.connect(result.instance, "postgres") as conn:
        reached = read_reached_position(conn)
    sealed = fault["archived_end"]
    mismatch = position_mismatch(RecoveryTarget(), reached)
    if mismatch is None and lsn_to_int(reached.lsn) < lsn_to_int(sealed["lsn"]):
        mismatch = (
            f"recovery stopped at {reached.describe()}, before the archived end "
            f"{sealed['lsn']} (segment {sealed['segment']}) sealed before the "
            f"destruction: archived WAL was not replayed"
        )
    new = target.bucket_location()
    _note_flux_server_name(ctx, old.server_name, new.server_name)
    after = old_archive_listing(old)
    rebuild = {
        "server_name_before": old.server_name,
        "server_name_after": new.server_name,
        "archive_before": old.archive,
        "archive_after": new.archive,
        "old_archive_at_destroy": at_destroy,
        "old_archive_after_rebuild": after,
        "old_archive_untouched": after == at_destroy,
        "new_archive_objects": old_archive_listing(new)["objects"],
    }
    record.update(
        reached=reached.to_dict(),
        position_ok=mismatch is None,
        position_error=mismatch,
        rebuild=rebuild,
    )
    ctx.update(restore=record)
    problems = [mismatch] if mismatch else []
    if new.archive == old.archive:
        problems.append(f"the rebuilt cluster archives into the old folder {old.archive}")
    if not rebuild["old_archive_untouched"]:
        problems.append(
            f"the old archive {old.archive} changed after the destruction "
            f"({at_destroy['objects']} objects then, "
            f"{after['objects']} now)"
        )
    if not rebuild["new_archive_objects"]:
        problems.append(f"the rebuilt cluster archived nothing into {new.archive}")
    if first_backup:  # the rebuilt cluster runs: back it up, proven or not
        taken = target.backup(timeout=float(timeout_seconds))
        rebuild["first_backup"] = taken.to_dict()
        ctx.update(restore=record)
    if problems:
        raise PgdrillError("the rebuild from the bucket is not proven: " + "; ".join(problems))
    say(
        f"rebuilt from backup {backup.id} of {old.archive}: recovery stopped at "
        f"{reached.describe()}; archiving into {new.archive}"
    )
    return record


@activity
def rebuilt_checklist_passes(
    checklist: str = "experiments/checklists/app.yaml",
    amcheck: bool = True,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> bool:
    """The Restore Verification Checklist and pg_amcheck on the REBUILT cluster's primary
    (after a cluster loss it is the restored copy), recorded as `validation` and `amcheck`.
    The checklist's `isolated-from-source-archive` check is replaced by a built-in one,
    `archives-into-new-server-name`: the rebuilt cluster archives, but only into its new
    serverName (its archive_command names it and not the old one)."""
    import dataclasses

    from pgdrill.verification.amcheck import amcheck_check, run_amcheck
    from pgdrill.verification.checklist import (
        CheckResult,
        load_checklist,
        record_validation,
        run_checklist,
    )

    plan = load_checklist(checklist)
    plan = dataclasses.replace(
        plan, checks=tuple(c for c in plan.checks if c.name != ISOLATION_CHECK)
    )
    ctx = run_context(configuration)
    fault = _destroy_fault(ctx.read())
    target = ready_target(configuration, secrets)
    primary = target.primary()
    t0 = time.monotonic()
    with target.connect(primary, plan.database) as conn:
        results = run_checklist(conn, plan)
    new = target.bucket_location().server_name
    ok = new != fault["server_name"]
    results.append(
        CheckResult(
            name="archives-into-new-server-name",
            query="serverName of the rebuilt cluster's archive",
            expected=f"not {fault['server_name']}",
            actual=new,
            passed=ok,
        )
    )
    found = None
    if amcheck:
        say("running pg_amcheck --heapallindexed on the rebuilt primary")
        found = run_amcheck(primary, client_env=target.client_env(primary))
        results.append(amcheck_check(found))
    record_validation(
        ctx,
        results,
        seconds=time.monotonic() - t0,
        checklist=plan.path,
        amcheck=found,
        copy="the rebuilt cluster",
    )
    return True


@activity
def rebuilt_fingerprints_match(
    label: str = "before-destroy",
    database: str = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> bool:
    """Compare the rebuilt primary's table fingerprints with those captured under `label`
    (probes.verify.capture_fingerprints right before the destruction), in the database they
    were captured in (or `database`); records `fingerprints` and fails naming each table and
    key range that differs."""
    from pgdrill.verification.fingerprint import (
        TableFingerprint,
        compare_fingerprints,
        fingerprint_tables_like,
    )

    ctx = run_context(configuration)
    data = ctx.read()
    stored = (data.get("fingerprints_reference") or {}).get(label)
    database = database or (data.get("fingerprints_reference_database") or {}).get(label) or "app"
    if not stored:
        raise BadInput(
            f"no fingerprints were captured as {label!r}",
            fix=f"call probes.verify.capture_fingerprints(label={label!r}) before destroy_cluster",
        )
    target = ready_target(configuration, secrets)
    reference = {name: TableFingerprint.from_dict(fp) for name, fp in stored.items()}
    with target.connect(target.primary(), database) as conn:
        diff = compare_fingerprints(reference, fingerprint_tables_like(conn, reference))
    ctx.update(fingerprints={**diff, "reference": label})
    if not diff["match"]:
        bad = [
            f"{t['table']} key ranges {[[r['lo'], r['hi']] for r in t['differing_ranges']]}"
            for t in diff["tables"]
            if not t["match"]
        ]
        raise PgdrillError(
            f"the rebuilt cluster's fingerprints differ from {label}: " + "; ".join(bad)
        )
    say(f"fingerprints of the rebuilt cluster match {label}")
    return True


@activity
def lost_writes_after_rebuild(configuration: Configuration = None, secrets: Secrets = None) -> dict:
    """Count the load's acknowledged writes missing from the rebuilt primary (evidence
    `rpo`, reference: the instant the cluster was destroyed). Writes acknowledged after the
    archived end (sealed by destroy_cluster before it destroyed anything) may be missing:
    that is the RPO, judged against rpo_objective_seconds. A write acknowledged before the
    archived end and missing fails the activity: the archive had it. Returns the counts."""
    from pgdrill.chaos.writes import ack_log, present_writes
    from pgdrill.load.acklog import read_acks
    from pgdrill.verification.rpo import measure_rpo

    ctx = run_context(configuration)
    fault = _destroy_fault(ctx.read())
    target = ready_target(configuration, secrets)
    log = ack_log(ctx.run_dir)
    if not log.exists():
        raise BadInput(
            f"no ack log at {log}: there was no load in this run",
            fix="start it with actions.load.start_load",
        )
    acks = read_acks(log)  # before the rows: every ack read was committed before the query
    present = present_writes(target, target.primary())
    # the rebuilt cluster is written after the destruction: only writes sent before it
    # witness holes in the history it restored (pgdrill.verification.rpo)
    before = float(fault["epoch"])
    report = measure_rpo(
        acks,
        present,
        float(fault.get("destroyed_epoch") or fault["epoch"]),
        reference_kind="cluster destroyed",
        witnesses_before=before,
    )
    sealed = fault["archived_end"]
    promised = measure_rpo(
        acks,
        present,
        float(sealed["epoch"]),
        reference_kind="archived end",
        witnesses_before=before,
    )
    rpo = {
        **report.to_dict(),
        "archived_end": sealed,
        "lost_before_archived_end": promised.lost_writes,
        "lost_before_archived_end_examples": promised.lost_examples,
        "lost_after_archived_end": report.lost_writes - promised.lost_writes,
    }
    ctx.update(rpo=rpo)
    say(
        f"{report.lost_writes} of {report.acknowledged_writes} acknowledged writes lost with "
        f"the cluster ({promised.lost_writes} of them acknowledged before the archived end "
        f"{sealed['lsn']}); RPO {report.rpo_seconds}s"
    )
    if promised.lost_writes:
        raise PgdrillError(
            f"{promised.lost_writes} writes acknowledged before the archived "
            f"end {sealed['lsn']} ({sealed['at']}) are missing from the rebuilt "
            f"cluster, e.g. {', '.join(promised.lost_examples)}"
        )
    return rpo


@activity
def rebuild_if_destroyed(
    timeout_seconds: int = 900, configuration: Configuration = None, secrets: Secrets = None
) -> dict:
    """Rollback: when this run destroyed the cluster and its rebuild never finished (the
    method failed or was interrupted in between), rebuild it from the bucket now, so that
    no drill leaves a destroyed cluster behind. Does nothing otherwise (safe in rollbacks).
    Returns {"rebuilt": bool, ...}."""
    ctx = run_context(configuration)
    data = ctx.read()
    fault = data.get("fault") or {}
    if fault.get("kind") != "destroy_cluster" or (data.get("restore") or {}).get("started_at"):
        return {"rebuilt": False}
    say("the cluster was destroyed and not rebuilt: rebuilding it from the bucket")
    record = rebuild_cluster_from_bucket(
        timeout_seconds=timeout_seconds,
        first_backup=True,
        configuration=configuration,
        secrets=secrets,
    )
    return {"rebuilt": True, "backup_id": record["backup_id"]}


# -- shared with actions.faults.destroy_cluster (not activities) --------------------------
def checks_before_destroying(
    target, ctx, configuration: dict | None, min_writes: int, archive_timeout: float
) -> dict:
    """Everything that must hold before a cluster may be destroyed, checked in order; the
    first that fails raises and nothing is destroyed. Returns the facts (the old archive's
    location, the backup the rebuild can start from, the archived end)."""
    from pgdrill.evidence import policy
    from pgdrill.restore.checks import backup_destination
    from pgdrill.restore.plan import choose_backup

    data = ctx.read()
    environment = data.get("environment") or (configuration or {}).get("environment")
    why = policy.destruction_refusal(environment or policy.DEFAULT_ENVIRONMENT)
    if why:
        raise PreflightRefused(why, fix="run the drill in develop or staging")
    location = target.bucket_location()
    backup = choose_backup(
        target.list_backups(), RecoveryTarget(), where=backup_destination(target)
    )
    writes = _writes_after(data.get("load") or {}, backup.end_time.timestamp(), min_writes)
    with target.connect(target.primary(), "postgres") as conn:
        sealed = time.time()  # every write acknowledged before this precedes the switch
        lsn = str(conn.execute("SELECT pg_switch_wal()").fetchone()[0])
        segment = conn.execute("SELECT pg_walfile_name(%s::pg_lsn - 1)", (lsn,)).fetchone()[0]
        _wait_archived(conn, segment, archive_timeout, location.archive)
    say(
        f"checks passed: backup {backup.id} in {location.archive}, {writes} writes "
        f"acknowledged since it ended, WAL archived up to {lsn} ({segment})"
    )
    return {
        "location": location,
        "archive_location": location.describe(),
        "backup_id": backup.id,
        "writes_after_backup": writes,
        "archived_end": {
            "lsn": lsn,
            "segment": segment,
            "epoch": sealed,
            "at": datetime.fromtimestamp(sealed, UTC).isoformat(),
        },
    }


def _wait_archived(conn, segment: str, timeout: float, archive: str) -> None:
    """Poll pg_stat_archiver until `segment` (or a later one) is archived: the proof that the
    WAL archive works, taken right before the destruction."""
    from pgdrill.core.waiting import poll_until

    def archived() -> bool:
        last = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
        return bool(last) and last[:24] >= segment

    poll_until(
        archived,
        timeout=timeout,
        interval=0.2,
        what=f"WAL segment {segment} to be archived into {archive} (nothing is "
        f"destroyed while the WAL archive does not work)",
        fix="check WAL archiving: pg_stat_archiver on the primary, the object store",
    )


def _writes_after(load: dict, since: float, wanted: int) -> int:
    """Wait (with a deadline) until the load acknowledged `wanted` writes after `since`."""
    from pgdrill.core.waiting import poll_until
    from pgdrill.load.acklog import read_acks

    if not load.get("ack_log") or wanted <= 0:
        return 0

    def count() -> int | None:
        n = sum(
            1
            for a in read_acks(load["ack_log"], int(load.get("ack_offset") or 0))
            if a.acked_at > since
        )
        return n if n >= wanted else None

    return poll_until(
        count,
        timeout=120,
        interval=0.2,
        what=f"the load to acknowledge {wanted} writes after the backup",
        fix="check that the load runs (actions.load.start_load)",
    )


def old_archive_listing(location) -> dict:
    """Every object under an archive folder, as a count and a digest of (key, size, ETag):
    equal listings mean nothing was added, removed or rewritten there."""
    client, digest, count = location.client(), hashlib.sha256(), 0
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=location.bucket, Prefix=location.prefix
    ):
        keys += [
            (o["Key"], int(o.get("Size") or 0), o.get("ETag") or "")
            for o in page.get("Contents", [])
        ]
    for key, size, etag in sorted(keys):
        digest.update(f"{key}\t{size}\t{etag}\n".encode())
        count += 1
    return {"archive": location.archive, "objects": count, "sha256": digest.hexdigest()}


def _note_flux_server_name(ctx, old: str, new: str) -> None:
    """Name the rebuilt serverName in the note of a Flux owner left suspended (actions.faults.
    destroy_cluster): the user must put it into git before resuming."""
    from pgdrill.targets.cnpg.flux import stays_suspended_note

    flux = ctx.read().get("flux")
    if not flux:
        return
    note = stays_suspended_note(flux, old, new)
    ctx.update(flux={**flux, "note": note})
    say(note)


def _destroy_fault(data: dict) -> dict:
    fault = data.get("fault") or {}
    if fault.get("kind") != "destroy_cluster":
        raise BadInput(
            "this run destroyed no cluster",
            fix="run actions.faults.destroy_cluster earlier in the method",
        )
    return fault


def _location(target, fault: dict):
    """The destroyed cluster's (old) archive, read with the target's credentials."""
    from pgdrill.credentials.location import BucketLocation

    where = fault["archive_location"]
    return BucketLocation(
        where["destination_path"],
        where["server_name"],
        target.s3_credentials(),
        where.get("endpoint"),
    )
