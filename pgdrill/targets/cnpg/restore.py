"""Restore into restore-test on CNPG: a new Cluster bootstrapped with `bootstrap.recovery` from
the source's archive (pgdrill.targets.cnpg.manifests), the S3 credentials Secret
`<restore cluster>-backup-s3` created there from the SOPS file, waited for until "Cluster in
healthy state" + Ready, and removed again —
Cluster, PVCs, Secret and ObjectStore copy."""

from __future__ import annotations

import time
from pathlib import Path

from pgdrill.core.console import say
from pgdrill.core.errors import DeadlineExceeded, TargetError
from pgdrill.core.model import READY_PHASE, RESTORE_PHASE, Backup, RecoveryTarget
from pgdrill.core.waiting import poll_until
from pgdrill.credentials.secret import S3Credentials, secret_manifest
from pgdrill.targets.cnpg.config import CnpgConfig
from pgdrill.targets.cnpg.kube import (
    CNPG_GROUP,
    CNPG_VERSION,
    PLUGIN_GROUP,
    PLUGIN_VERSION,
    Kube,
)
from pgdrill.targets.cnpg.manifests import (
    ENDPOINT_CA_KEY,
    SourceCluster,
    restore_manifests,
    restore_requirements,
    restore_secret_name,
    validate_manifest,
)
from pgdrill.targets.cnpg.status import HEALTHY, UNRECOVERABLE, unhealthy_reasons


