"""Reading one server's folder of a barman-cloud bucket (the I/O edge of pgdrill.bucket).

`read_server_folder(location)` lists `<destinationPath>/<serverName>/` once (paginated) and
returns a `ServerFolder`: every object (key relative to the folder, size, LastModified), the
base backups (each `base/<id>/backup.info`, read with the catalog's parser; the backup's size
is the sum of its folder's objects), the timeline history files' texts (decompressed), and
the cluster's `wal_segment_size` (backup.info's `xlog_segment_size`). The analysis is pure
and lives elsewhere (`walchain`, `report`).

Failures are pgdrill errors with a fix and never a credential value: an endpoint that does
not answer, a bucket that does not exist, access denied, and a folder with nothing in it
(the usual cause: a wrong serverName; the sibling folders are named when there are some)."""

from __future__ import annotations

import bz2
import gzip
import lzma
from dataclasses import dataclass, field
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from pgdrill.bucket.walchain import DEFAULT_SEGMENT_SIZE, HISTORY, wal_file_name
from pgdrill.core.errors import BadInput, PgdrillError, TargetError
from pgdrill.core.model import Backup
from pgdrill.credentials.location import BucketLocation
from pgdrill.credentials.secret import redact
from pgdrill.targets.cnpg.catalog import BACKUP_INFO, from_backup_info, parse_backup_info

SERVER_NAME_HINT = (
    "CNPG's default serverName is the cluster name; after a recovery it usually differs"
)


@dataclass(frozen=True)
class StoredObject:
    """One object of the server folder: key relative to it, bytes, upload time."""

    key: str
    size: int
    modified: datetime | None


@dataclass(frozen=True)
class ServerFolder:
    """What one listing of `<destinationPath>/<serverName>/` found."""

    archive: str  # s3://bucket/path/serverName/
    endpoint: str
    objects: tuple[StoredObject, ...]
    backups: tuple[Backup, ...]  # oldest first
    histories: dict[int, str]  # timeline -> its history file's text
    wal_segment_size: int = DEFAULT_SEGMENT_SIZE
    listed_at: datetime | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)  # what could not be read, and why
    infos: dict[str, dict] = field(default_factory=dict)  # backup id -> its backup.info

    def listing(self) -> list[tuple[str, int, datetime | None]]:
        """(key, size, LastModified) triples, as `walchain.analyse_wal_chain` takes them."""
        return [(o.key, o.size, o.modified) for o in self.objects]


def read_server_folder(location: BucketLocation, *, client=None) -> ServerFolder:
    """List and read the server folder of `location` (see the module docstring)."""
    s3 = client or location.client()
    secrets = location.credentials.secret_values()
    try:
        objects = _list(s3, location)
        if not objects:
            raise _empty_folder(s3, location)
        backups, size, notes, infos = _backups(s3, location, objects)
        histories, more = _histories(s3, location, objects)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(exc, location, secrets) from None
    return ServerFolder(
        location.archive,
        location.endpoint,
        tuple(objects),
        tuple(backups),
        histories,
        size,
        datetime.now(UTC),
        tuple(notes + more),
        infos,
    )


def _list(s3, location: BucketLocation) -> list[StoredObject]:
    found = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=location.bucket, Prefix=location.prefix
    )
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"][len(location.prefix) :]
            if key:
                found.append(StoredObject(key, int(obj.get("Size") or 0), obj.get("LastModified")))
    return found


def _backups(
    s3, location: BucketLocation, objects: list[StoredObject]
) -> tuple[list[Backup], int, list[str], dict[str, dict]]:
    """The backups (oldest first), the WAL segment size of the newest backup.info, notes,
    and each backup's parsed backup.info (read once: callers need no second GET)."""
    sizes: dict[str, int] = {}
    infos = []
    for obj in objects:
        if not obj.key.startswith("base/"):
            continue
        backup_id, _, rest = obj.key[len("base/") :].partition("/")
        if backup_id:
            sizes[backup_id] = sizes.get(backup_id, 0) + obj.size
            if rest == BACKUP_INFO:
                infos.append(backup_id)
    backups, segment_sizes, notes, parsed = [], [], [], {}
    for backup_id in infos:
        body = s3.get_object(
            Bucket=location.bucket, Key=f"{location.prefix}base/{backup_id}/{BACKUP_INFO}"
        )["Body"]
        info = parsed[backup_id] = parse_backup_info(body.read().decode("utf-8", "replace"))
        backup = from_backup_info(backup_id, info, sizes.get(backup_id))
        backups.append(backup)
        value = info.get("xlog_segment_size", "")
        if value.isdigit():
            segment_sizes.append((backup.end_time or datetime.min.replace(tzinfo=UTC), int(value)))
    backups.sort(
        key=lambda b: (b.end_time is None, b.end_time or datetime.min.replace(tzinfo=UTC), b.id)
    )
    size = max(segment_sizes)[1] if segment_sizes else DEFAULT_SEGMENT_SIZE
    if not segment_sizes and backups:
        notes.append("no backup.info names xlog_segment_size: WAL segments taken as 16 MiB")
    return backups, size, notes, parsed


