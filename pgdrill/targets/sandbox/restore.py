"""The sandbox's isolated restore-test instance: barman-cloud-restore of a base backup,
WAL replay through barman-cloud-wal-restore up to a recovery target, promotion.
The copy runs with archive_mode off: it never writes into the source's backup path."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from pgdrill.core.console import Stopwatch, say
from pgdrill.core.errors import PgdrillError, TargetError
from pgdrill.core.model import (
    READY_PHASE,
    RESTORE_PHASE,
    Backup,
    Instance,
    RecoveryTarget,
    RestoreResult,
    Role,
)
from pgdrill.core.procs import terminate
from pgdrill.core.waiting import poll_until
from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.cluster import APP_DB, SandboxCluster
from pgdrill.targets.sandbox.osuser import resolve_run_as
from pgdrill.targets.sandbox.state import RESTORE_NAME, Layout, free_port

RESTORE_TOOL_PID = "restore-tool.pid"
# The sandbox cluster's `wal.maxParallel` (CNPG's name): restores fetch WAL 8 segments at a
# time into a spool (pgdrill.targets.sandbox.barman.ObjectStore.restore_command)
WAL_MAX_PARALLEL = 8


def restore_test_instance(layout: Layout) -> Instance | None:
    state = layout.read()
    if state is None or state.restore_port is None:
        return None
    return Instance(
        name=RESTORE_NAME,
        role=Role.RESTORE,
        host="127.0.0.1",
        port=state.restore_port,
        dbname=APP_DB,
        user=postgres.SUPERUSER,
    )


def restore_into_test(
    cluster: SandboxCluster,
    backup: Backup,
    target: RecoveryTarget,
    timeout: float,
    max_parallel: int = WAL_MAX_PARALLEL,
) -> RestoreResult:
    """Restore `backup` into restore-test, replay to `target`, wait until it accepts writes."""
    layout = cluster.layout
    remove_restore_test(layout)
    started_at = datetime.now(UTC)
    watch = Stopwatch()
    idir = layout.instance_dir(RESTORE_NAME)
    idir.mkdir(parents=True, exist_ok=True)
    cluster.run_as.chown(idir)
    data = layout.data_dir(RESTORE_NAME)
    port = free_port()
    with layout.locked():
        state = layout.read()
        state.restore_port, state.restore_backup_id = port, backup.id
        layout.write(state)

    with watch.phase("download_base_backup"):
        say(f"restoring base backup {backup.id} into {RESTORE_NAME} (port {port})")
        postgres.run(
            cluster.run_as,
            cluster.store.restore_argv(backup.id, data),
            env=cluster.process_env(idir),
            timeout=timeout,
            what=f"barman-cloud-restore of {backup.id}",
            pid_file=layout.home / RESTORE_TOOL_PID,
        )
    with watch.phase("configure_recovery"):
        configure_recovery(cluster, data, target, max_parallel)
    with watch.phase("replay_wal_and_promote"):
        say(f"replaying WAL from the archive up to {target.describe()} and promoting")
        postgres.start(
            cluster.run_as,
            data,
            port,
            layout.sockets,
            layout.log_file(RESTORE_NAME),
            cluster.process_env(idir),
            wait=False,
        )
        wait_promoted(data, port, layout.log_file(RESTORE_NAME), timeout)
    with watch.phase("check_isolated"):
        instance = restore_test_instance(layout)
        with psycopg.connect(instance.conninfo("postgres")) as conn:
            if conn.execute("SHOW archive_mode").fetchone()[0] != "off":
                raise TargetError(
                    "the restored copy has archiving on; refusing to keep it, "
                    "it could write into the source's backup path"
                )
    details = dict(watch.phases)
    phases = {
        RESTORE_PHASE: round(sum(v for k, v in details.items() if k != "check_isolated"), 3),
        READY_PHASE: details["check_isolated"],
    }
    return RestoreResult(
        instance=instance,
        backup=backup,
        target=target,
        started_at=started_at,
        phases=phases,
        phase_details=details,
    )


def recovery_settings(restore_command: str, target: RecoveryTarget) -> dict[str, object]:
    """postgresql.conf settings of a restored copy replaying the archive up to `target`:
    it never archives (its WAL must not reach the source's backup path)."""
    settings: dict[str, object] = {
        "archive_mode": "off",
        "archive_command": "",
        "restore_command": restore_command,
        "recovery_target_timeline": "latest",
    }
    if target.kind == "time":
        settings["recovery_target_time"] = target.time.isoformat()
    elif target.kind == "lsn":
        settings["recovery_target_lsn"] = target.lsn
    elif target.kind == "restore_point":
        settings["recovery_target_name"] = target.name
    if target.kind != "latest":
        settings["recovery_target_action"] = "promote"
        settings["recovery_target_inclusive"] = "on"
    return settings


def signal_recovery(data: Path) -> None:
    """Make `data` start in targeted recovery (recovery.signal), not as a standby or a
    crashed primary, with the permissions PostgreSQL demands."""
    for stale in ("standby.signal", "postmaster.pid"):
        (data / stale).unlink(missing_ok=True)
    (data / "recovery.signal").touch()
    os.chmod(data, 0o700)


def configure_recovery(
    cluster: SandboxCluster,
    data: Path,
    target: RecoveryTarget,
    max_parallel: int = WAL_MAX_PARALLEL,
) -> None:
    """Recovery settings of restore-test: WAL fetched `max_parallel` segments at a time
    into a spool beside its data folder."""
    spool = data.parent / "wal-spool"
    spool.mkdir(exist_ok=True)
    cluster.run_as.chown(spool)
    command = cluster.store.restore_command(max_parallel, spool)
    cluster.append_conf(data, recovery_settings(command, target))
    signal_recovery(data)
    cluster.run_as.chown_tree(data)


def wait_promoted(data: Path, port: int, log: Path, timeout: float) -> None:
    """Poll until recovery ended and the copy accepts writes; fail fast with PostgreSQL's
    own FATAL lines if the instance stopped (e.g. a recovery target never reached)."""
    started = time.monotonic()

    def promoted() -> bool:
        try:
            with psycopg.connect(
                host="127.0.0.1",
                port=port,
                user=postgres.SUPERUSER,
                dbname="postgres",
                connect_timeout=2,
            ) as conn:
                return conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]
        except psycopg.OperationalError:
            # give pg_ctl a moment to write postmaster.pid before judging it dead
            if time.monotonic() - started > 3 and postgres.postmaster_pid(data) is None:
                raise TargetError(
                    "the restored instance stopped during recovery: "
                    + " | ".join(fatal_lines(log)),
                    fix=f"read {log}; for a recovery target, check that it lies after the "
                    "backup's end and before the end of the archived WAL",
                ) from None
            return False

    poll_until(
        promoted,
        timeout=timeout,
        interval=0.25,
        what="the restored copy to finish recovery and accept writes",
        fix=f"read {log}",
    )


