"""A CNPG cluster's backups, from both places they are described:

- `Backup` objects (`postgresql.cnpg.io/v1`): what the operator ran, with phase and error;
- the object store itself (boto3, credentials from the SOPS file): `<destinationPath>/
  <serverName>/base/<backupId>/backup.info` written by barman-cloud — what a restore can use,
  including backups whose Backup objects were deleted.

Pure parsing functions plus one boto3 listing."""

from __future__ import annotations

from datetime import datetime

from pgdrill.core.model import Backup
from pgdrill.core.times import parse_time
from pgdrill.credentials.s3client import split_destination

BACKUP_INFO = "backup.info"


def from_backup_object(doc: dict) -> Backup:
    """A `Backup` object's status as pgdrill's Backup (status = CNPG's phase)."""
    status = doc.get("status") or {}
    return Backup(
        id=status.get("backupId") or doc["metadata"]["name"],
        status=status.get("phase") or "pending",
        begin_time=parse_time(status.get("startedAt")),
        end_time=parse_time(status.get("stoppedAt")),
        begin_wal=status.get("beginWal"),
        end_wal=status.get("endWal"),
        timeline=None,
        name=doc["metadata"]["name"],
        begin_lsn=status.get("beginLSN"),
        end_lsn=status.get("endLSN"),
    )


def parse_backup_info(text: str) -> dict[str, str]:
    """barman's backup.info: sorted `key=value` lines."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def from_backup_info(backup_id: str, info: dict[str, str], size: int | None) -> Backup:
    timeline = info.get("timeline")
    return Backup(
        id=info.get("backup_id") or backup_id,
        status=info.get("status") or "UNKNOWN",
        begin_time=parse_time(info.get("begin_time")),
        end_time=parse_time(info.get("end_time")),
        begin_wal=_none(info.get("begin_wal")),
        end_wal=_none(info.get("end_wal")),
        timeline=int(timeline) if timeline and timeline.isdigit() else None,
        name=_none(info.get("backup_name")),
        begin_lsn=_none(info.get("begin_xlog")),
        end_lsn=_none(info.get("end_xlog")),
        size=size,
    )


def _none(value: str | None) -> str | None:
    return None if value in (None, "", "None") else value


def list_store_backups(s3, destination_path: str, server_name: str) -> list[Backup]:
    """Every base backup under `<destinationPath>/<serverName>/base/`, oldest first, with
    its stored size (all objects of the backup's folder)."""
    bucket, prefix = split_destination(destination_path)
    base = f"{prefix}{server_name}/base/"
    sizes: dict[str, int] = {}
    infos: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            backup_id, _, rest = obj["Key"][len(base) :].partition("/")
            if not backup_id:
                continue
            sizes[backup_id] = sizes.get(backup_id, 0) + int(obj.get("Size") or 0)
            if rest == BACKUP_INFO:
                infos.append(backup_id)
    backups = []
    for backup_id in infos:
        body = s3.get_object(Bucket=bucket, Key=f"{base}{backup_id}/{BACKUP_INFO}")["Body"]
        backups.append(
            from_backup_info(
                backup_id, parse_backup_info(body.read().decode()), sizes.get(backup_id)
            )
        )
    return sorted(backups, key=lambda b: (b.end_time is None, b.end_time or datetime.min, b.id))
