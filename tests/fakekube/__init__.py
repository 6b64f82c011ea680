"""Test doubles for the `cnpg` target: a fake Kubernetes API server (`apiserver`) and, from
another module, a thread playing the CNPG operator against its store."""

from .apiserver import (
    BACKUPS, CLUSTERS, CONFIGMAPS, EVENTS, JOBS, NAMESPACES, OBJECT_STORES, PODS, PVCS,
    SCHEDULED_BACKUPS, SECRETS, SERVICES, AlreadyExists, ApiError, Call, Conflict,
    FakeKubeServer, Kind, NotFound, Store, api_version, kind_name
)

__all__ = [
    "BACKUPS", "CLUSTERS", "CONFIGMAPS", "EVENTS", "JOBS", "NAMESPACES", "OBJECT_STORES", "PODS",
    "PVCS", "SCHEDULED_BACKUPS", "SECRETS", "SERVICES", "AlreadyExists", "ApiError", "Call",
    "Conflict", "FakeKubeServer", "Kind", "NotFound", "Store", "api_version", "kind_name",
]
