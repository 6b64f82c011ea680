"""One verification of a bucket's backup, end to end: preflight (nothing touched), then the
timed steps — WAL continuity, fetch, replay, ready, verify — each logged like a drill's
activity, then evidence, report and a ledger line (pgdrill.runs.finish), so
`pgdrill backups` counts the backup as verified once a verification of it passed.

The ledger line names the archive as the environment (`s3://bucket/path/`), the serverName as
the cluster, `bucket` as the target, and the PostgreSQL system identifier from backup.info
(checked against the restored copy's pg_control) as the cluster identity."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pgdrill.core.console import say
from pgdrill.core.errors import BadInput, PgdrillError, TargetError
from pgdrill.core.model import RecoveryTarget
from pgdrill.credentials.location import BucketLocation
from pgdrill.evidence.runcontext import RunContext, create_run_dir
from pgdrill.pg.versions import server_bin, server_version
from pgdrill.restore.facts import read_reached_position
from pgdrill.restore.plan import choose_backup
from pgdrill.restore.position import archive_end_mismatch, position_mismatch
from pgdrill.verification.checklist import (
    Checklist,
    load_checklist,
    parse_checklist,
    record_validation,
    run_checklist,
)
from pgdrill.verify_backup import source, tables
from pgdrill.verify_backup.scratch import ScratchInstance

EXPERIMENT = "verify-backup"
TARGET = "bucket"
BUILTIN_CHECKLIST = Path(__file__).with_name("checklist.yaml")


@dataclass(frozen=True)
class VerifyRequest:
    """What `pgdrill verify-backup` was asked."""

    location: BucketLocation
    reports_dir: Path
    backup_id: str = source.LATEST
    target_time: str | None = None
    checklist: str | None = None  # a YAML file; None: the built-in one
    amcheck: bool = True
    work_dir: Path | None = None
    timeout: float = 3600
    wal_max_parallel: int = 8  # as CNPG's wal.maxParallel (1: one segment at a time)


@dataclass(frozen=True)
class Plan:
    """What the preflight settled: the backup, its facts, the server build, the checks."""

    backup: object
    facts: source.BackupFacts
    recovery: RecoveryTarget
    bin_dir: Path
    version: str
    checklist: Checklist
    builtin_checklist: bool = False  # the generic one: holds-user-data runs after it
    folder: object = None  # the server folder as prepare read it (listing.ServerFolder)


def recovery_target(target_time: str | None) -> RecoveryTarget:
    """`latest`, or a time that must carry its UTC offset."""
    recovery = RecoveryTarget.parse(target_time=target_time)
    if recovery.kind == "time" and recovery.time.tzinfo is None:
        raise BadInput(
            f"--target-time {target_time!r} has no UTC offset",
            fix="write it like 2026-12-01T10:00:00+00:00",
        )
    return recovery


def prepare(request: VerifyRequest) -> Plan:
    """Everything checked before a byte is fetched: the checklist parses, the bucket reads,
    the backup exists and is complete, its major has a server build (downloaded if needed).
    Raises the pgdrill error naming the fix; nothing is written anywhere."""
    checklist = (
        load_checklist(request.checklist)
        if request.checklist
        else parse_checklist(BUILTIN_CHECKLIST.read_text(), "built-in checklist")
    )
    recovery = recovery_target(request.target_time)
    location = request.location
    say(f"reading the backups under {location.archive} at {location.endpoint}")
    folder = source.read_folder(location)
    backups = list(folder.backups)
    if request.backup_id == source.LATEST:
        if not any(b.completed for b in backups):
            source.pick_backup(backups, source.LATEST, location.archive)  # raises, naming them
        backup = choose_backup(backups, recovery, where=location.archive)
    else:
        backup = source.pick_backup(backups, request.backup_id, location.archive)
        if recovery.kind == "time" and backup.end_time and backup.end_time > recovery.time:
            raise BadInput(
                f"backup {backup.id} ended {backup.end_time.isoformat()}, after the "
                f"target time {recovery.time.isoformat()}",
                fix="pick an older backup, or --backup-id latest to choose one",
            )
    facts = source.facts_of(folder, backup)
    if facts.major is None:
        raise TargetError(
            f"backup.info of {backup.id} names no PostgreSQL version",
            fix="is this a barman-cloud backup? check the bucket path",
        )
    say(
        f"backup {backup.id} (ended {backup.end_time.isoformat() if backup.end_time else '?'})"
        f" was written by PostgreSQL {facts.major} (server_version_num {facts.version_num})"
    )
    bin_dir = server_bin(facts.major)
    version = server_version(bin_dir)
    return Plan(
        backup,
        facts,
        recovery,
        bin_dir,
        version,
        checklist,
        builtin_checklist=not request.checklist,
        folder=folder,
    )


class Steps:
    """The verification's steps, logged into the run context as a drill's activities are:
    the first failing step stops the rest (recorded, not raised)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.failed: str | None = None

    @contextmanager
    def step(self, name: str):
        start = datetime.now(UTC).isoformat()
        self.ctx.update(
            current_activity={"name": name, "type": "action", "phase": "method", "start": start}
        )
        entry = {"name": name, "type": "action", "phase": "method", "start": start}
        try:
            yield
        except PgdrillError as exc:
            self.failed = name
            self._log(entry, "failed", exc.message)
            say(f"step {name!r} failed: {exc.message}")
            return
        except KeyboardInterrupt:
            self._log(entry, "interrupted", None)
            raise
        self._log(entry, "succeeded", None)

    def _log(self, entry: dict, status: str, error: str | None) -> None:
        entry = {**entry, "status": status, "end": datetime.now(UTC).isoformat()}
        if error:
            entry["exception"] = f"pgdrill.core.errors.PgdrillError: {error}"
        self.ctx.append("activity_log", entry)
        self.ctx.update(current_activity=None)


