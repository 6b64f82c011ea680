"""The default target: a real PostgreSQL primary + streaming replica, a real S3 endpoint and
barman-cloud, on this machine, supervised by a small stand-in for the CNPG operator."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from datetime import datetime

import psycopg
import psycopg.sql
from botocore.exceptions import BotoCoreError, ClientError

from pgdrill.console import Stopwatch, say
from pgdrill.errors import BadInput, PgdrillError, PreflightRefused, TargetError
from pgdrill.model import Backup, HealReport, Instance, RecoveryTarget, RestoreResult, Role
from pgdrill.procs import pid_alive, spawn_detached, terminate
from pgdrill.targets.sandbox import barman, postgres, s3, supervisor
from pgdrill.targets.sandbox.cluster import APP_DB, SandboxCluster, replica_streaming
from pgdrill.targets.sandbox.osuser import ensure_can_run_python, resolve_run_as
from pgdrill.targets.sandbox.restore import (
    remove_restore_test, restore_into_test, restore_test_instance,
)
from pgdrill.targets.sandbox.s3 import client as s3_client
from pgdrill.targets.sandbox.s3 import start_server, wait_and_create_bucket
from pgdrill.targets.sandbox.state import (
    DEFAULT_BUCKET, DEFAULT_CLUSTER, RESTORE_NAME, InstanceState, Layout, SandboxState,
    free_port, port_free, process_runs, sandbox_home,
)
from pgdrill.waiting import poll_until

INSTANCE_COUNT = 2
BLOCK_SIZE = 8192
BLOCKS_PER_SEGMENT = 131072  # 1 GiB segment files
RESET_FIX = "`pgdrill sandbox reset --yes` discards this sandbox and builds a new one"


class SandboxTarget:
    """Everything on one machine; state under PGDRILL_HOME (default ./.pgdrill)."""

    name = "sandbox"

    def __init__(self, home: str | os.PathLike | None = None, cluster: str = DEFAULT_CLUSTER,
                 bucket: str = DEFAULT_BUCKET) -> None:
        if not 3 <= len(bucket) <= 63:
            raise BadInput(f"bucket name {bucket!r} must be 3 to 63 characters long")
        self.layout = Layout(sandbox_home(home))
        self.cluster_name = cluster
        self.bucket = bucket

    # -- lifecycle ------------------------------------------------------------------
    def _cluster(self) -> SandboxCluster:
        state = self.layout.read()
        if state is None:
            raise TargetError(f"the sandbox in {self.layout.home} is not up",
                              fix="run `pgdrill sandbox up`")
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
        return bool(state and not state.store_lost and self._s3_running(state)
                    and self._supervisor_running(state))

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
            say(f"sandbox {state.cluster!r} is healthy again "
                f"({time.monotonic() - t0:.1f}s after the repairs)")
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
                f"sandbox up` stopped half-way)", fix=RESET_FIX)
        if state.store_lost:
            raise self._store_lost_refusal(state, state.store_lost)
        watch = Stopwatch()
        say(f"sandbox {state.cluster!r} in {home} is not fully running: repairing it in place "
            f"(data directories, backups and archive are kept)")
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
            repairs.append(f"restarted the supervisor (pid {state.supervisor_pid}, "
                           f"{time.monotonic() - t0:.1f}s)")
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
                f"backups and WAL archive are gone with it)", fix=RESET_FIX)

        if not port_free(port):
            raise port_taken()
        say(f"the S3 server of sandbox {state.cluster!r} is down: restarting moto on {endpoint} "
            f"(same port)")
        t0 = time.monotonic()
        pid = s3.start_server(port, self.layout.s3_log)
        try:
            s3.wait_ready(endpoint, pid)
        except TargetError:
            terminate(pid)
            if not port_free(port):
                raise port_taken() from None
            raise
        state.s3_pid = pid
        self.layout.write(state)
        return f"restarted the S3 server (moto) on {endpoint} (pid {pid}, " \
               f"{time.monotonic() - t0:.1f}s)"

    def _check_store(self, state: SandboxState) -> None:
        """After any repair: is the store still ours? moto keeps its objects in memory."""
        try:
            why = s3.emptied(state.endpoint_url, state.bucket, state.cluster)
        except TargetError as exc:
            raise PreflightRefused(f"cannot check the sandbox's object store: {exc.message}",
                                   fix=f"see {self.layout.s3_log}; {RESET_FIX}") from exc
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
            f"s3://{state.bucket}/{state.cluster}/ since {state.created_at} are lost; "
            f"PostgreSQL's data directories and processes were left untouched", fix=RESET_FIX)

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
                repairs.append(f"{name} ({inst.role}) has no usable storage: left to the "
                               f"supervisor to rebuild")
                continue
            t0 = time.monotonic()
            say(f"starting {name} ({inst.role}) in place: its data directory is intact")
            last: list[TargetError] = []

            def started(n=name) -> bool:
                try:
                    cluster.start(n, timeout=60)
                    return True
                except TargetError as exc:  # a killed postmaster's children still exiting
                    last[:] = [exc]
                    return cluster.is_running(n)

            try:
                poll_until(started, timeout=30, interval=1.0, what=f"{name} to start")
            except TargetError as exc:
                raise TargetError(f"could not start {name} in place: "
                                  f"{(last[0] if last else exc).message}",
                                  fix=f"read {self.layout.log_file(name)}") from exc
            repairs.append(f"started {name} ({inst.role}) in place on port {inst.port}, "
                           f"data directory kept ({time.monotonic() - t0:.1f}s)")
        if primary and not cluster.has_storage(primary) and not any(
                cluster.is_running(n) for n in state.instances if n != primary):
            raise PreflightRefused(f"primary {primary} has lost its data directory and no "
                                   f"replica runs to take over", fix=RESET_FIX)
        return repairs

    def _create(self) -> SandboxState:
        watch = Stopwatch()
        run_as = resolve_run_as()
        self.layout.home.mkdir(parents=True, exist_ok=True)
        ensure_can_run_python(run_as, self.layout.home)
        state = SandboxState(cluster=self.cluster_name, bucket=self.bucket, s3_port=free_port(),
                             run_as=run_as.name)
        names = [f"{self.cluster_name}-{i}" for i in range(1, INSTANCE_COUNT + 1)]
        for i, name in enumerate(names):
            state.instances[name] = InstanceState(port=free_port(),
                                                  role="primary" if i == 0 else "replica")
        say(f"starting S3 endpoint on {state.endpoint_url} (bucket {self.bucket})")
        state.s3_pid = start_server(state.s3_port, self.layout.s3_log)
        self.layout.write(state)
        wait_and_create_bucket(state.endpoint_url, self.bucket, state.s3_pid)
        # tells this store from an emptied one after a restart (moto keeps it in memory)
        s3.write_marker(state.endpoint_url, self.bucket, self.cluster_name,
                        {"cluster": self.cluster_name, "created_at": state.created_at,
                         "home": str(self.layout.home)})

        cluster = SandboxCluster(self.layout, state, run_as)
        primary = names[0]
        say(f"initialising primary {primary} on port {state.instances[primary].port} "
            f"(data checksums on, running as OS user {run_as.name!r})")
        cluster.create_primary(primary)
        say(f"seeding database {APP_DB!r} (pgbench tables and a sentinel row)")
        cluster.seed(primary)
        say(f"checking WAL archiving to {cluster.store.destination_path}{self.cluster_name}/")
        cluster.wait_archiving(primary)
        for name in names[1:]:
            say(f"cloning streaming replica {name} on port {state.instances[name].port}")
            cluster.clone_replica(name, primary)
            poll_until(lambda n=name: replica_streaming(cluster, n), timeout=60,
                       what=f"{name} to stream from {primary}")
        say("taking the first base backup with barman-cloud-backup")
        cluster.take_backup(primary)
        state.supervisor_pid = self._start_supervisor()
        self.layout.write(state)
        say(f"sandbox {self.cluster_name!r} is up in {watch.total:.1f}s")
        return state

    def _start_supervisor(self) -> int:
        argv = [sys.executable, "-m", "pgdrill.targets.sandbox.supervisor",
                "--home", str(self.layout.home)]
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
                say(f"discarding sandbox {state.cluster!r} in {self.layout.home}: its data "
                    f"directories, backups and WAL archive")
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
            info = {**inst.to_dict(), "running": cluster.is_running(name),
                    "storage": cluster.has_storage(name), "lsn": None, "streaming": None}
            if info["running"]:
                try:
                    with cluster.connect(name) as conn:
                        info["lsn"] = str(conn.execute(
                            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                            "ELSE pg_current_wal_lsn() END").fetchone()[0])
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
                keys = ["archived_count", "last_archived_wal", "last_archived_time",
                        "failed_count", "last_failed_wal", "last_failed_time"]
                archiver = {k: (v.isoformat() if isinstance(v, datetime) else v)
                            for k, v in zip(keys, row)}
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
            store_lost = ("the S3 server (moto) is not running and kept every object in "
                          "memory: the backups and WAL archive are gone")
        elif store_lost is None:
            try:
                store_lost = s3.emptied(state.endpoint_url, state.bucket, state.cluster)
            except TargetError:
                store_lost = None
        return {
            "up": self.is_up(),
            "home": str(self.layout.home),
            "cluster": state.cluster,
            "target": self.name,
            "s3": {"endpoint": state.endpoint_url, "bucket": state.bucket,
                   "destination_path": cluster.store.destination_path,
                   "server_name": state.cluster, "running": s3_running,
                   "pid": state.s3_pid, "store_lost": store_lost},
            "supervisor": {"pid": state.supervisor_pid,
                           "running": self._supervisor_running(state)},
            "instances": instances,
            "archiver": archiver,
            "latest_backup": latest,
            "backup_count": backup_count,
            "restore_test": restore.to_dict() if restore else None,
            "recent_events": self.layout.events()[-10:],
        }

    # -- Target protocol -----------------------------------------------------------------
    def ensure_ready(self) -> list[str]:
        """Cheap when everything runs (pids only). No sandbox: create one. A broken one:
        repair it in place and return one line per repair, or refuse with the fix
        (PreflightRefused) — never discard anything to make a drill run."""
        if self.is_up():
            return []
        if self.layout.read() is None:
            say("no sandbox yet: creating one (first run takes a minute)")
        return self._up()[1]

    def cluster_identity(self) -> str:
        with self.connect(self.primary(), "postgres") as conn:
            return str(conn.execute(
                "SELECT system_identifier FROM pg_control_system()").fetchone()[0])

    def instances(self) -> list[Instance]:
        cluster = self._cluster()
        return [cluster.instance(name) for name in cluster.state.instances]

    def primary(self) -> Instance:
        cluster = self._cluster()
        name = cluster.state.primary_name
        if name is None:
            raise TargetError("the sandbox has no primary")
        return cluster.instance(name)

    def connect(self, instance: Instance, dbname: str | None = None) -> psycopg.Connection:
        try:
            return psycopg.connect(instance.conninfo(dbname), autocommit=True)
        except psycopg.OperationalError as exc:
            raise TargetError(f"cannot connect to {instance.name} "
                              f"({instance.host}:{instance.port}): {str(exc).strip()}",
                              fix="check `pgdrill sandbox status`") from exc

    def kill_primary(self) -> Instance:
        primary = self.primary()
        pid = postgres.kill_postmaster(self.layout.data_dir(primary.name))
        if pid is None:
            raise TargetError(f"primary {primary.name} has no running postmaster to kill")
        say(f"killed the postmaster of primary {primary.name} (pid {pid}) with SIGKILL")
        return primary

    def drop_storage(self, instance: Instance) -> Instance:
        data = self.layout.data_dir(instance.name)
        pid = postgres.kill_postmaster(data)
        if pid is not None:
            poll_until(lambda: not pid_alive(pid), timeout=30,
                       what=f"the postmaster of {instance.name} to die")
        shutil.rmtree(data, ignore_errors=True)
        say(f"dropped the storage of {instance.name} ({instance.role}): postmaster killed, "
            f"data directory removed")
        return instance

    def corrupt_page(self, table: str, database: str = APP_DB) -> dict:
        """Physical corruption: overwrite 64 bytes in the middle of one heap page of `table` in
        the primary's data files, with the page evicted from shared buffers before and after
        so the next read comes from disk. Physical damage does not replicate."""
        primary = self.primary()
        data = self.layout.data_dir(primary.name)
        with self.connect(primary, database) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_buffercache")
            try:
                relpath, blocks = conn.execute(
                    "SELECT pg_relation_filepath(%s::regclass), pg_relation_size(%s::regclass) "
                    "/ current_setting('block_size')::int", (table, table)).fetchone()
            except psycopg.errors.UndefinedTable as exc:
                raise BadInput(f"table {table!r} does not exist in database {database!r}") from exc
            if not blocks:
                raise BadInput(f"table {table!r} is empty: there is no page to corrupt")
            block = min(blocks // 2, BLOCKS_PER_SEGMENT - 1)
            conn.execute("CHECKPOINT")
            conn.execute("SELECT pg_buffercache_evict_relation(%s::regclass)", (table,))
            with open(data / relpath, "r+b") as fh:
                fh.seek(block * BLOCK_SIZE + BLOCK_SIZE // 2)
                original = fh.read(64)
                fh.seek(block * BLOCK_SIZE + BLOCK_SIZE // 2)
                # random bytes, each different from the original (a second run still damages)
                noise = os.urandom(len(original))
                fh.write(bytes(b ^ (n | 1) for b, n in zip(original, noise)))
                fh.flush()
                os.fsync(fh.fileno())
            conn.execute("SELECT pg_buffercache_evict_relation(%s::regclass)", (table,))
            record = {"table": table, "instance": primary.name, "file": relpath, "block": block,
                      "bytes": len(original), "detected": False, "detected_by": None,
                      "error": None}
            # read every heap page: an index-only scan would never touch the damaged one
            for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
                conn.execute(f"SET {setting} = off")
            try:
                conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(
                    psycopg.sql.Identifier(*table.split("."))))
            except psycopg.errors.DataCorrupted as exc:
                record.update(detected=True, detected_by="data checksums",
                              error=str(exc).strip().splitlines()[0])
        say(f"corrupted block {block} of {table} on {primary.name}: "
            + (f"detected ({record['error']})" if record["detected"] else "NOT detected"))
        return record

    def backup(self, *, timeout: float = 600) -> Backup:
        cluster = self._cluster()
        before = {b.id for b in self.list_backups()}
        primary = cluster.state.primary_name
        say(f"taking a base backup of {primary} with barman-cloud-backup")
        cluster.take_backup(primary, timeout=timeout)
        new = [b for b in self.list_backups() if b.id not in before and b.completed]
        if not new:
            raise TargetError("barman-cloud-backup returned but no new completed backup is listed")
        return new[-1]

    def list_backups(self) -> list[Backup]:
        """The object store's backups, oldest first, with LSNs (from barman-cloud-backup-list)
        and stored sizes (one bucket listing; None when the listing fails)."""
        cluster = self._cluster()
        try:
            out = postgres.run(cluster.run_as, cluster.store.list_argv(), env=cluster.process_env(),
                               timeout=60, what="barman-cloud-backup-list")
        except TargetError as exc:
            raise TargetError(f"cannot list backups at {cluster.store.endpoint_url}: {exc.message}",
                              fix="is the sandbox up? `pgdrill sandbox status`") from exc
        backups = barman.parse_backup_list(out)
        store = cluster.store
        try:
            sizes = barman.backup_sizes(s3_client(store.endpoint_url), store.bucket,
                                        store.server_name)
        except (BotoCoreError, ClientError) as exc:
            say(f"cannot measure backup sizes at {store.endpoint_url}: {exc}")
            return backups
        return [b if b.size is not None else dataclasses.replace(b, size=sizes.get(b.id))
                for b in backups]

    # -- restore ------------------------------------------------------------------------
    def restored_instance(self) -> Instance | None:
        return restore_test_instance(self.layout)

    def restore(self, backup: Backup, target: RecoveryTarget, *,
                timeout: float = 600) -> RestoreResult:
        """Restore into restore-test (see pgdrill.targets.sandbox.restore)."""
        return restore_into_test(self._cluster(), backup, target, timeout)

    def wait_ready(self, *, timeout: float = 300, since: float | None = None) -> HealReport:
        """Poll until there is a writable primary and every instance runs and streams."""
        t0 = since if since is not None else time.monotonic()
        writable_at: list[float] = []

        def healthy() -> HealReport | None:
            cluster = self._cluster()
            primary = cluster.state.primary_name
            try:
                writable = cluster.query_one(primary, "SELECT NOT pg_is_in_recovery()") is True
            except psycopg.Error:
                return None
            if not writable:
                return None
            if not writable_at:
                writable_at.append(time.monotonic())
            for name, inst in cluster.state.instances.items():
                if name == primary:
                    continue
                if inst.needs_rebuild or not replica_streaming(cluster, name):
                    return None
            now = time.monotonic()
            return HealReport(writable_primary_seconds=round(writable_at[0] - t0, 3),
                              healthy_seconds=round(now - t0, 3), primary=primary,
                              instances=[cluster.instance(n) for n in cluster.state.instances])

        return poll_until(healthy, timeout=timeout, interval=0.2,
                          what="the cluster to have a writable primary and all instances "
                          "healthy", fix=f"read {self.layout.supervisor_log}")

    def cleanup_restore(self) -> None:
        remove_restore_test(self.layout)