def restore_documents(
    config: CnpgConfig,
    source: SourceCluster,
    backup: Backup,
    recovery: RecoveryTarget,
    credentials: S3Credentials,
) -> list[dict]:
    """Every object the restore creates, validated: the Secret, then (plugin) the ObjectStore
    copy and the recovery Cluster."""
    values = {
        "ACCESS_KEY_ID": credentials.access_key_id,
        "ACCESS_SECRET_KEY": credentials.secret_access_key,
        "BUCKET": credentials.bucket,
        "ENDPOINT": credentials.endpoint,
        "REGION": credentials.region,
    }
    restore_requirements(
        source, ca_bundle=config.s3_ca_bundle, iam_role_from_node=config.restore_iam_role_from_node
    )
    if source.endpoint_ca:  # the source's endpointCA Secret lives in its own namespace
        values[ENDPOINT_CA_KEY] = Path(config.s3_ca_bundle).read_text()
    secret = secret_manifest(
        values, name=restore_secret_name(config.restore_cluster), namespace=config.restore_namespace
    )
    secret["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "pgdrill"}
    docs = restore_manifests(
        source,
        recovery,
        namespace=config.restore_namespace,
        name=config.restore_cluster,
        backup_id=backup.id,
    )
    for doc in docs:
        validate_manifest(doc)
    return [secret, *docs]


def create_restore(kube: Kube, docs: list[dict]) -> None:
    for doc in docs:
        if doc["kind"] == "Secret":
            kube.create_secret(doc)
        else:
            kube.create_custom(doc)


def wait_recovered(
    kube: Kube, namespace: str, name: str, timeout: float, *, label: str, stuck_hint: str
) -> tuple[dict, dict[str, float]]:
    """Poll a Cluster bootstrapping by recovery (restore-test's copy, or a rebuilt cluster)
    until healthy and Ready; show each phase change as "  <label> <name>: <phase>". Fails at
    once when CNPG declares it unrecoverable, and names the phase and its reasons when the
    deadline passes (`stuck_hint` ends the fix). Returns the Cluster and the seconds spent in
    each phase."""
    t0 = time.monotonic()
    seen: dict[str, float] = {}
    last = {"phase": None, "at": t0}
    where = f"{namespace}/{name}"

    def healthy() -> dict | None:
        cluster = kube.cluster(namespace, name)
        status = cluster.get("status") or {}
        phase = status.get("phase") or "pending"
        now = time.monotonic()
        if phase != last["phase"]:
            if last["phase"] is not None:
                seen[last["phase"]] = round(seen.get(last["phase"], 0) + now - last["at"], 3)
            last.update(phase=phase, at=now)
            reason = status.get("phaseReason")
            say(f"  {label} {name}: {phase}" + (f" ({reason})" if reason else ""))
        if phase == UNRECOVERABLE:
            raise TargetError(
                f"CNPG gave up on the {label} Cluster {where}: "
                f"{status.get('phaseReason') or phase}",
                fix="read the recovery Job's log (saved in the run folder) and the operator's",
            )
        return cluster if not unhealthy_reasons(cluster) else None

    try:
        cluster = poll_until(
            healthy, timeout=timeout, interval=0.5, what=f"{label} Cluster {where} to be healthy"
        )
    except DeadlineExceeded:
        cluster = kube.cluster(namespace, name)
        raise TargetError(
            f"the {label} Cluster {where} is not healthy after {timeout:.0f}s: "
            + "; ".join(unhealthy_reasons(cluster)),
            fix=f"read the recovery Job's and the operator's logs; {stuck_hint}",
        ) from None
    seen[last["phase"]] = round(seen.get(last["phase"], 0) + time.monotonic() - last["at"], 3)
    return cluster, seen


def wait_restored(kube: Kube, config: CnpgConfig, timeout: float) -> tuple[dict, dict[str, float]]:
    """restore-test's recovery Cluster (wait_recovered)."""
    return wait_recovered(
        kube,
        config.restore_namespace,
        config.restore_cluster,
        timeout,
        label="recovery",
        stuck_hint="a wrong serverName or credentials Secret keeps it in 'Setting up primary'",
    )


def restore_phases(seen: dict[str, float], total: float) -> dict[str, float]:
    """Neutral phases from the Cluster phases observed: everything before the copy came up
    healthy is `restore` (CNPG runs base backup restore and WAL replay in its recovery Job);
    the remainder up to Ready is `ready`."""
    ready = round(max(0.0, total - sum(v for k, v in seen.items() if k != HEALTHY)), 3)
    return {RESTORE_PHASE: round(total - ready, 3), READY_PHASE: ready}


def remove_restore(kube: Kube, config: CnpgConfig, *, timeout: float = 300) -> list[str]:
    """Delete the recovery Cluster, its PVCs, the copied Secret and ObjectStore; wait until its
    pods are gone. Idempotent; returns what was deleted."""
    ns, name = config.restore_namespace, config.restore_cluster
    removed = []
    # listed first: deleting the Cluster may garbage-collect them (ownerReferences) or not
    pvcs = [pvc["metadata"]["name"] for pvc in kube.pvcs(ns, f"cnpg.io/cluster={name}")]
    if kube.delete_custom(CNPG_GROUP, CNPG_VERSION, ns, "clusters", name):
        removed.append(f"Cluster {ns}/{name}")
    for pvc in pvcs:
        if kube.delete_pvc(ns, pvc):
            removed.append(f"PVC {pvc}")
    if kube.delete_custom(PLUGIN_GROUP, PLUGIN_VERSION, ns, "objectstores", f"{name}-origin"):
        removed.append(f"ObjectStore {name}-origin")
    secret = restore_secret_name(name)
    if kube.delete_secret(ns, secret):
        removed.append(f"Secret {secret}")
    # the next restore must not meet a terminating PVC or an old Secret of the same name
    # (garbage collection of what the Cluster owned is asynchronous): wait for all of it
    selector = f"cnpg.io/cluster={name}"
    secrets = [f"{name}-{suffix}" for suffix in OPERATOR_SECRETS]

    def gone() -> bool:
        return (
            not kube.pods(ns, selector)
            and not kube.pvcs(ns, selector)
            and not any(kube.secret_exists(ns, s) for s in secrets)
        )

    poll_until(
        gone,
        timeout=timeout,
        interval=0.5,
        what=f"the pods, PVCs and Secrets of {ns}/{name} to go away",
    )
    return removed


# the Secrets CNPG makes for a Cluster (owned by it: garbage-collected after it is deleted)
OPERATOR_SECRETS = ("app", "superuser", "ca", "replication", "server")
