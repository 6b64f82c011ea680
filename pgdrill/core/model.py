"""Typed value objects shared by every target: instances, backups, recovery targets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum

from pgdrill.core.errors import BadInput


class Role(StrEnum):
    PRIMARY = "primary"
    REPLICA = "replica"
    RESTORE = "restore-test"


@dataclass(frozen=True)
class Instance:
    """One PostgreSQL instance a drill can connect to: where (host, port, dbname, sslmode),
    as whom (user) and where that user's password comes from (`password_source`, e.g.
    "secret staging/app-db-superuser", or None when the target needs none). The password itself
    is never part of an Instance: only `Target.connect` reads it, so no evidence holds it."""

    name: str
    role: Role
    host: str
    port: int
    dbname: str = "app"
    user: str = "postgres"
    sslmode: str | None = None
    password_source: str | None = None

    def conninfo(self, dbname: str | None = None) -> str:
        """libpq keywords without a password (the target adds it at connect time)."""
        sslmode = f" sslmode={self.sslmode}" if self.sslmode else ""
        return (
            f"host={self.host} port={self.port} dbname={dbname or self.dbname} "
            f"user={self.user} connect_timeout=5{sslmode}"
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["role"] = str(self.role)
        return data


@dataclass(frozen=True)
class LoadConnection:
    """Where a load generator sends its writes: a libpq connection string that always lands
    on the primary (multi-host with target_session_attrs, or a service), plus environment
    variables for it (PGPASSWORD). `repr` hides the environment: it may hold a password."""

    conninfo: str
    env: dict[str, str] = field(default_factory=dict, repr=False)


BACKUP_COMPLETED, BACKUP_FAILED, BACKUP_RUNNING = "completed", "failed", "running"
_BACKUP_PHASES = {
    "done": BACKUP_COMPLETED,
    "completed": BACKUP_COMPLETED,
    "failed": BACKUP_FAILED,
    "walarchivingfailing": BACKUP_FAILED,
    "invalid backup definition": BACKUP_FAILED,
}


def backup_phase(status: str | None) -> str:
    """Map a target's native backup status to the neutral completed/failed/running."""
    return _BACKUP_PHASES.get(str(status or "").strip().lower(), BACKUP_RUNNING)


@dataclass(frozen=True)
class Backup:
    """A base backup in the object store, as barman-cloud describes it.

    `begin_lsn`/`end_lsn` are the WAL positions the backup starts and ends at (e.g.
    "0/5000028"); `size` is the bytes the backup occupies in the object store (its compressed
    archives plus backup.info), None when unknown."""

    id: str
    status: str
    begin_time: datetime | None
    end_time: datetime | None
    begin_wal: str | None = None
    end_wal: str | None = None
    timeline: int | None = None
    name: str | None = None
    begin_lsn: str | None = None
    end_lsn: str | None = None
    size: int | None = None

    @property
    def phase(self) -> str:
        """The target-neutral state: "completed", "failed" or "running" (barman-cloud's
        DONE/FAILED/STARTED…, CNPG's Backup `status.phase` completed/failed/running…)."""
        return backup_phase(self.status)

    @property
    def completed(self) -> bool:
        return self.phase == BACKUP_COMPLETED

    def to_dict(self) -> dict:
        """JSON-ready fields (times as ISO-8601)."""
        return {
            "id": self.id,
            "status": self.status,
            "phase": self.phase,
            "begin_time": self.begin_time.isoformat() if self.begin_time else None,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "begin_wal": self.begin_wal,
            "end_wal": self.end_wal,
            "timeline": self.timeline,
            "name": self.name,
            "begin_lsn": self.begin_lsn,
            "end_lsn": self.end_lsn,
            "size": self.size,
        }


@dataclass(frozen=True)
class RecoveryTarget:
    """Where WAL replay stops: the end of the archive ("latest"), a time, an LSN or a named
    restore point. At most one may be set, as CNPG's admission webhook also demands."""

    time: datetime | None = None
    lsn: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        chosen = [k for k in ("time", "lsn", "name") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise BadInput(
                f"only one recovery target may be set, got {', '.join(chosen)}",
                fix="pass one of target_time, target_lsn or restore_point",
            )
        if self.time is not None and self.time.tzinfo is None:
            raise BadInput(
                f"recovery target time {self.time.isoformat()} has no timezone",
                fix="use an ISO-8601 time with an offset, e.g. 2026-11-24T10:00:00+00:00",
            )

    @property
    def kind(self) -> str:
        if self.time is not None:
            return "time"
        if self.lsn is not None:
            return "lsn"
        if self.name is not None:
            return "restore_point"
        return "latest"

    def describe(self) -> str:
        if self.kind == "latest":
            return "the end of the archive"
        value = {
            "time": self.time and self.time.isoformat(),
            "lsn": self.lsn,
            "restore_point": self.name,
        }[self.kind]
        return f"{self.kind.replace('_', ' ')} {value}"

    @classmethod
    def parse(
        cls,
        target_time: str | None = None,
        target_lsn: str | None = None,
        restore_point: str | None = None,
    ) -> RecoveryTarget:
        when = None
        if target_time:
            try:
                when = datetime.fromisoformat(target_time)
            except ValueError as exc:
                raise BadInput(
                    f"target_time {target_time!r} is not an ISO-8601 time",
                    fix="use e.g. 2026-11-24T10:00:00+00:00",
                ) from exc
        return cls(time=when, lsn=target_lsn or None, name=restore_point or None)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "time": self.time.isoformat() if self.time else None,
            "lsn": self.lsn,
            "name": self.name,
        }


# Restore phases every target reports, in seconds (their sum plus validation is the RTO):
RESTORE_PHASE = "restore"  # request -> the copy promoted: base backup fetched, WAL replayed
READY_PHASE = "ready"  # promoted -> accepting connections and reported healthy


@dataclass
class RestoreResult:
    """A restored copy that is up and accepting connections (not yet validated).

    `phases` has the neutral keys RESTORE_PHASE and READY_PHASE; `phase_details` what the
    target itself can tell apart (the sandbox: download, configure, replay; CNPG: the
    recovery Job and the Cluster's phases), for people reading the evidence."""

    instance: Instance
    backup: Backup
    target: RecoveryTarget
    started_at: datetime
    phases: dict[str, float] = field(default_factory=dict)
    phase_details: dict[str, float] = field(default_factory=dict)


@dataclass
class HealReport:
    """How the cluster came back after a fault."""

    writable_primary_seconds: float
    healthy_seconds: float
    primary: str
    instances: list[Instance]
    # what the target itself recorded (CNPG: the operator's failover timestamps, HA settings)
    details: dict = field(default_factory=dict)
