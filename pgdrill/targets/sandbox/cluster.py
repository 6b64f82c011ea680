"""Operations on the sandbox's PostgreSQL instances, shared by `sandbox up`, the drills and
the supervisor: create, clone, start, promote, seed, back up."""

from __future__ import annotations

import functools
import os
import shutil
import time
from pathlib import Path

import psycopg

from pgdrill.core.errors import PreflightRefused, TargetError
from pgdrill.core.files import write_atomically
from pgdrill.core.model import Instance, Role
from pgdrill.core.waiting import poll_until
from pgdrill.credentials.secret import S3Credentials, load_s3_credentials, write_encrypted_secret
from pgdrill.pg.archive_status import ArchiverWatch
from pgdrill.pg.replication import SYNCHRONOUS_STATES
from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.barman import ObjectStore
from pgdrill.targets.sandbox.osuser import RunAs
from pgdrill.targets.sandbox.state import Layout, SandboxState

APP_DB = "app"
# Short enough that a quiet sandbox still archives its WAL; drills that need the archive
# current call pg_switch_wal(). This is what makes RPO after a restore non-zero.
ARCHIVE_TIMEOUT_S = 10
# Synchronous replication as CNPG's `postgresql.synchronous: {method: any, number: 1,
# dataDurability: preferred}`: the supervisor lists the standbys that stream in a file
# beside each data directory (never inside it, so no base backup or clone carries it), and
# a commit is acknowledged only once one of them has flushed it. Without it a failover
# loses the last acknowledged writes whenever the replica lags (seen: 4 lost in a pvc-loss).
SYNC_FILE = "synchronous.conf"
SYNC_INCLUDE = f"include_if_exists = '../{SYNC_FILE}'"


def sandbox_credentials(layout: Layout) -> S3Credentials:
    """The sandbox's S3 credentials, read the production way: decrypted (MAC verified) from
    its SOPS-encrypted `cnpg-backup-s3` file with its own age identity."""
    if not layout.credentials_file.is_file() or not layout.age_key_file.is_file():
        raise PreflightRefused(
            f"the sandbox in {layout.home} has no SOPS-encrypted credentials file "
            f"({layout.credentials_file.name}) and age identity: it was made by an older "
            "pgdrill, or they were removed",
            fix="`pgdrill sandbox reset --yes` discards this sandbox and builds a new one",
        )
    return load_s3_credentials(layout.credentials_file, [str(layout.age_key_file)])


def create_sandbox_credentials(layout: Layout, values: dict[str, str]) -> S3Credentials:
    """A new age identity for the sandbox and its credentials encrypted to it."""
    from pgdrill.credentials import sops

    secret_key, recipient = sops.new_identity()
    layout.age_key_file.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.age_key_file.parent, 0o700)
    write_atomically(
        layout.age_key_file,
        f"# pgdrill sandbox identity\n# public key: {recipient}\n{secret_key}\n",
        mode=0o600,
        durable=True,
    )
    write_encrypted_secret(layout.credentials_file, values, [recipient])
    return sandbox_credentials(layout)


