"""barman-cloud command lines: the tool and bucket layout CNPG uses.

Objects land under s3://<bucket>/<serverName>/{base,wals}/ with serverName = the cluster
name, exactly as CNPG writes them for destinationPath s3://<bucket>/."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pgdrill.core.model import Backup

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    return str(BIN / name)


@dataclass(frozen=True)
class ObjectStore:
    """barman-cloud's view of `s3://<bucket>/<path>/<server_name>/` at `endpoint_url`
    (`path` empty: the bucket's root, as the sandbox archives)."""

    endpoint_url: str
    bucket: str
    server_name: str
    path: str = ""

    @property
    def destination_path(self) -> str:
        path = self.path.strip("/")
        return f"s3://{self.bucket}/{path + '/' if path else ''}"

    @classmethod
    def at(cls, location) -> ObjectStore:
        """The store of a pgdrill.credentials.location.BucketLocation."""
        path = location.prefix[: -len(location.server_name) - 1]
        return cls(location.endpoint, location.bucket, location.server_name, path)

    def common_args(self) -> list[str]:
        return ["--endpoint-url", self.endpoint_url]

    def archive_command(self) -> str:
        """postgresql.conf archive_command: compressed, as CNPG's `wal.compression: gzip`."""
        argv = [
            tool("barman-cloud-wal-archive"),
            *self.common_args(),
            "--gzip",
            self.destination_path,
            self.server_name,
        ]
        return shlex.join(argv) + " %p"

    def restore_command(self, max_parallel: int = 1, spool_dir: Path | None = None) -> str:
        """postgresql.conf restore_command. `max_parallel` as CNPG's `wal.maxParallel`: 1
        fetches each segment as PostgreSQL asks for it (one barman-cloud-wal-restore process
        each); N > 1 fetches the asked segment and prefetches the next N-1 in parallel into
        `spool_dir`, and a segment already in the spool is handed over by the shell alone
        (`mv`), without starting barman-cloud-wal-restore — as CNPG's instance manager does
        — so replay is not bound by one process start per segment."""
        argv = [tool("barman-cloud-wal-restore"), *self.common_args()]
        if max_parallel > 1:
            if spool_dir is None:
                raise ValueError("a parallel WAL fetch needs a spool folder")
            argv += ["--parallel", str(max_parallel), "--spool-dir", str(spool_dir)]
        fetch = shlex.join([*argv, self.destination_path, self.server_name]) + " %f %p"
        if max_parallel <= 1:
            return fetch
        spooled = shlex.quote(str(spool_dir)) + "/%f"
        return f"if [ -f {spooled} ]; then mv -f {spooled} %p; else {fetch}; fi"

    def backup_argv(self, host: str, port: int, user: str, name: str | None = None) -> list[str]:
        # --immediate-checkpoint (CNPG: `data.immediateCheckpoint: true`): a drill's backup
        # must not wait for a spread checkpoint, which takes minutes after bulk writes
        argv = [
            tool("barman-cloud-backup"),
            *self.common_args(),
            "--gzip",
            "--immediate-checkpoint",
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            user,
            "-d",
            "postgres",
        ]
        if name:
            argv += ["--name", name]
        return argv + [self.destination_path, self.server_name]

    def list_argv(self) -> list[str]:
        return [
            tool("barman-cloud-backup-list"),
            *self.common_args(),
            "--format",
            "json",
            self.destination_path,
            self.server_name,
        ]

    def restore_argv(self, backup_id: str, dest: Path) -> list[str]:
        return [
            tool("barman-cloud-restore"),
            *self.common_args(),
            self.destination_path,
            self.server_name,
            backup_id,
            str(dest),
        ]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def parse_backup_list(output: str) -> list[Backup]:
    """Parse `barman-cloud-backup-list --format json`; oldest first.

    Each item is the backup's whole backup.info: LSNs come from `begin_xlog`/`end_xlog`.
    barman-cloud-backup leaves `size` null (only barman's own executor fills it), so `size` is
    None here unless the list has it; `backup_sizes` measures it in the bucket."""
    data = json.loads(output or "{}")
    backups = []
    for item in data.get("backups_list", []):
        size = item.get("size")
        backups.append(
            Backup(
                id=item["backup_id"],
                status=item.get("status", "UNKNOWN"),
                begin_time=_time(item.get("begin_time_iso")),
                end_time=_time(item.get("end_time_iso")),
                begin_wal=item.get("begin_wal"),
                end_wal=item.get("end_wal"),
                timeline=item.get("timeline"),
                name=item.get("backup_name"),
                begin_lsn=item.get("begin_xlog"),
                end_lsn=item.get("end_xlog"),
                size=int(size) if isinstance(size, int | float) else None,
            )
        )
    return sorted(backups, key=lambda b: b.id)


def backup_sizes(s3, bucket: str, server_name: str) -> dict[str, int]:
    """Backup id → bytes stored under `<server_name>/base/<id>/` (compressed archives,
    backup_label, backup.info): one paginated ListObjectsV2 (1,000 keys a page) for every
    backup, where `barman-cloud-backup-show` would cost a process per backup."""
    prefix = f"{server_name}/base/"
    sizes: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            backup_id, _, rest = obj["Key"][len(prefix) :].partition("/")
            if rest:
                sizes[backup_id] = sizes.get(backup_id, 0) + int(obj["Size"])
    return sizes