def verify(request: VerifyRequest) -> dict:
    """Prepare, then run and record the verification; returns its evidence."""
    plan = prepare(request)
    from pgdrill.runs.finish import finish_run, journal_from_log
    from pgdrill.runs.stale import write_lock

    run_dir = create_run_dir(request.reports_dir, EXPERIMENT)
    scratch = ScratchInstance(
        request.location, plan.bin_dir, request.work_dir, request.wal_max_parallel
    )
    write_lock(run_dir, {"verify_scratch": str(scratch.home), "verify_bin_dir": str(plan.bin_dir)})
    ctx = RunContext(run_dir)
    location = request.location
    ctx.update(
        experiment=EXPERIMENT,
        target=TARGET,
        environment=location.destination_path,
        cluster=location.server_name,
        title=f"verify backup of {location.archive}",
        started_at=datetime.now(UTC).isoformat(),
        cluster_identity=plan.facts.systemid,
        credentials=location.credentials.describe(),
        backup=plan.backup.to_dict(),
        verification={**_verification(request, plan), "scratch_dir": str(scratch.home)},
    )
    status = "completed"
    try:
        run_steps(Steps(ctx), ctx, scratch, plan, request)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        scratch.remove()
        journal = journal_from_log(ctx.read(), status)
        journal["end"] = datetime.now(UTC).isoformat()
        start = datetime.fromisoformat(journal["start"])
        journal["duration"] = (datetime.now(UTC) - start).total_seconds()
        evidence = finish_run(run_dir, journal)
        say(f"verdict: {evidence['verdict'].upper()}  (evidence in {run_dir}/evidence.json)")
        for reason in evidence["reasons"]:
            say(f"  - {reason}")
    return {**evidence, "run_dir": str(run_dir)}


def _verification(request: VerifyRequest, plan: Plan) -> dict:
    return {
        "archive": request.location.archive,
        "endpoint": request.location.endpoint,
        "server_name": request.location.server_name,
        "backup_facts": plan.facts.to_dict(),
        "postgresql": {
            "major": plan.facts.major,
            "version": plan.version,
            "bin_dir": str(plan.bin_dir),
        },
        "checklist": request.checklist or "built-in",
        "requested_backup": request.backup_id,
        "wal_max_parallel": request.wal_max_parallel,
        "bucket_untouched": True,
    }


def run_steps(
    steps: Steps, ctx: RunContext, scratch: ScratchInstance, plan: Plan, request: VerifyRequest
) -> None:
    """The timed steps; each records its evidence as it goes."""
    backup, recovery = plan.backup, plan.recovery
    requested = recovery.to_dict()
    record = {
        "backup_id": backup.id,
        "target": requested,
        "requested": requested,
        "started_at": datetime.now(UTC).isoformat(),
        "phases": {},
        "phase_details": {},
        "instance": scratch.instance.to_dict(),
    }
    ctx.update(restore=record)
    phases: dict[str, float] = {}

    def timed(name: str):
        return _Timed(phases, name)

    gate: dict = {}
    with steps.step("check WAL continuity"):
        gate = check_wal_chain(ctx, request.location, backup, recovery, plan.folder)
    if steps.failed:
        return
    with steps.step("fetch base backup"), timed("fetch"):
        scratch.fetch(backup.id, request.timeout, plan.facts.tablespaces)
    if steps.failed:
        return
    set_aside: list[str] = []
    with steps.step("replay WAL and promote"), timed("replay"):
        set_aside += scratch.configure(recovery)
        scratch.replay(recovery, request.timeout)
    record["phase_details"]["configuration_set_aside"] = set_aside
    if steps.failed:
        return _save_phases(ctx, record, phases)
    with steps.step("check the copy is ready and isolated"), timed("ready"):
        scratch.check_isolated()
        with scratch.connect() as conn:
            reached = read_reached_position(conn)
            systemid = str(
                conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
            )
        mismatch = position_mismatch(recovery, reached)
        end = gate.get("archive_end")
        if mismatch is None and recovery.kind == "latest":
            mismatch = archive_end_mismatch(reached, end)
        record.update(
            reached=reached.to_dict(),
            position_ok=mismatch is None,
            position_error=mismatch,
            archive_end=end,
        )
        if plan.facts.systemid and systemid != plan.facts.systemid:
            raise TargetError(
                f"the restored copy's system identifier {systemid} is not "
                f"{plan.facts.systemid}, the one backup.info names"
            )
        say(f"the copy is up: recovery stopped at {reached.describe()}")
    _save_phases(ctx, record, phases)
    if steps.failed:
        return
    t0 = time.monotonic()
    with steps.step("run the checklist and pg_amcheck"):
        verify_copy(ctx, scratch, plan, request.amcheck)
    with steps.step("fingerprint every table"):
        fingerprint_copy(ctx, scratch, request)
    verify_seconds = round(time.monotonic() - t0, 3)
    ctx.merge(
        "verification",
        rto_phases={**phases, "verify": verify_seconds},
        throughput=throughput(plan, phases),
    )


