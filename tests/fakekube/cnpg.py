"""What the fake CNPG operator's modules share: CNPG's API versions and plugin name, the
phase texts it writes, the names of its install, its timestamp formats, and small helpers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

CNPG_API, PLUGIN_API, PLUGIN = (
    "postgresql.cnpg.io/v1",
    "barmancloud.cnpg.io/v1",
    "barman-cloud.cloudnative-pg.io",
)
HEALTHY, FAILING_OVER = "Cluster in healthy state", "Failing over"
NEW_REPLICA, WAITING = "Creating a new replica", "Waiting for the instances to become active"
SETTING_UP = "Setting up primary"
UNRECOVERABLE = "Cluster is unrecoverable and needs manual intervention"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
OPERATOR_NS, OPERATOR_POD = "cnpg-system", "cnpg-controller-manager-6b9f78f594-x7k2p"
DONE_BACKUP = ("completed", "failed", "walArchivingFailing", "invalid backup definition")
TIMELINE_SQL = "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"


def micro(when: datetime | None = None) -> str:
    """CNPG's status timestamps: RFC 3339 with microseconds."""
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds(when: datetime | None = None) -> str:
    """metav1.Time: RFC 3339, whole seconds."""
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deleting(obj: dict | None) -> bool:
    return bool(obj and obj["metadata"].get("deletionTimestamp"))


def lsn_value(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def message(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


def b64(values: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
