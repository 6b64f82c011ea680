"""The default target: a real PostgreSQL primary + streaming replica, a real S3 endpoint and
barman-cloud, on this machine, supervised by a small stand-in for the CNPG operator."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from pgdrill.core.console import say
from pgdrill.core.errors import DeadlineExceeded, PreflightRefused, TargetError
from pgdrill.core.files import shown_path
from pgdrill.core.model import (
    Backup,
    HealReport,
    Instance,
    LoadConnection,
    RecoveryTarget,
    RestoreResult,
    Role,
)
from pgdrill.core.procs import pid_alive
from pgdrill.core.waiting import poll_until
from pgdrill.credentials.secret import redact
from pgdrill.pg import corruption
from pgdrill.targets.sandbox import barman, postgres
from pgdrill.targets.sandbox.cluster import (
    APP_DB,
    all_synchronous,
    replica_streaming,
    sandbox_credentials,
)
from pgdrill.targets.sandbox.lifecycle import SandboxLifecycle
from pgdrill.targets.sandbox.restore import (
    remove_restore_test,
    restore_into_test,
    restore_test_instance,
)
from pgdrill.targets.sandbox.s3 import client as s3_client


class SandboxTarget(SandboxLifecycle):
    """Everything on one machine; state under PGDRILL_HOME (default ./.pgdrill)."""

    name = "sandbox"

    # -- the sandbox-only step before a drill --------------------------------------------
    def prepare(self) -> list[str]:
        """Bring the sandbox up for a drill (the drill control calls this on the sandbox
        only, before check_ready): create one when none exists, repair a stopped or broken
        one in place and return one line per repair, or refuse with the fix
        (PreflightRefused) — never discard anything to make a drill run."""
        state = self.layout.read()
        if state is not None and state.destroyed_at:
            raise PreflightRefused(
                f"the cluster of the sandbox in {self.layout.home} was destroyed at "
                f"{state.destroyed_at} (a cluster-loss drill that never rebuilt it) and the "
                f"supervisor heals nothing until it is rebuilt from the bucket",
                fix="rebuild it (SandboxTarget().rebuild_from_backup(backup), as the "
                "cluster-loss drill's rollback does), or `pgdrill sandbox reset --yes`",
            )
        if self.is_up():
            return []
        if state is None:
            say("no sandbox yet: creating one (first run takes a minute)")
        return self._up()[1]

    # -- Target protocol -----------------------------------------------------------------
    def check_ready(self) -> None:
        """Cheap (pids only): the S3 server and the supervisor run and the store was not
        emptied. Changes nothing; instances are the supervisor's to heal. A process started
        a moment ago gets a few seconds to show up in /proc before this refuses."""
        try:
            poll_until(self.is_up, timeout=5, interval=0.2, what="the sandbox's processes")
            return
        except DeadlineExceeded:
            pass
        state = self.layout.read()
        if state is None:
            raise PreflightRefused(
                f"there is no sandbox in {self.layout.home}",
                fix="run `pgdrill sandbox up` (or `make drill`, which starts it)",
            )
        if state.store_lost:
            raise self._store_lost_refusal(state, state.store_lost)
        raise PreflightRefused(
            f"the sandbox in {self.layout.home} is not fully running (its "
            f"S3 server or supervisor stopped)",
            fix="run `pgdrill sandbox up` to repair it in place",
        )

    def facts(self) -> dict:
        state = self.layout.read()
        return {
            "kind": "sandbox",
            "home": shown_path(self.layout.home),
            "instances": len(state.instances) if state else 0,
            "server_name": state.archive_server if state else None,
            "supervisor": "pgdrill.targets.sandbox.supervisor (promotes the most advanced "
            "replica, no failover delay)",
        }

    def load_connection(self, dbname: str) -> LoadConnection:
        """All instances in one multi-host string with target_session_attrs=read-write: after
        a failover libpq lands on the new primary. The sandbox trusts local TCP: no env."""
        from pgdrill.pg.conninfo import conninfo_for

        instances = [i for i in self.instances() if i.role != Role.RESTORE]
        return LoadConnection(
            conninfo_for(
                [(i.host, i.port) for i in instances], dbname=dbname, user=self.primary().user
            )
        )

    def save_logs(self, folder, since) -> list[str]:
        """The supervisor's decisions and every instance's PostgreSQL log (restore-test too)."""
        from pgdrill.evidence.logs import save_log

        state = self.layout.read()
        secrets = sandbox_credentials(self.layout).secret_values() if state else ()
        sources = {"supervisor.log": self.layout.supervisor_log}
        names = list(state.instances) if state else []
        if self.restored_instance() is not None:
            names.append(self.restored_instance().name)
        for name in names:
            sources[f"{name}.postgresql.log"] = self.layout.log_file(name)
        written = []
        for label, path in sources.items():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if save_log(folder, label, text, since, secrets):
                written.append(label)
        return written

    def client_env(self, instance: Instance) -> dict[str, str]:
        """The sandbox trusts local TCP connections: nothing to add."""
        return {}

    def close(self) -> None:
        """Nothing to release: the sandbox's processes outlive a drill."""

    def credentials_source(self) -> dict:
        return sandbox_credentials(self.layout).describe()

    def cluster_identity(self) -> str:
        with self.connect(self.primary(), "postgres") as conn:
            return str(
                conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
            )

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
            raise TargetError(
                f"cannot connect to {instance.name} "
                f"({instance.host}:{instance.port}): {str(exc).strip()}",
                fix="check `pgdrill sandbox status`",
            ) from exc

    def kill_primary(self) -> Instance:
        primary = self.primary()
        pid = postgres.kill_postmaster(self.layout.data_dir(primary.name))
        if pid is None:
            raise TargetError(f"primary {primary.name} has no running postmaster to kill")
        say(f"killed the postmaster of primary {primary.name} (pid {pid}) with SIGKILL")
        return primary

    def drop_storage(self, instance: Instance) -> Instance:
        data = self.layout.data_dir(instance.name)
        pid = postgres.postmaster_pid(data)
        # the storage goes at once, as a lost PVC does: renamed away before the postmaster
        # is killed, so the supervisor never sees "crashed with its storage intact" and
        # restarts a data directory that is being deleted under it
        gone = data.with_name(f"{data.name}.dropped-{time.monotonic_ns()}")
        if data.exists():
            os.rename(data, gone)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            poll_until(
                lambda: not pid_alive(pid),
                timeout=30,
                what=f"the postmaster of {instance.name} to die",
            )
        shutil.rmtree(gone, ignore_errors=True)
        say(
            f"dropped the storage of {instance.name} ({instance.role}): postmaster killed, "
            f"data directory removed"
        )
        return instance

    def destroy_cluster(self) -> dict:
        """Every instance SIGKILLed and every data directory deleted, after the supervisor
        acknowledged that it must not heal the cluster (pgdrill.targets.sandbox.rebuild)."""
        from pgdrill.targets.sandbox.rebuild import destroy

        return destroy(self.layout, lambda: self._supervisor_running(self.layout.read()))

    def rebuild_from_backup(
        self,
        backup: Backup,
        destroyed: dict | None = None,
        *,
        timeout: float = 900,
        server_name: str | None = None,
    ) -> RestoreResult:
        """Rebuild the destroyed cluster from `backup` of its old archive, archiving into a
        new serverName (`server_name`, default the next free `<cluster>-r<N>`), replicas
        re-cloned (pgdrill.targets.sandbox.rebuild). `destroyed` is not needed here: the
        sandbox's state remembers the cluster."""
        from pgdrill.targets.sandbox.rebuild import rebuild

        return rebuild(self.layout, backup, timeout=timeout, server_name=server_name)

    def corrupt_page(self, table: str, database: str = APP_DB) -> dict:
        """Physical corruption (pgdrill.pg.corruption): the bytes are overwritten in the
        primary's data files on this machine, each one changed."""
        primary = self.primary()
        data = self.layout.data_dir(primary.name)

        def overwrite(relpath: str, offset: int, length: int) -> None:
            with open(data / relpath, "r+b") as fh:
                fh.seek(offset)
                original = fh.read(length)
                fh.seek(offset)
                # random bytes, each different from the original (a second run still damages)
                noise = os.urandom(len(original))
                fh.write(bytes(b ^ (n | 1) for b, n in zip(original, noise)))
                fh.flush()
                os.fsync(fh.fileno())

        with self.connect(primary, database) as conn:
            record = {"instance": primary.name, **corruption.corrupt_page(conn, table, overwrite)}
        say(
            f"corrupted block {record['block']} of {table} on {primary.name}: "
            + (f"detected ({record['error']})" if record["detected"] else "NOT detected")
        )
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

    def requeue_wal(self, segments: list[str]) -> tuple[str, dict[str, str]]:
        """The same script as in a CNPG pod (pgdrill.pg.archive_status), run as PostgreSQL's
        OS user with the primary's data directory as PGDATA."""
        import subprocess

        from pgdrill.pg import archive_status

        cluster = self._cluster()
        primary = cluster.state.primary_name
        env = {
            "PGDATA": str(self.layout.data_dir(primary)),
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
        }
        proc = subprocess.run(
            archive_status.requeue_command(segments),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            **cluster.run_as.popen_kwargs(),
        )
        if proc.returncode != 0:
            raise TargetError(
                f"re-queueing WAL for archiving on {primary} failed (exit "
                f"{proc.returncode}): {(proc.stderr or proc.stdout).strip()[:300]}"
            )
        return primary, archive_status.parse_requeue(proc.stdout, segments)

    def list_backups(self) -> list[Backup]:
        """The object store's backups, oldest first, with LSNs (from barman-cloud-backup-list)
        and stored sizes (one bucket listing; None when the listing fails). The cluster's
        backups are its CURRENT serverName's: after a rebuild from the bucket, the old
        folder's backups belong to the cluster that was destroyed and are not listed."""
        cluster = self._cluster()
        try:
            out = postgres.run(
                cluster.run_as,
                cluster.store.list_argv(),
                env=cluster.process_env(),
                timeout=60,
                what="barman-cloud-backup-list",
            )
        except TargetError as exc:
            raise TargetError(
                f"cannot list backups at {cluster.store.endpoint_url}: {exc.message}",
                fix="is the sandbox up? `pgdrill sandbox status`",
            ) from exc
        backups = barman.parse_backup_list(out)
        store = cluster.store
        try:
            sizes = barman.backup_sizes(
                s3_client(store.endpoint_url, cluster.credentials), store.bucket, store.server_name
            )
        except (BotoCoreError, ClientError) as exc:
            say(
                f"cannot measure backup sizes at {store.endpoint_url}: "
                f"{redact(str(exc), cluster.credentials.secret_values())}"
            )
            return backups
        return [
            b if b.size is not None else dataclasses.replace(b, size=sizes.get(b.id))
            for b in backups
        ]

    # -- restore ------------------------------------------------------------------------
    def restored_instance(self) -> Instance | None:
        return restore_test_instance(self.layout)

    def restore_isolation(self) -> tuple[str, str, str, bool]:
        """The sandbox's copy runs with archive_mode off (pgdrill.targets.sandbox.restore)."""
        restored = self.restored_instance()
        if restored is None:
            return ("SHOW archive_mode on restore-test", "off", "no restore-test", False)
        with self.connect(restored, "postgres") as conn:
            mode = conn.execute("SHOW archive_mode").fetchone()[0]
        return ("SHOW archive_mode on restore-test", "off", mode, mode == "off")

    def restore(
        self, backup: Backup, target: RecoveryTarget, *, timeout: float = 600
    ) -> RestoreResult:
        """Restore into restore-test (see pgdrill.targets.sandbox.restore)."""
        return restore_into_test(self._cluster(), backup, target, timeout)

    def wait_ready(
        self, *, timeout: float = 300, since: float | None = None, disturbed: bool = False
    ) -> HealReport:
        """Poll until there is a writable primary and every instance runs, streams and is a
        synchronous standby of it. Read live from every instance each time, so `disturbed`
        needs nothing more here."""
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
            # healthy = every replica confirms commits: a failover then loses none
            if not all_synchronous(cluster, primary):
                return None
            now = time.monotonic()
            return HealReport(
                writable_primary_seconds=round(writable_at[0] - t0, 3),
                healthy_seconds=round(now - t0, 3),
                primary=primary,
                instances=[cluster.instance(n) for n in cluster.state.instances],
            )

        return poll_until(
            healthy,
            timeout=timeout,
            interval=0.2,
            what="the cluster to have a writable primary and all instances healthy",
            fix=f"read {self.layout.supervisor_log}",
        )

    def cleanup_restore(self) -> None:
        remove_restore_test(self.layout)

    # -- checks before a restore -----------------------------------------------------------
    def archive(self) -> str:
        store = self._cluster().store
        return f"s3://{store.bucket}/{store.server_name}/"

    def s3_credentials(self):
        return sandbox_credentials(self.layout)

    def bucket_location(self):
        """The sandbox's own archive: s3://<bucket>/<serverName>/ on its moto endpoint."""
        from pgdrill.credentials.location import BucketLocation

        store = self._cluster().store
        return BucketLocation(
            store.destination_path,
            store.server_name,
            sandbox_credentials(self.layout),
            store.endpoint_url,
        )

    def backup_destination(self) -> str:
        store = self._cluster().store
        return (
            f"s3://{store.bucket}/{store.server_name}/ (bucket {store.bucket}, serverName "
            f"{store.server_name}, at {store.endpoint_url})"
        )

    def find_restore_point(self, name: str, since_lsn: str) -> str | None:
        """pg_waldump over the primary's pg_wal on this machine (pgdrill.restore.walscan)."""
        from pgdrill.restore import walscan

        primary = self.primary()
        pg_wal = self.layout.data_dir(primary.name) / "pg_wal"
        with self.connect(primary, "postgres") as conn:
            return walscan.find_restore_point(
                conn, name, since_lsn, walscan.local_dump(pg_wal), str(pg_wal)
            )
