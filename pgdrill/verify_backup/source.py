"""The backup a verification restores, read from the bucket: the chosen backup's catalogue
entry and its backup.info facts (PostgreSQL version, system identifier, sizes)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from pgdrill.bucket.listing import ServerFolder, read_server_folder
from pgdrill.core.errors import BadInput, PreflightRefused, TargetError
from pgdrill.core.model import Backup
from pgdrill.credentials.location import BucketLocation
from pgdrill.pg.versions import major_of_version_num

LATEST = "latest"


@dataclass(frozen=True)
class BackupFacts:
    """What backup.info says about the server that wrote a backup."""

    version_num: int | None  # server_version_num, e.g. 160015
    systemid: str | None  # the cluster's system identifier
    wal_segment_size: int | None  # xlog_segment_size
    cluster_size: int | None  # PGDATA size when it was taken (bytes)
    compression: str | None
    data_checksums: str | None
    tablespaces: tuple[str, ...] = field(default=())  # names, relocated on restore

    @property
    def major(self) -> int | None:
        return major_of_version_num(self.version_num) if self.version_num else None

    def to_dict(self) -> dict:
        return {
            "version_num": self.version_num,
            "major": self.major,
            "systemid": self.systemid,
            "wal_segment_size": self.wal_segment_size,
            "cluster_size": self.cluster_size,
            "compression": self.compression,
            "data_checksums": self.data_checksums,
            "tablespaces": list(self.tablespaces),
        }


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "", "None") else None
    except ValueError:
        return None


def facts_from_info(info: dict[str, str]) -> BackupFacts:
    """Pure: the facts of a parsed backup.info."""

    def text(key: str) -> str | None:
        value = info.get(key)
        return None if value in (None, "", "None") else value

    return BackupFacts(
        _int(info.get("version")),
        text("systemid"),
        _int(info.get("xlog_segment_size")),
        _int(info.get("cluster_size")),
        text("compression"),
        text("data_checksums"),
        tablespace_names(info.get("tablespaces")),
    )


def tablespace_names(value: str | None) -> tuple[str, ...]:
    """The names in backup.info's `tablespaces` ([('name', oid, '/location'), ...], a Python
    literal as barman writes it; read with ast.literal_eval, never eval)."""
    if value in (None, "", "None"):
        return ()
    try:
        items = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return ()
    return tuple(str(item[0]) for item in items or () if isinstance(item, list | tuple) and item)


def pick_backup(backups: list[Backup], wanted: str, where: str) -> Backup:
    """Pure: the completed backup `wanted` (an id, or `latest`: the newest completed)."""
    done = [b for b in backups if b.completed]
    if not done:
        states = ", ".join(f"{b.id} {b.status}" for b in backups) or "none at all"
        raise PreflightRefused(
            f"no completed backup under {where} (backups: {states})",
            fix="check --server-name (CNPG's default serverName is the "
            "cluster's name; after a recovery it usually differs) and "
            "the bucket path, or take a backup first",
        )
    if wanted == LATEST:
        return done[-1]
    for b in backups:
        if b.id == wanted or b.name == wanted:
            if not b.completed:
                raise PreflightRefused(
                    f"backup {wanted} under {where} is {b.status}, not "
                    "completed: it cannot be restored",
                    fix="pick a completed backup, or --backup-id latest",
                )
            return b
    raise BadInput(
        f"there is no backup {wanted!r} under {where}",
        fix="use one of: " + ", ".join(b.id for b in done) + " (or latest)",
    )


def read_folder(location: BucketLocation) -> ServerFolder:
    """The server folder, read once: its backups (oldest first) with their backup.info, the
    WAL listing and histories the WAL gate judges (pgdrill.bucket.listing; its errors name
    the endpoint or the likely serverName, never a credential value). An empty folder is
    refused (exit 3: no completed backup under that serverName), naming the folders beside
    it."""
    try:
        return read_server_folder(location)
    except BadInput as exc:
        if "(the folder is empty)" not in exc.message:
            raise
        raise PreflightRefused(
            exc.message.replace("no backups under", "no completed backup under", 1), fix=exc.fix
        ) from None


def facts_of(folder: ServerFolder, backup: Backup) -> BackupFacts:
    """The chosen backup's backup.info facts, from the folder as read."""
    info = folder.infos.get(backup.id)
    if info is None:
        raise TargetError(
            f"backup {backup.id} has no backup.info under {folder.archive}",
            fix="pick another backup, or --backup-id latest",
        )
    return facts_from_info(info)
