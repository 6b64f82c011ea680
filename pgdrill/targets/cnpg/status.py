"""Reading a CNPG Cluster's and its pods' state: pure functions over the JSON the API returns
(cnpg.md §6, §8, §9)."""

from __future__ import annotations

from pgdrill.core.model import Role
from pgdrill.core.times import parse_time
from pgdrill.targets.cnpg.manifests import _get

HEALTHY = "Cluster in healthy state"
UNRECOVERABLE = "Cluster is unrecoverable and needs manual intervention"


def condition(doc: dict, kind: str) -> dict | None:
    for cond in _get(doc, "status", "conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def pod_role(pod: dict) -> Role:
    labels = _get(pod, "metadata", "labels") or {}
    role = labels.get("cnpg.io/instanceRole") or labels.get("role")
    return Role.PRIMARY if role == "primary" else Role.REPLICA


def pod_ready(pod: dict) -> bool:
    if _get(pod, "metadata", "deletionTimestamp"):
        return False
    if _get(pod, "status", "phase") != "Running":
        return False
    ready = [c for c in _get(pod, "status", "conditions") or [] if c.get("type") == "Ready"]
    return bool(ready and ready[0].get("status") == "True")


def live_pods(pods: list[dict]) -> list[dict]:
    """Instance pods not being deleted, by name."""
    return sorted(
        (p for p in pods if not _get(p, "metadata", "deletionTimestamp")),
        key=lambda p: p["metadata"]["name"],
    )


def primary_pod(cluster: dict, pods: list[dict]) -> dict | None:
    """The pod CNPG names as current primary (status.currentPrimary) when it carries the
    primary label; else the one labelled primary; None during a failover."""
    current = _get(cluster, "status", "currentPrimary")
    labelled = [p for p in live_pods(pods) if pod_role(p) == Role.PRIMARY]
    for pod in labelled:
        if pod["metadata"]["name"] == current:
            return pod
    return labelled[0] if len(labelled) == 1 and not current else None


def unhealthy_reasons(cluster: dict) -> list[str]:
    """Why the Cluster is not healthy yet (empty when it is): phase, ready instances,
    a failover in progress, the Ready condition."""
    status = cluster.get("status") or {}
    reasons = []
    phase = status.get("phase")
    if phase != HEALTHY:
        reason = status.get("phaseReason")
        reasons.append(f"phase {phase!r}" + (f" ({reason})" if reason else ""))
    wanted = _get(cluster, "spec", "instances") or status.get("instances")
    if wanted is not None and status.get("readyInstances") != wanted:
        reasons.append(f"{status.get('readyInstances') or 0}/{wanted} instances ready")
    current, target = status.get("currentPrimary"), status.get("targetPrimary")
    if target and current != target:
        reasons.append(f"targetPrimary {target} is not the currentPrimary {current}")
    ready = condition(cluster, "Ready")
    if ready is None or ready.get("status") != "True":
        reasons.append(
            "condition Ready is "
            + (
                f"{ready.get('status')} ({ready.get('reason')}: {ready.get('message')})"
                if ready
                else "missing"
            )
        )
    return reasons


def pod_shortfall(cluster: dict, pods: list[dict]) -> list[str]:
    """What the live instance pods lack against `spec.instances`, read from the pods
    themselves rather than the status the operator wrote (perhaps before the fault)."""
    wanted = _get(cluster, "spec", "instances")
    ready = [p for p in pods if pod_ready(p)]
    reasons = []
    if wanted is not None and len(pods) != wanted:
        reasons.append(f"{len(pods)} live instance pods, spec.instances {wanted}")
    if len(ready) != len(pods):
        reasons.append(
            f"{len(pods) - len(ready)} instance pods not ready: "
            + ", ".join(p["metadata"]["name"] for p in pods if not pod_ready(p))
        )
    return reasons


def describe_conditions(cluster: dict) -> str:
    return (
        "; ".join(
            f"{c.get('type')}={c.get('status')} ({c.get('reason')})"
            for c in _get(cluster, "status", "conditions") or []
        )
        or "no conditions"
    )


def operator_failover(cluster: dict) -> dict:
    """The failover as the operator recorded it: targetPrimaryTimestamp (decided) to
    currentPrimaryTimestamp (the new primary running)."""
    status = cluster.get("status") or {}
    target_at = parse_time(status.get("targetPrimaryTimestamp"))
    current_at = parse_time(status.get("currentPrimaryTimestamp"))
    seconds = (
        round((current_at - target_at).total_seconds(), 3)
        if target_at and current_at and current_at >= target_at
        else None
    )
    return {
        "current_primary": status.get("currentPrimary"),
        "target_primary": status.get("targetPrimary"),
        "target_primary_timestamp": status.get("targetPrimaryTimestamp"),
        "current_primary_timestamp": status.get("currentPrimaryTimestamp"),
        "seconds": seconds,
        "timeline": status.get("timelineID"),
    }


def cluster_facts(cluster: dict) -> dict:
    """What evidence records about the source Cluster's HA settings (cnpg.md §9)."""
    spec = cluster.get("spec") or {}
    postgresql = spec.get("postgresql") or {}
    return {
        "instances": spec.get("instances"),
        "image": spec.get("imageName"),
        "failover_delay_seconds": spec.get("failoverDelay", 0),
        "switchover_delay_seconds": spec.get("switchoverDelay", 3600),
        "min_sync_replicas": spec.get("minSyncReplicas", 0),
        "max_sync_replicas": spec.get("maxSyncReplicas", 0),
        "synchronous": postgresql.get("synchronous"),
        "primary_update_strategy": spec.get("primaryUpdateStrategy"),
        "phase": _get(cluster, "status", "phase"),
        "timeline": _get(cluster, "status", "timelineID"),
    }
