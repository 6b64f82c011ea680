"""The one interface every drill runs against. Two implementations: sandbox and cnpg."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import psycopg

from pgdrill.core.errors import TargetError, WalNotAvailable  # noqa: F401  (part of the protocol)
from pgdrill.core.model import (
    Backup,
    HealReport,
    Instance,
    LoadConnection,
    RecoveryTarget,
    RestoreResult,
)


@runtime_checkable
class Target(Protocol):
    """What a drill needs from a PostgreSQL cluster and its object store.

    Nothing here creates, recreates or wipes the cluster on its own: a target is checked
    (`check_ready`), faults are what the drill asks for, and only the isolated restore-test
    copy is ever created and removed — except for the cluster-loss drill, which asks
    explicitly to destroy the whole cluster and rebuild it from the bucket
    (`destroy_cluster`, `rebuild_from_backup`). Timings and states use neutral names (HealReport,
    RestoreResult.phases, Backup.phase); each target maps its own onto them."""

    name: str

    def check_ready(self) -> None:
        """Check that the target is usable — reachable, its cluster there, its archive
        readable — and change nothing; raise PreflightRefused (or TargetError) naming the
        fix otherwise."""

    def facts(self) -> dict:
        """What the evidence should record about the target beyond its instances (CNPG:
        operator version, failoverDelay, switchoverDelay, synchronous replication)."""

    def load_connection(self, dbname: str) -> LoadConnection:
        """How an external load generator reaches whichever instance is the primary, even
        across a failover: a libpq connection string plus environment (the password)."""

    def save_logs(self, folder, since) -> list[str]:
        """Save, redacted, the log lines since `since` (aware datetime) of whatever healed or
        restored the cluster (the operator or supervisor, the instances, the recovery) into
        `folder`; return the file names written."""

    def client_env(self, instance: Instance) -> dict[str, str]:
        """Environment for a libpq client program (pg_amcheck) reaching `instance`: its
        password and sslmode (PGPASSWORD, PGSSLMODE); empty when none is needed."""

    def close(self) -> None:
        """Release what the target opened for this process (port-forwards, clients)."""

    def credentials_source(self) -> dict:
        """Where the object store's credentials come from (decrypting and MAC-verifying
        them): file, recipients, key names, bucket, endpoint — never a value."""

    def cluster_identity(self) -> str:
        """A stable identity of the source cluster: PostgreSQL's system_identifier (a
        restored copy shares it; a re-initialised cluster gets a new one)."""

    def instances(self) -> list[Instance]:
        """The cluster's instances with their current roles (restore-test excluded)."""

    def primary(self) -> Instance:
        """The current primary."""

    def connect(self, instance: Instance, dbname: str | None = None) -> psycopg.Connection:
        """An autocommit connection to `instance`."""

    def kill_primary(self) -> Instance:
        """Kill the primary abruptly (pod deleted / postmaster SIGKILLed); return it."""

    def drop_storage(self, instance: Instance) -> Instance:
        """Destroy the instance's storage (PVC deleted / data directory removed)."""

    def destroy_cluster(self) -> dict:
        """Destroy the whole cluster: every instance and its storage (sandbox: the supervisor
        told not to heal it, every postmaster SIGKILLed, every data directory deleted; CNPG:
        the Cluster and all its PVCs deleted, waited until its pods and PVCs are gone).
        Returns what was destroyed and what `rebuild_from_backup` needs: `cluster`,
        `instances`, `server_name` and `archive` (the old archive), `destroyed_at`; CNPG also
        `manifest` (the Cluster as it was, without status)."""

    def rebuild_from_backup(
        self, backup: Backup, destroyed: dict | None = None, *, timeout: float
    ) -> RestoreResult:
        """Rebuild the destroyed cluster under its own name from `backup` of its OLD archive:
        WAL replayed from the old serverName to the end of the archive, promotion, archiving
        into a NEW serverName (never the old folder, which must stay as the destroyed
        cluster left it), replicas re-created from the new primary; wait until healthy.
        `destroyed` is what `destroy_cluster` returned. The result's instance is the new
        primary; from then on `archive`, `list_backups` and `backup` use the new serverName."""

    def corrupt_page(self, table: str, database: str) -> dict:
        """Overwrite bytes of one on-disk page of `table` on the primary, evict it from
        cache, and report whether PostgreSQL detects it (data checksums)."""

    def backup(self, *, timeout: float) -> Backup:
        """Take a base backup to the object store and wait until it completes."""

    def list_backups(self) -> list[Backup]:
        """Backups in the object store, oldest first."""

    def requeue_wal(self, segments: list[str]) -> tuple[str, dict[str, str]]:
        """Have the primary's PostgreSQL archive these WAL segments again, if its pg_wal
        still holds them (pgdrill.pg.archive_status.REQUEUE_SCRIPT, run with its PGDATA):
        (the primary's name, segment -> requeued/queued/marked/absent/unreported)."""

    def restore(self, backup: Backup, target: RecoveryTarget, *, timeout: float) -> RestoreResult:
        """Restore `backup` into the isolated restore-test target and wait until it is up."""

    def restored_instance(self) -> Instance | None:
        """The restore-test instance if one exists."""

    def restore_isolation(self) -> tuple[str, str, str, bool]:
        """How restore-test is kept from writing into the source's archive, checked on the
        running copy: (what was read, expected, actual, isolated)."""

    def wait_ready(
        self, *, timeout: float, since: float | None = None, disturbed: bool = False
    ) -> HealReport:
        """Wait until the cluster has a writable primary and all instances healthy.
        `disturbed`: the fault took an instance down, so health must be observed after it
        (a target reading a stored status must see it leave healthy first)."""

    def cleanup_restore(self) -> None:
        """Remove the restore-test instance and its storage (idempotent)."""

    def archive(self) -> str:
        """The source's backup path as a URL, `<destinationPath>/<serverName>/`."""

    def s3_credentials(self):
        """The object store's credentials (pgdrill.credentials.secret.S3Credentials), decrypted
        from the SOPS file; never printed."""

    def backup_destination(self) -> str:
        """Where the backups are, for messages: bucket (destinationPath) and serverName."""

    def bucket_location(self):
        """The source's archive as pgdrill.credentials.location.BucketLocation (destinationPath,
        serverName, endpoint, credentials), for reading the bucket directly with boto3."""

    def find_restore_point(self, name: str, since_lsn: str) -> str | None:
        """The LSN of the first restore point record named exactly `name` at or after
        `since_lsn` in the source's WAL, or None when that WAL holds none. Raises
        WalNotAvailable when the WAL since `since_lsn` cannot be read any more."""