def _histories(
    s3, location: BucketLocation, objects: list[StoredObject]
) -> tuple[dict[int, str], list[str]]:
    """Timeline -> history text, for every non-empty `wals/TTTTTTTT.history[.<compression>]`."""
    texts: dict[int, str] = {}
    notes = []
    for obj in objects:
        name = wal_file_name(obj.key)
        match = HISTORY.match(name or "")
        if not match or not obj.size:
            continue
        body = s3.get_object(Bucket=location.bucket, Key=location.prefix + obj.key)["Body"].read()
        text = decompress(obj.key, body)
        if text is None:
            notes.append(
                f"cannot decompress {obj.key} (no decoder for its compression here): "
                f"timeline {int(match.group(1), 16)}'s history is not followed"
            )
            continue
        texts[int(match.group(1), 16)] = text
    return texts, notes


def decompress(key: str, data: bytes) -> str | None:
    """A WAL-archive file's bytes as text, by its compression suffix (gzip, bzip2 and xz
    with the standard library; snappy, zstd and lz4 when their module is installed); None
    when it cannot be decoded."""
    try:
        if key.endswith(".gz"):
            data = gzip.decompress(data)
        elif key.endswith(".bz2"):
            data = bz2.decompress(data)
        elif key.endswith(".xz"):
            data = lzma.decompress(data)
        elif key.endswith((".snappy", ".zst", ".lz4")):
            data = _optional_decompress(key.rsplit(".", 1)[1], data)
            if data is None:
                return None
        return data.decode("utf-8")
    except (OSError, EOFError, ValueError, lzma.LZMAError):
        return None


def _optional_decompress(kind: str, data: bytes) -> bytes | None:
    try:
        if kind == "snappy":
            import snappy  # type: ignore[import-not-found]

            return snappy.StreamDecompressor().decompress(data)
        if kind == "zst":
            import zstandard  # type: ignore[import-not-found]

            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        import lz4.frame  # type: ignore[import-not-found]

        return lz4.frame.decompress(data)
    except ImportError:
        return None


# -- errors ------------------------------------------------------------------------------------
def _empty_folder(s3, location: BucketLocation) -> PgdrillError:
    """Nothing under the server folder: name the folders beside it (the likely serverName)."""
    parent = location.prefix[: -len(location.server_name) - 1]
    siblings = []
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=location.bucket, Prefix=parent, Delimiter="/"
        )
        for page in pages:
            siblings += [
                p["Prefix"][len(parent) :].rstrip("/") for p in page.get("CommonPrefixes", [])
            ]
    except (BotoCoreError, ClientError):
        pass
    there = (
        f"; s3://{location.bucket}/{parent} holds {', '.join(sorted(siblings)[:10])}"
        if siblings
        else ""
    )
    return BadInput(
        f"no backups under {location.archive} (the folder is empty){there}",
        fix=f"check --server-name ({SERVER_NAME_HINT}) and the destination path",
    )


def _s3_error(exc: Exception, location: BucketLocation, secrets) -> PgdrillError:
    """A boto error as an actionable pgdrill error, credential values redacted."""
    where = f"{location.archive} at {location.endpoint}"
    detail = redact(str(exc), secrets)
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "")
        if code in ("NoSuchBucket", "404"):
            return BadInput(
                f"there is no bucket {location.bucket!r} at {location.endpoint}",
                fix="check the s3://BUCKET of the destination path and "
                "--endpoint-url (or the credentials file's ENDPOINT)",
            )
        if code in (
            "AccessDenied",
            "403",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AllAccessDisabled",
            "ExpiredToken",
            "InvalidToken",
        ):
            return TargetError(
                f"access to {where} was denied ({code})",
                fix="check the credentials file (`pgdrill secrets check FILE`) "
                "and that its key may list and read this bucket and path",
            )
        return TargetError(
            f"cannot read {where}: {detail}",
            fix="check the endpoint, the bucket and the credentials",
        )
    from pgdrill.credentials.s3client import endpoint_fix

    return TargetError(
        f"cannot reach the S3 endpoint {location.endpoint} to read {location.archive}: {detail}",
        fix=endpoint_fix(location.endpoint),
    )