class SandboxCluster:
    def __init__(self, layout: Layout, state: SandboxState, run_as: RunAs) -> None:
        self.layout = layout
        self.state = state
        self.run_as = run_as

    @functools.cached_property
    def credentials(self) -> S3Credentials:
        return sandbox_credentials(self.layout)

    # -- identity ---------------------------------------------------------------------
    @property
    def store(self) -> ObjectStore:
        """The cluster's own archive: s3://<bucket>/<serverName>/, serverName = the cluster's
        name until a rebuild from the bucket gave it a new one (state.server_name)."""
        return ObjectStore(self.state.endpoint_url, self.state.bucket, self.state.archive_server)

    def instance(self, name: str, dbname: str = APP_DB) -> Instance:
        inst = self.state.instances[name]
        return Instance(
            name=name,
            role=Role(inst.role),
            host="127.0.0.1",
            port=inst.port,
            dbname=dbname,
            user=postgres.SUPERUSER,
        )

    def process_env(self, home: Path | None = None) -> dict[str, str]:
        """Environment for postmasters and barman-cloud: S3 credentials travel here."""
        env = {
            "PATH": f"{postgres.BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            "HOME": str(home or self.layout.home),
        }
        env.update(self.credentials.process_env())
        return env

    # -- instance lifecycle ---------------------------------------------------------
    def _prepare_instance_dir(self, name: str) -> Path:
        idir = self.layout.instance_dir(name)
        idir.mkdir(parents=True, exist_ok=True)
        self.run_as.chown(idir)
        self.layout.sockets.mkdir(parents=True, exist_ok=True)
        self.run_as.chown(self.layout.sockets)
        return idir

    def append_conf(self, data: Path, settings: dict[str, object]) -> None:
        postgres.append_conf(data, settings)

    def base_settings(self) -> dict[str, object]:
        return {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": self.store.archive_command(),
            "archive_timeout": ARCHIVE_TIMEOUT_S,
            "max_wal_senders": 10,
            "wal_keep_size": "512MB",
            "hot_standby": "on",
            "wal_log_hints": "on",
            "shared_buffers": "64MB",
            "log_line_prefix": "%m [%p] ",
            "log_min_messages": "warning",
            "include_if_exists": f"../{SYNC_FILE}",
        }

    def start(self, name: str, *, timeout: float = 60) -> None:
        postgres.start(
            self.run_as,
            self.layout.data_dir(name),
            self.state.instances[name].port,
            self.layout.sockets,
            self.layout.log_file(name),
            self.process_env(self.layout.instance_dir(name)),
            timeout=timeout,
        )

    def stop(self, name: str) -> None:
        data = self.layout.data_dir(name)
        try:
            postgres.stop(self.run_as, data)
        except TargetError:
            postgres.kill_postmaster(data)

    def create_primary(self, name: str) -> None:
        self._prepare_instance_dir(name)
        data = self.layout.data_dir(name)
        postgres.initdb(self.run_as, data)
        self.append_conf(data, self.base_settings())
        self.start(name)

    def clone_replica(self, name: str, primary: str, *, timeout: float = 300) -> None:
        """(Re)build `name` as a streaming replica of `primary` with pg_basebackup."""
        idir = self._prepare_instance_dir(name)
        data = self.layout.data_dir(name)
        if postgres.postmaster_pid(data):
            postgres.kill_postmaster(data)
            poll_until(
                lambda: postgres.postmaster_pid(data) is None,
                timeout=30,
                what=f"the old postmaster of {name} to exit",
            )
        shutil.rmtree(data, ignore_errors=True)
        src = self.state.instances[primary]
        postgres.run(
            self.run_as,
            [
                postgres.binary("pg_basebackup"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(src.port),
                "-U",
                postgres.SUPERUSER,
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            env=self.process_env(idir),
            timeout=timeout,
            what=f"cloning {name} from {primary}",
        )
        (data / "standby.signal").touch()
        self.run_as.chown(data / "standby.signal")
        conninfo = (
            f"host=127.0.0.1 port={src.port} user={postgres.SUPERUSER} application_name={name}"
        )
        with open(data / "postgresql.auto.conf", "a") as fh:
            fh.write(f"primary_conninfo = '{conninfo}'\n")
        self.start(name)

    def set_synchronous(self, name: str, standbys: list[str]) -> bool:
        """Make `standbys` the synchronous standbys of `name` (none: commits do not wait) and
        reload it when it runs; False when nothing changed."""
        data = self.layout.data_dir(name)
        conf = data / "postgresql.conf"
        if conf.is_file() and SYNC_INCLUDE not in conf.read_text().splitlines():
            with open(conf, "a") as fh:  # a sandbox made before pgdrill ran it synchronously
                fh.write(f"\n# --- pgdrill sandbox: synchronous standbys ---\n{SYNC_INCLUDE}\n")
        path = self.layout.instance_dir(name) / SYNC_FILE
        text = f"synchronous_standby_names = '{synchronous_standby_names(standbys)}'\n"
        if path.is_file() and path.read_text() == text:
            return False
        write_atomically(path, text, mode=0o644)
        if self.is_running(name):
            with self.connect(name) as conn:
                conn.execute("SELECT pg_reload_conf()")
        return True

    def streaming_standbys(self, primary: str) -> list[str]:
        """The sandbox's instances that stream from `primary` now."""
        with self.connect(primary) as conn:
            rows = conn.execute(
                "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
            ).fetchall()
        return sorted({r[0] for r in rows} & (set(self.state.instances) - {primary}))

    def promote(self, name: str) -> None:
        postgres.promote(self.run_as, self.layout.data_dir(name))

    def is_running(self, name: str) -> bool:
        return postgres.postmaster_pid(self.layout.data_dir(name)) is not None

    def has_storage(self, name: str) -> bool:
        return (self.layout.data_dir(name) / "PG_VERSION").exists()

    # -- SQL ------------------------------------------------------------------------
    def connect(self, name: str, dbname: str = "postgres", timeout: int = 5) -> psycopg.Connection:
        port = self.state.instances[name].port
        return psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=postgres.SUPERUSER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=timeout,
        )

    def query_one(self, name: str, sql: str, dbname: str = "postgres"):
        with self.connect(name, dbname) as conn:
            row = conn.execute(sql).fetchone()
            return row[0] if row else None

    def seed(self, primary: str) -> None:
        """An `app` database with pgbench tables and a sentinel row, worth checking later."""
        with self.connect(primary) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (APP_DB,)
            ).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE {APP_DB}")
        port = self.state.instances[primary].port
        postgres.run(
            self.run_as,
            [
                postgres.binary("pgbench"),
                "-i",
                "-s",
                "1",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                postgres.SUPERUSER,
                APP_DB,
            ],
            env=self.process_env(),
            what="seeding pgbench tables",
        )
        with self.connect(primary, APP_DB) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS pgdrill_sentinel ("
                "key text PRIMARY KEY, value text NOT NULL)"
            )
            conn.execute(
                "INSERT INTO pgdrill_sentinel VALUES ('drill', 'ok') ON CONFLICT (key) DO NOTHING"
            )

    # -- archive and backups -------------------------------------------------------------
    def wait_archiving(self, primary: str, timeout: float = 600, stall: float = 60) -> None:
        """Switch WAL and wait until that segment is archived: as long as the archiver makes
        progress (a backlog after a large load), at most `timeout`; fail fast if archiving
        fails, or stands still for `stall` seconds."""
        with self.connect(primary) as conn:
            before = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()[0]
            segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal() - 1)").fetchone()[0]
            watch = ArchiverWatch(segment, stall, time.monotonic)

            def archived() -> bool:
                last, failed, last_failed = conn.execute(
                    "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver"
                ).fetchone()
                if failed > before:
                    raise TargetError(
                        f"WAL archiving to {self.store.destination_path} is failing "
                        f"(last failed: {last_failed})",
                        fix=f"read {self.layout.log_file(primary)} for the archive_command error",
                    )
                return watch.reached(last)

            poll_until(archived, timeout=timeout, what=f"WAL segment {segment} to be archived")

    def take_backup(self, primary: str, *, timeout: float = 600, name: str | None = None) -> None:
        """barman-cloud-backup from the primary, with a deadline (it waits forever for WAL
        archiving if archiving is broken, so archiving is checked first)."""
        self.wait_archiving(primary, timeout=timeout)
        inst = self.state.instances[primary]
        argv = self.store.backup_argv("127.0.0.1", inst.port, postgres.SUPERUSER, name=name)
        try:
            postgres.run(
                self.run_as,
                argv,
                env=self.process_env(self.layout.instance_dir(primary)),
                timeout=timeout,
                what="barman-cloud-backup",
            )
        except TargetError as exc:
            raise TargetError(
                exc.message, fix="check the S3 endpoint and `pgdrill sandbox status`"
            ) from exc


