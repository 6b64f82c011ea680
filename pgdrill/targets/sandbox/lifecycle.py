"""The sandbox's own lifecycle: create it, repair it in place, reset it, stop it, report its
status. Nothing here discards a sandbox except `reset` and `down`, which users ask for."""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import datetime

import psycopg
import psycopg.sql

from pgdrill.core.console import Stopwatch, say
from pgdrill.core.errors import BadInput, PgdrillError, PreflightRefused, TargetError
from pgdrill.core.model import Role
from pgdrill.core.procs import spawn_detached, terminate
from pgdrill.core.waiting import poll_until
from pgdrill.targets.sandbox import postgres, s3, supervisor
from pgdrill.targets.sandbox.cluster import (
    APP_DB,
    SandboxCluster,
    create_sandbox_credentials,
    replica_streaming,
    sandbox_credentials,
)
from pgdrill.targets.sandbox.osuser import ensure_can_run_python, resolve_run_as
from pgdrill.targets.sandbox.s3 import start_server, wait_and_create_bucket
from pgdrill.targets.sandbox.state import (
    DEFAULT_BUCKET,
    DEFAULT_CLUSTER,
    RESTORE_NAME,
    InstanceState,
    Layout,
    SandboxState,
    free_port,
    port_free,
    process_runs,
    sandbox_home,
)

INSTANCE_COUNT = 2
RESET_FIX = "`pgdrill sandbox reset --yes` discards this sandbox and builds a new one"