def remove_restore_test(layout: Layout) -> None:
    """Stop the restore-test instance (and a barman-cloud-restore a killed drill left
    running) and delete its storage (idempotent)."""
    state = layout.read()
    if state is None:
        return
    stop_orphaned_restore_tool(layout)
    data = layout.data_dir(RESTORE_NAME)
    pid = postgres.postmaster_pid(data)
    if pid is not None:
        try:
            postgres.stop(resolve_run_as(state.run_as or None), data, mode="immediate", timeout=20)
        except PgdrillError:
            terminate(pid, timeout=5)
    shutil.rmtree(layout.instance_dir(RESTORE_NAME), ignore_errors=True)
    with layout.locked():
        state = layout.read()
        if state is not None and state.restore_port is not None:
            state.restore_port = state.restore_backup_id = None
            layout.write(state)


def stop_orphaned_restore_tool(layout: Layout) -> None:
    """A drill killed with SIGKILL mid-download leaves barman-cloud-restore writing into
    restore-test: stop it (by the pid noted when it started, if that is still it)."""
    pid_file = layout.home / RESTORE_TOOL_PID
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmdline = ""
    if "barman-cloud-restore" in cmdline and str(layout.data_dir(RESTORE_NAME)) in cmdline:
        terminate(pid, timeout=10)
    pid_file.unlink(missing_ok=True)


def fatal_lines(log: Path, limit: int = 3) -> list[str]:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ["(no log)"]
    picked = [line for line in lines if "FATAL" in line or "PANIC" in line]
    return (picked or lines)[-limit:]