def synchronous_standby_names(standbys: list[str]) -> str:
    """The setting that makes a commit wait for any one of `standbys` ('' for none)."""
    if not standbys:
        return ""
    return "ANY 1 (" + ", ".join(f'"{n}"' for n in sorted(standbys)) + ")"


def wait_writable(cluster: SandboxCluster, name: str, timeout: float) -> None:
    def writable() -> bool:
        try:
            return cluster.query_one(name, "SELECT NOT pg_is_in_recovery()") is True
        except psycopg.Error:
            return False

    poll_until(writable, timeout=timeout, what=f"{name} to accept writes")


def replica_streaming(cluster: SandboxCluster, replica: str) -> bool:
    try:
        status = cluster.query_one(replica, "SELECT status FROM pg_stat_wal_receiver")
    except psycopg.Error:
        return False
    return status == "streaming"


def all_synchronous(cluster: SandboxCluster, primary: str) -> bool:
    """Every other instance streams from `primary` as a synchronous (quorum) standby."""
    try:
        with cluster.connect(primary) as conn:
            rows = conn.execute(
                "SELECT application_name, sync_state FROM pg_stat_replication "
                "WHERE state = 'streaming'"
            ).fetchall()
    except psycopg.Error:
        return False
    states = dict(rows)
    return all(
        states.get(name) in SYNCHRONOUS_STATES
        for name in cluster.state.instances
        if name != primary
    )