class SandboxLifecycle:
    """Create, repair in place, reset, stop and describe the sandbox under PGDRILL_HOME
    (default ./.pgdrill). SandboxTarget adds what drills do to it."""

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        cluster: str = DEFAULT_CLUSTER,
        bucket: str = DEFAULT_BUCKET,
    ) -> None:
        if not 3 <= len(bucket) <= 63:
            raise BadInput(f"bucket name {bucket!r} must be 3 to 63 characters long")
        self.layout = Layout(sandbox_home(home))
        self.cluster_name = cluster
        self.bucket = bucket

    # -- lifecycle ------------------------------------------------------------------
    def _cluster(self) -> SandboxCluster:
        state = self.layout.read()
        if state is None:
            raise TargetError(
                f"the sandbox in {self.layout.home} is not up", fix="run `pgdrill sandbox up`"
            )
        return SandboxCluster(self.layout, state, resolve_run_as(state.run_as or None))

    def _s3_running(self, state: SandboxState) -> bool:
        return s3.server_running(state.s3_pid, state.s3_port)

    def _supervisor_running(self, state: SandboxState) -> bool:
        return supervisor.running(state.supervisor_pid, str(self.layout.home))

    def is_up(self) -> bool:
        """The cheap check (no S3 round trip): the S3 server and the supervisor run (pids
        alive and still theirs) and the store was not found emptied. Instances are the
        supervisor's to heal while it runs: a drill's fault looks exactly like a crash."""
        state = self.layout.read()
        return bool(
            state
            and not state.store_lost
            and self._s3_running(state)
            and self._supervisor_running(state)
        )

    def up(self) -> SandboxState:
        """Create the sandbox when none exists; repair a stopped or broken one in place;
        do nothing when it runs. Never discards anything (`reset` does), refuses instead."""
        return self._up()[0]

    def _up(self) -> tuple[SandboxState, list[str]]:
        with self.layout.locked():
            state = self.layout.read()
            if state is None:
                try:
                    return self._create(), []
                except BaseException:
                    state = self.layout.read()
                    if state is not None:
                        self._stop_processes(state)
                    raise
            if self.is_up():
                say(f"sandbox {state.cluster!r} is already up in {self.layout.home}")
                return state, []
            repairs = self._repair(state)
        if repairs:
            # outside the lock: the supervisor takes it to record a re-clone or a failover
            t0 = time.monotonic()
            self.wait_ready(timeout=300)
            say(
                f"sandbox {state.cluster!r} is healthy again "
                f"({time.monotonic() - t0:.1f}s after the repairs)"
            )
        return self.layout.read(), repairs

    # -- repair in place --------------------------------------------------------------
    def _repair(self, state: SandboxState) -> list[str]:
        """Restart what is down, keeping data directories, backups and the archive; refuse
        (PreflightRefused, before touching PostgreSQL) when the object store was emptied.
        Called with the state lock held."""
        home = self.layout.home
        if state.supervisor_pid is None:
            raise PreflightRefused(
                f"the sandbox in {home} was never completely created (an earlier `pgdrill "
                f"sandbox up` stopped half-way)",
                fix=RESET_FIX,
            )
        if state.store_lost:
            raise self._store_lost_refusal(state, state.store_lost)
        if state.destroyed_at:
            raise PreflightRefused(
                f"the cluster of sandbox {state.cluster!r} was destroyed at {state.destroyed_at} "
                f"(a cluster-loss drill that never rebuilt it): nothing to start in place",
                fix="rebuild it from the bucket (SandboxTarget().rebuild_from_backup), or "
                + RESET_FIX,
            )
        watch = Stopwatch()
        say(
            f"sandbox {state.cluster!r} in {home} is not fully running: repairing it in place "
            f"(data directories, backups and archive are kept)"
        )
        repairs: list[str] = []
        if not self._s3_running(state):
            repairs.append(self._restart_s3(state))
        self._check_store(state)
        if not self._supervisor_running(state):
            cluster = SandboxCluster(self.layout, state, resolve_run_as(state.run_as or None))
            repairs += self._start_instances(cluster)
            t0 = time.monotonic()
            state.supervisor_pid = self._start_supervisor()
            self.layout.write(state)
            repairs.append(
                f"restarted the supervisor (pid {state.supervisor_pid}, "
                f"{time.monotonic() - t0:.1f}s)"
            )
        for line in repairs:
            say(f"repaired: {line}")
        say(f"sandbox {state.cluster!r} repaired in place in {watch.total:.1f}s")
        return repairs

    def _restart_s3(self, state: SandboxState) -> str:
        port, endpoint = state.s3_port, state.endpoint_url

        def port_taken() -> PreflightRefused:
            return PreflightRefused(
                f"the S3 server of sandbox {state.cluster!r} is down and port {port} is taken "
                f"by another process, so it cannot be restarted at {endpoint} (its in-memory "
                f"backups and WAL archive are gone with it)",
                fix=RESET_FIX,
            )

        if not port_free(port):
            raise port_taken()
        say(
            f"the S3 server of sandbox {state.cluster!r} is down: restarting moto on {endpoint} "
            f"(same port)"
        )
        t0 = time.monotonic()
        pid = s3.start_server(port, self.layout.s3_log)
        try:
            s3.wait_ready(endpoint, pid, sandbox_credentials(self.layout))
        except TargetError:
            terminate(pid)
            if not port_free(port):
                raise port_taken() from None
            raise
        state.s3_pid = pid
        self.layout.write(state)
        return (
            f"restarted the S3 server (moto) on {endpoint} (pid {pid}, "
            f"{time.monotonic() - t0:.1f}s)"
        )

    def _check_store(self, state: SandboxState) -> None:
        """After any repair: is the store still ours? moto keeps its objects in memory."""
        try:
            why = s3.emptied(
                state.endpoint_url,
                state.bucket,
                state.archive_server,
                sandbox_credentials(self.layout),
            )
        except TargetError as exc:
            raise PreflightRefused(
                f"cannot check the sandbox's object store: {exc.message}",
                fix=f"see {self.layout.s3_log}; {RESET_FIX}",
            ) from exc
        if why is None:
            return
        state.store_lost = why
        self.layout.write(state)
        self.layout.record_event("store_lost", message=why)
        raise self._store_lost_refusal(state, why)

    @staticmethod
    def _store_lost_refusal(state: SandboxState, why: str) -> PreflightRefused:
        return PreflightRefused(
            f"the object store of sandbox {state.cluster!r} was emptied ({why}): moto keeps "
            f"objects in memory, so every base backup and the WAL archive under "
            f"s3://{state.bucket}/{state.archive_server}/ since {state.created_at} are lost; "
            f"PostgreSQL's data directories and processes were left untouched",
            fix=RESET_FIX,
        )

    def _start_instances(self, cluster: SandboxCluster) -> list[str]:
        """With the supervisor down: start each stopped instance whose storage is intact,
        primary first, in place. Storage gone or a former primary: the restarted supervisor
        re-clones it (or fails over), as it does after a drill's fault."""
        state = cluster.state
        primary = state.primary_name
        repairs = []
        for name in sorted(state.instances, key=lambda n: n != primary):
            inst = state.instances[name]
            if cluster.is_running(name):
                continue
            if inst.needs_rebuild or not cluster.has_storage(name):
                repairs.append(
                    f"{name} ({inst.role}) has no usable storage: left to the supervisor to rebuild"
                )
                continue
            t0 = time.monotonic()
            say(f"starting {name} ({inst.role}) in place: its data directory is intact")
            last: list[TargetError] = []

            def started(n=name, last=last) -> bool:
                try:
                    cluster.start(n, timeout=60)
                    return True
                except TargetError as exc:  # a killed postmaster's children still exiting
                    last[:] = [exc]
                    return cluster.is_running(n)

            try:
                poll_until(started, timeout=30, interval=1.0, what=f"{name} to start")
            except TargetError as exc:
                raise TargetError(
                    f"could not start {name} in place: {(last[0] if last else exc).message}",
                    fix=f"read {self.layout.log_file(name)}",
                ) from exc
            repairs.append(
                f"started {name} ({inst.role}) in place on port {inst.port}, "
                f"data directory kept ({time.monotonic() - t0:.1f}s)"
            )
        if (
            primary
            and not cluster.has_storage(primary)
            and not any(cluster.is_running(n) for n in state.instances if n != primary)
        ):
            raise PreflightRefused(
                f"primary {primary} has lost its data directory and no replica runs to take over",
                fix=RESET_FIX,
            )
        return repairs

    def _create(self) -> SandboxState:
        watch = Stopwatch()
        run_as = resolve_run_as()
        self.layout.home.mkdir(parents=True, exist_ok=True)
        ensure_can_run_python(run_as, self.layout.home)
        state = SandboxState(
            cluster=self.cluster_name, bucket=self.bucket, s3_port=free_port(), run_as=run_as.name
        )
        names = [f"{self.cluster_name}-{i}" for i in range(1, INSTANCE_COUNT + 1)]
        for i, name in enumerate(names):
            state.instances[name] = InstanceState(
                port=free_port(), role="primary" if i == 0 else "replica"
            )
        credentials = create_sandbox_credentials(
            self.layout, s3.new_sandbox_credentials(state.endpoint_url, self.bucket)
        )
        say(
            f"S3 credentials: SOPS/age-encrypted in {self.layout.credentials_file} for the "
            f"sandbox's own identity ({self.layout.age_key_file})"
        )
        say(f"starting S3 endpoint on {state.endpoint_url} (bucket {self.bucket})")
        state.s3_pid = start_server(state.s3_port, self.layout.s3_log)
        self.layout.write(state)
        wait_and_create_bucket(state.endpoint_url, self.bucket, state.s3_pid, credentials)
        # tells this store from an emptied one after a restart (moto keeps it in memory)
        s3.write_marker(
            state.endpoint_url,
            self.bucket,
            self.cluster_name,
            {
                "cluster": self.cluster_name,
                "created_at": state.created_at,
                "home": str(self.layout.home),
            },
            credentials,
        )

        cluster = SandboxCluster(self.layout, state, run_as)
        primary = names[0]
        say(
            f"initialising primary {primary} on port {state.instances[primary].port} "
            f"(data checksums on, running as OS user {run_as.name!r})"
        )
        cluster.create_primary(primary)
        say(f"seeding database {APP_DB!r} (pgbench tables and a sentinel row)")
        cluster.seed(primary)
        say(f"checking WAL archiving to {cluster.store.destination_path}{self.cluster_name}/")
        cluster.wait_archiving(primary)
        for name in names[1:]:
            say(f"cloning streaming replica {name} on port {state.instances[name].port}")
            cluster.clone_replica(name, primary)
            poll_until(
                lambda n=name: replica_streaming(cluster, n),
                timeout=60,
                what=f"{name} to stream from {primary}",
            )
        say("taking the first base backup with barman-cloud-backup")
        cluster.take_backup(primary)
        state.supervisor_pid = self._start_supervisor()
        self.layout.write(state)
        say(f"sandbox {self.cluster_name!r} is up in {watch.total:.1f}s")
        return state

    def _start_supervisor(self) -> int:
        argv = [
            sys.executable,
            "-m",
            "pgdrill.targets.sandbox.supervisor",
            "--home",
            str(self.layout.home),
        ]
        return spawn_detached(argv, self.layout.supervisor_log)

    def _stop_processes(self, state: SandboxState) -> None:
        """Stop by pid, and only pids that still run what the sandbox started (a pid recorded
        before a reboot may belong to an unrelated process by now)."""
        if self._supervisor_running(state):
            terminate(state.supervisor_pid)
        run_as = resolve_run_as(state.run_as or None)
        for name in [RESTORE_NAME, *state.instances]:
            data = self.layout.data_dir(name)
            pid = postgres.postmaster_pid(data)
            if pid is None:
                continue
            try:
                postgres.stop(run_as, data, mode="immediate", timeout=20)
            except PgdrillError:
                pass
            if process_runs(pid, "postgres"):
                terminate(pid, timeout=5)
        if self._s3_running(state):
            terminate(state.s3_pid)

    def _remove_home(self) -> None:
        shutil.rmtree(self.layout.home, ignore_errors=True)

    def down(self) -> None:
        """Stop every process the sandbox started (by pid) and remove its state: the sandbox
        is discarded (data directories, backups, archive). An explicit user command only."""
        with self.layout.locked():
            state = self.layout.read()
            if state is not None:
                say(f"stopping sandbox {state.cluster!r}")
                self._stop_processes(state)
        self._remove_home()
        say(f"sandbox removed from {self.layout.home}")

    def reset(self) -> SandboxState:
        """Discard the sandbox (processes stopped by pid, its home removed: data directories,
        backups, WAL archive) and build a new one with the same cluster and bucket names.
        The only way out of a sandbox whose object store was emptied."""
        with self.layout.locked():
            state = self.layout.read()
            if state is not None:
                say(
                    f"discarding sandbox {state.cluster!r} in {self.layout.home}: its data "
                    f"directories, backups and WAL archive"
                )
                self.cluster_name, self.bucket = state.cluster, state.bucket
                self._stop_processes(state)
        self._remove_home()
        say(f"building a new sandbox {self.cluster_name!r} in {self.layout.home}")
        return self.up()

    # -- status -----------------------------------------------------------------------
    def status(self) -> dict:
        state = self.layout.read()
        if state is None:
            return {"up": False, "home": str(self.layout.home)}
        cluster = SandboxCluster(self.layout, state, resolve_run_as(state.run_as or None))
        instances = []
        for name in state.instances:
            inst = cluster.instance(name)
            info = {
                **inst.to_dict(),
                "running": cluster.is_running(name),
                "storage": cluster.has_storage(name),
                "lsn": None,
                "streaming": None,
            }
            if info["running"]:
                try:
                    with cluster.connect(name) as conn:
                        info["lsn"] = str(
                            conn.execute(
                                "SELECT CASE WHEN pg_is_in_recovery() "
                                "THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END"
                            ).fetchone()[0]
                        )
                        if inst.role == Role.REPLICA:
                            row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
                            info["streaming"] = bool(row and row[0] == "streaming")
                except psycopg.Error as exc:
                    info["error"] = str(exc).strip()
            instances.append(info)
        archiver = None
        primary = state.primary_name
        if primary and cluster.is_running(primary):
            try:
                with cluster.connect(primary) as conn:
                    row = conn.execute(
                        "SELECT archived_count, last_archived_wal, last_archived_time, "
                        "failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver"
                    ).fetchone()
                keys = [
                    "archived_count",
                    "last_archived_wal",
                    "last_archived_time",
                    "failed_count",
                    "last_failed_wal",
                    "last_failed_time",
                ]
                archiver = {
                    k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in zip(keys, row)
                }
            except psycopg.Error as exc:
                archiver = {"error": str(exc).strip()}
        try:
            backups = self.list_backups()
            latest = backups[-1].to_dict() if backups else None
            backup_count = len(backups)
        except PgdrillError as exc:
            latest, backup_count = {"error": exc.message}, None
        restore = self.restored_instance()
        s3_running = self._s3_running(state)
        store_lost = state.store_lost
        if store_lost is None and not s3_running:
            store_lost = (
                "the S3 server (moto) is not running and kept every object in "
                "memory: the backups and WAL archive are gone"
            )
        elif store_lost is None:
            try:
                store_lost = s3.emptied(
                    state.endpoint_url,
                    state.bucket,
                    state.archive_server,
                    sandbox_credentials(self.layout),
                )
            except PgdrillError:
                store_lost = None
        return {
            "up": self.is_up(),
            "home": str(self.layout.home),
            "cluster": state.cluster,
            "target": self.name,
            "s3": {
                "endpoint": state.endpoint_url,
                "bucket": state.bucket,
                "destination_path": cluster.store.destination_path,
                "server_name": state.archive_server,
                "running": s3_running,
                "pid": state.s3_pid,
                "store_lost": store_lost,
            },
            "supervisor": {"pid": state.supervisor_pid, "running": self._supervisor_running(state)},
            "instances": instances,
            "destroyed_at": state.destroyed_at,
            "archiver": archiver,
            "latest_backup": latest,
            "backup_count": backup_count,
            "restore_test": restore.to_dict() if restore else None,
            "recent_events": self.layout.events()[-10:],
        }
