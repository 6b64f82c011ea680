"""The cnpg target's restore-test copy: created, waited for, found and removed (the
manifests and waits are in pgdrill.targets.cnpg.restore)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pgdrill.core.console import say
from pgdrill.core.errors import TargetError
from pgdrill.core.model import (
    Backup,
    Instance,
    RecoveryTarget,
    RestoreResult,
    Role,
)
from pgdrill.core.waiting import poll_until
from pgdrill.targets.cnpg.restore import (
    create_restore,
    remove_restore,
    restore_documents,
    restore_phases,
    wait_restored,
)
from pgdrill.targets.cnpg.status import (
    live_pods,
    pod_role,
)


def archive_destinations(cluster: dict) -> list[str]:
    """Where a Cluster archives its WAL: its in-tree object store and WAL-archiver plugins."""
    spec = cluster.get("spec") or {}
    found = []
    store = (spec.get("backup") or {}).get("barmanObjectStore") or {}
    if store:
        found.append(f"barmanObjectStore {store.get('destinationPath')}")
    for plugin in spec.get("plugins") or []:
        if plugin.get("isWALArchiver") and plugin.get("enabled", True):
            found.append(f"plugin {plugin.get('name')}")
    return found


class CnpgRestoreTest:
    """Mixed into CnpgTarget (pgdrill.targets.cnpg.target), whose state it uses: config,
    kube, and the instance/connection helpers."""

    def restore(
        self, backup: Backup, target: RecoveryTarget, *, timeout: float = 900
    ) -> RestoreResult:
        self.cleanup_restore()
        docs = restore_documents(self.config, self.source(), backup, target, self.s3_credentials())
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        say(
            f"restoring backup {backup.id} into {self.config.restore_namespace}/"
            f"{self.config.restore_cluster} up to {target.describe()}"
        )
        create_restore(self.kube, docs)
        _, seen = wait_restored(self.kube, self.config, timeout)
        instance = self.restored_instance()
        if instance is None:
            raise TargetError(
                f"the recovery Cluster {self.config.restore_cluster} is healthy but "
                f"has no primary pod"
            )
        poll_until(
            lambda: self._accepts(instance),
            timeout=60,
            interval=0.5,
            what=f"{instance.name} to accept connections",
        )
        total = round(time.monotonic() - t0, 3)
        return RestoreResult(
            instance=instance,
            backup=backup,
            target=target,
            started_at=started_at,
            phases=restore_phases(seen, total),
            phase_details=seen,
        )

    def _accepts(self, instance: Instance) -> bool:
        try:
            with self.connect(instance, "postgres") as conn:
                return conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]
        except TargetError:
            return False

    def restored_instance(self) -> Instance | None:
        ns = self.config.restore_namespace
        pods = live_pods(self.kube.pods(ns, self.config.restore_selector))
        primaries = [p for p in pods if pod_role(p) == Role.PRIMARY] or pods[:1]
        if not primaries:
            return None
        return self._instance(
            primaries[0],
            Role.RESTORE,
            namespace=ns,
            secret=f"{self.config.restore_cluster}-superuser",
        )

    def restore_isolation(self) -> tuple[str, str, str, bool]:
        """CNPG always runs with archive_mode on; what keeps the copy out of any bucket is
        its Cluster having no archive: read back from the API server (what it stored, not
        what pgdrill sent), neither spec.backup.barmanObjectStore nor a WAL-archiver plugin."""
        cluster = self.kube.cluster(self.config.restore_namespace, self.config.restore_cluster)
        found = archive_destinations(cluster)
        return (
            "archive destinations of the stored restore-test Cluster (spec.backup."
            "barmanObjectStore, spec.plugins[isWALArchiver])",
            "none",
            ", ".join(found) or "none",
            not found,
        )

    def cleanup_restore(self) -> None:
        removed = remove_restore(self.kube, self.config)
        self._passwords.pop(
            (self.config.restore_namespace, f"{self.config.restore_cluster}-superuser"), None
        )
        if removed:
            say(f"removed restore-test: {', '.join(removed)}")