class _Timed:
    def __init__(self, phases: dict[str, float], name: str) -> None:
        self.phases, self.name = phases, name

    def __enter__(self):
        self.t0 = time.monotonic()

    def __exit__(self, *exc):
        self.phases[self.name] = round(time.monotonic() - self.t0, 3)
        return False


def _save_phases(ctx: RunContext, record: dict, phases: dict[str, float]) -> None:
    record["phases"] = dict(phases)
    ctx.update(restore=record)


def throughput(plan: Plan, phases: dict[str, float]) -> dict:
    """MB/s of the fetch (stored, compressed bytes) and of the restore as a whole (the
    database's size when it was backed up, over fetch + replay)."""

    def rate(size: int | None, seconds: float | None) -> float | None:
        if not size or not seconds:
            return None
        return round(size / 1e6 / seconds, 2)

    restore_seconds = (phases.get("fetch") or 0) + (phases.get("replay") or 0)
    return {
        "stored_bytes": plan.backup.size,
        "database_bytes": plan.facts.cluster_size,
        "fetch_mb_per_s": rate(plan.backup.size, phases.get("fetch")),
        "restore_mb_per_s": rate(plan.facts.cluster_size, restore_seconds or None),
    }


def check_wal_chain(
    ctx: RunContext, location: BucketLocation, backup, recovery: RecoveryTarget, folder=None
) -> dict:
    """The bucket's WAL continuity past the backup (pgdrill.bucket.restore_gate, as before a
    drill's restore): a gap before the recovery target fails the step with the
    bucket-report sentence. The bucket report goes into the evidence either way;
    returns the gate's record."""
    from pgdrill.bucket import restore_gate

    class _Bucket:  # the one thing the gate asks of a target
        def bucket_location(self):
            return location

    # judged on the listing prepare() read: base/ and wals/ are listed once per run (a gap
    # is listed again after RECHECK_SECONDS, as before a drill's restore)
    result = restore_gate.check_wal_chain(_Bucket(), backup, recovery, folder=folder)
    ctx.update(wal_chain=result.record, bucket=result.report)
    if result.refusal:
        raise result.error()
    return result.record


def verify_copy(ctx: RunContext, scratch: ScratchInstance, plan: Plan, amcheck: bool) -> None:
    """The checklist, then pg_amcheck --heapallindexed of the copy's own major."""
    from pgdrill.verification.amcheck import amcheck_check, run_amcheck

    t0 = time.monotonic()
    with scratch.connect(plan.checklist.database) as conn:
        results = run_checklist(conn, plan.checklist)
    if plan.builtin_checklist:
        results.append(tables.user_data_check(tables.user_data(scratch.connect)))
    amcheck_result = None
    if amcheck:
        say("running pg_amcheck --heapallindexed on the restored copy")
        amcheck_result = run_amcheck(scratch.instance, bin_dir=plan.bin_dir, major=plan.facts.major)
        results.append(amcheck_check(amcheck_result))
    record_validation(
        ctx,
        results,
        seconds=time.monotonic() - t0,
        checklist=plan.checklist.path,
        amcheck=amcheck_result,
    )


def fingerprint_copy(ctx: RunContext, scratch: ScratchInstance, request: VerifyRequest) -> None:
    """Row counts and sha256 of every table, compared with the last passing verification
    of the same archive."""
    current = tables.fingerprint_all(scratch.connect)
    previous = previous_tables(request.reports_dir, request.location.archive)
    diff = tables.changes(previous[1] if previous else None, current)
    ctx.merge(
        "verification",
        tables=current,
        compared_with=previous[0] if previous else None,
        changes=diff,
    )
    say(f"fingerprinted {len(current)} tables; {tables.describe_changes(diff)}")


def previous_tables(reports_dir: Path, archive: str) -> tuple[str, dict] | None:
    """(run id, tables) of the newest passing verification of `archive` in the verified
    ledger, when its run folder is still there."""
    import json

    from pgdrill.evidence.ledger import verified_entries

    for entry in reversed(verified_entries(reports_dir)):
        if entry.get("experiment") != EXPERIMENT or entry.get("verdict") != "passed":
            continue
        try:
            evidence = json.loads((reports_dir / entry["run_id"] / "evidence.json").read_text())
        except (OSError, ValueError):
            continue
        verification = evidence.get("verification") or {}
        if verification.get("archive") == archive and verification.get("tables") is not None:
            return entry["run_id"], verification["tables"]
    return None
