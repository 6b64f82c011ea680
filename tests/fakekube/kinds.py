"""The kinds the fake Kubernetes API server knows: `Kind` = (group, version, plural), the
constants for the kinds pgdrill touches, their `kind` names, API versions and scopes, and
which of them have a `/status` subresource."""

from __future__ import annotations

Kind = tuple[str, str, str]  # (group, version, plural); the core group is ""
NAMESPACES: Kind = ("", "v1", "namespaces")
PODS: Kind = ("", "v1", "pods")
PVCS: Kind = ("", "v1", "persistentvolumeclaims")
SECRETS: Kind = ("", "v1", "secrets")
SERVICES: Kind = ("", "v1", "services")
EVENTS: Kind = ("", "v1", "events")
CONFIGMAPS: Kind = ("", "v1", "configmaps")
JOBS: Kind = ("batch", "v1", "jobs")
CLUSTERS: Kind = ("postgresql.cnpg.io", "v1", "clusters")
BACKUPS: Kind = ("postgresql.cnpg.io", "v1", "backups")
SCHEDULED_BACKUPS: Kind = ("postgresql.cnpg.io", "v1", "scheduledbackups")
OBJECT_STORES: Kind = ("barmancloud.cnpg.io", "v1", "objectstores")
KNOWN_KINDS = (
    NAMESPACES,
    PODS,
    PVCS,
    SECRETS,
    SERVICES,
    EVENTS,
    CONFIGMAPS,
    JOBS,
    CLUSTERS,
    BACKUPS,
    SCHEDULED_BACKUPS,
    OBJECT_STORES,
)

KIND_NAMES = {
    "namespaces": "Namespace",
    "pods": "Pod",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "secrets": "Secret",
    "services": "Service",
    "events": "Event",
    "configmaps": "ConfigMap",
    "jobs": "Job",
    "clusters": "Cluster",
    "backups": "Backup",
    "scheduledbackups": "ScheduledBackup",
    "objectstores": "ObjectStore",
}
CLUSTER_SCOPED = frozenset(
    {
        "namespaces",
        "nodes",
        "persistentvolumes",
        "storageclasses",
        "clusterroles",
        "clusterrolebindings",
        "customresourcedefinitions",
    }
)
# kinds whose status is a subresource: HTTP writes to the main resource leave status alone and
# HTTP creates drop it (the in-process Store may change anything)
STATUS_SUBRESOURCE = frozenset(
    {NAMESPACES, PODS, PVCS, SERVICES, JOBS, CLUSTERS, BACKUPS, SCHEDULED_BACKUPS, OBJECT_STORES}
)


def kind_name(kind: Kind) -> str:
    """The `kind` of objects of this (group, version, plural), e.g. "Pod"."""
    plural = kind[2]
    if plural in KIND_NAMES:
        return KIND_NAMES[plural]
    singular = plural[:-3] + "y" if plural.endswith("ies") else plural.removesuffix("s")
    return singular[:1].upper() + singular[1:]


def api_version(kind: Kind) -> str:
    return f"{kind[0]}/{kind[1]}" if kind[0] else kind[1]


def is_namespaced(kind: Kind) -> bool:
    return kind[2] not in CLUSTER_SCOPED


def resource_name(kind: Kind) -> str:
    """How the API names the resource in messages: "pods", "clusters.postgresql.cnpg.io"."""
    return f"{kind[2]}.{kind[0]}" if kind[0] else kind[2]
