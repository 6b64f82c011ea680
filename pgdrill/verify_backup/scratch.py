"""A throwaway local PostgreSQL that restores one backup from a bucket: barman-cloud-restore
of the base backup, WAL replay through barman-cloud-wal-restore up to a recovery target,
promotion — with the server build of the backup's own major. Read-only towards the bucket:
the copy never archives, and no barman-cloud tool that writes is ever run.

The backup's own configuration is set aside (postgresql.conf.from-backup): a CNPG instance's
points at /controller/... paths, its certificates and its archive command, none of which
exist here. The copy runs on 127.0.0.1 and a private socket folder with trust
authentication for its superuser `postgres`, and hot_standby off (so the primary's
max_connections & co. need not be matched while it replays)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg

from pgdrill.core.console import say
from pgdrill.core.errors import PgdrillError, TargetError
from pgdrill.core.model import Instance, RecoveryTarget, Role
from pgdrill.credentials.location import BucketLocation
from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.barman import ObjectStore
from pgdrill.targets.sandbox.osuser import resolve_run_as
from pgdrill.targets.sandbox.restore import recovery_settings, signal_recovery, wait_promoted
from pgdrill.targets.sandbox.state import free_port

NAME = "verify-backup"
SET_ASIDE = (
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
    "custom.conf",
    "override.conf",
)
HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"


class ScratchInstance:
    """One restored copy in a folder of its own (a new temporary one, inside `work_dir` when
    given; `remove()` deletes it), run by the unprivileged OS user PostgreSQL needs when
    pgdrill is root."""

    def __init__(
        self,
        location: BucketLocation,
        bin_dir: Path,
        work_dir: Path | None = None,
        wal_max_parallel: int = 8,
    ) -> None:
        self.location = location
        self.store = ObjectStore.at(location)
        self.bin_dir = bin_dir
        self.run_as = resolve_run_as()
        if work_dir is not None:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
        # always a folder of its own (inside work_dir when given): removing it removes
        # nothing of the user's
        self.home = Path(tempfile.mkdtemp(prefix="pgdrill-verify-", dir=work_dir))
        self.run_as.chown(self.home)
        self.data = self.home / "data"
        self.sockets = self.home / "sockets"
        self.log = self.home / "postgresql.log"
        self.port = free_port()
        self.wal_max_parallel = wal_max_parallel
        self.spool = self.home / "wal-spool"

    @property
    def instance(self) -> Instance:
        return Instance(
            name=NAME,
            role=Role.RESTORE,
            host="127.0.0.1",
            port=self.port,
            dbname="postgres",
            user=postgres.SUPERUSER,
        )

    def env(self) -> dict[str, str]:
        """The environment of barman-cloud and the postmaster: credentials travel here."""
        import os

        return {
            "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            **self.location.process_env(),
        }

    def fetch(self, backup_id: str, timeout: float, tablespaces: tuple[str, ...] = ()) -> None:
        """barman-cloud-restore of the base backup into the data folder; its tablespaces
        relocated into this folder (their original paths are the source's)."""
        if self.data.exists():
            raise PgdrillError(f"{self.data} already exists", fix="use an empty --work-dir")
        say(
            f"fetching base backup {backup_id} from {self.location.archive}"
            + (f" (tablespaces {', '.join(tablespaces)} relocated)" if tablespaces else "")
        )
        argv = self.store.restore_argv(backup_id, self.data)
        for name in tablespaces:
            location = self.home / "tablespaces" / name
            location.mkdir(parents=True, exist_ok=True)
            self.run_as.chown(location.parent)
            self.run_as.chown(location)
            argv[1:1] = ["--tablespace", f"{name}:{location}"]
        postgres.run(
            self.run_as,
            argv,
            env=self.env(),
            timeout=timeout,
            what=f"barman-cloud-restore of {backup_id}",
            pid_file=self.home / "restore-tool.pid",
        )

    def configure(self, target: RecoveryTarget) -> list[str]:
        """Set the backup's configuration aside and write the copy's own; returns what
        was set aside."""
        kept = []
        for name in SET_ASIDE:
            path = self.data / name
            if path.exists():
                path.rename(self.data / f"{name}.from-backup")
                kept.append(name)
        for folder in (self.sockets, self.spool):
            folder.mkdir(exist_ok=True)
            self.run_as.chown(folder)
        (self.data / "postgresql.conf").write_text(
            "# pgdrill verify-backup: a throwaway copy; the backup's own is *.from-backup\n"
        )
        (self.data / "pg_hba.conf").write_text(HBA)
        (self.data / "pg_ident.conf").write_text("")
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.sockets),
            "hba_file": str(self.data / "pg_hba.conf"),
            "ident_file": str(self.data / "pg_ident.conf"),
            "hot_standby": "off",
            "shared_buffers": "128MB",
            "max_connections": 50,
            "logging_collector": "off",
            "log_line_prefix": "%m [%p] ",
            **recovery_settings(
                self.store.restore_command(self.wal_max_parallel, self.spool), target
            ),
        }
        postgres.append_conf(self.data, settings, header="pgdrill verify-backup")
        signal_recovery(self.data)
        self.run_as.chown_tree(self.home)
        return kept

    def replay(self, target: RecoveryTarget, timeout: float) -> None:
        """Start the copy and wait until recovery reached its target and it was promoted."""
        say(
            f"replaying WAL from {self.location.archive} up to {target.describe()} with "
            f"PostgreSQL from {self.bin_dir}"
        )
        postgres.start(
            self.run_as,
            self.data,
            self.port,
            self.sockets,
            self.log,
            self.env(),
            wait=False,
            bin_dir=self.bin_dir,
        )
        wait_promoted(self.data, self.port, self.log, timeout)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.instance.conninfo(dbname), autocommit=True)

    def check_isolated(self) -> None:
        with self.connect() as conn:
            if conn.execute("SHOW archive_mode").fetchone()[0] != "off":
                raise TargetError(
                    "the restored copy has archiving on; refusing to keep it, "
                    "it could write into the bucket"
                )

    def remove(self) -> None:
        """Stop the copy (immediate: it is thrown away) and delete its folder."""
        pid = postgres.postmaster_pid(self.data)
        if pid is not None:
            try:
                postgres.stop(
                    self.run_as, self.data, mode="immediate", timeout=30, bin_dir=self.bin_dir
                )
            except PgdrillError:
                from pgdrill.core.procs import terminate

                terminate(pid, timeout=5)
        shutil.rmtree(self.home, ignore_errors=True)


def remove_leftover(home: Path, bin_dir: Path) -> str:
    """Stop and delete the copy a killed verification left in `home`; says what it did."""
    data = home / "data"
    pid = postgres.postmaster_pid(data)
    if pid is not None:
        from pgdrill.core.procs import terminate

        try:
            postgres.stop(
                resolve_run_as(),
                data,
                mode="immediate",
                timeout=30,
                bin_dir=bin_dir if (bin_dir / "pg_ctl").is_file() else None,
            )
        except PgdrillError:
            terminate(pid, timeout=5)
    if not home.exists():
        return "nothing was left of its throwaway copy"
    shutil.rmtree(home, ignore_errors=True)
    return f"stopped and removed its throwaway copy in {home}"
