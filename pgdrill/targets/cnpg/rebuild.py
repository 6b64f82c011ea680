"""The cnpg target's cluster loss: the whole Cluster destroyed (the Cluster and all its PVCs),
then rebuilt from the bucket alone — a new Cluster under the same name, bootstrapped with
`bootstrap.recovery` from the old archive (`externalClusters[origin]`, old serverName) and
archiving under a new serverName (pgdrill.targets.cnpg.manifests.rebuild_manifest). Needs the
cluster-loss Role on top of the drills' RBAC (pgdrill.targets.cnpg.rbac.CLUSTER_LOSS_RULES)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pgdrill.core.console import say
from pgdrill.core.errors import TargetError
from pgdrill.core.model import Backup, RecoveryTarget, RestoreResult, Role
from pgdrill.core.waiting import poll_until
from pgdrill.targets.cnpg.kube import (
    CNPG_GROUP,
    CNPG_VERSION,
    PLUGIN_GROUP,
    PLUGIN_VERSION,
    NotFound,
)
from pgdrill.targets.cnpg.manifests import (
    archives_into,
    read_source,
    rebuild_manifest,
    rebuilt_server_name,
    validate_manifest,
)
from pgdrill.targets.cnpg.restore import restore_phases, wait_recovered

GONE_TIMEOUT_S = 300


class CnpgRebuild:
    """Mixed into CnpgTarget (pgdrill.targets.cnpg.target), whose state it uses: config,
    kube, and the instance/connection helpers."""

    def destroy_cluster(self) -> dict:
        """Delete the Cluster, kill its pods at once (grace 0: a disaster, not a graceful
        shutdown) and delete all its PVCs (listed first: deleting the Cluster may
        garbage-collect them or not), then wait until no pod or PVC of it is left."""
        ns, name = self.config.namespace, self.config.cluster
        cluster = self._cluster()
        source = self.source(cluster)
        selector = f"cnpg.io/cluster={name}"
        pods = [p["metadata"]["name"] for p in self.kube.pods(ns, selector)]
        pvcs = [p["metadata"]["name"] for p in self.kube.pvcs(ns, selector)]
        manifest = {
            "apiVersion": cluster["apiVersion"],
            "kind": cluster["kind"],
            "metadata": cluster["metadata"],
            "spec": cluster.get("spec") or {},
        }
        self.kube.delete_custom(CNPG_GROUP, CNPG_VERSION, ns, "clusters", name)
        # A lost cluster stops at once. Deleted gracefully, CNPG's instances would first
        # smart-shut down for up to smartShutdownTimeout (180 s), still acknowledging writes
        # that never reach the archive: seen on the lab as 183 s of acknowledged writes lost,
        # which measures the deletion, not the disaster. So the pods are killed (grace 0)
        # right after the Cluster's deletion began, which keeps the operator from
        # recreating them.
        for pod in pods:
            try:
                self.kube.delete_pod(ns, pod, grace_period_seconds=0)
            except NotFound:
                pass
        for pvc in pvcs:
            self.kube.delete_pvc(ns, pvc)
        # the Cluster object too: its finalizer holds it until the operator is done, and a
        # rebuild refuses while a Cluster of that name exists
        poll_until(
            lambda: (
                not self.kube.pods(ns, selector)
                and not self.kube.pvcs(ns, selector)
                and self._cluster_or_none() is None
            ),
            timeout=GONE_TIMEOUT_S,
            interval=0.5,
            what=f"Cluster {ns}/{name}, its pods and PVCs to be gone",
        )
        # CNPG makes new <cluster>-app/-superuser Secrets for the rebuilt Cluster
        self._passwords = {k: v for k, v in self._passwords.items() if k[0] != ns}
        say(
            f"destroyed Cluster {ns}/{name}: the Cluster, its pods {', '.join(pods)} (killed, "
            f"grace 0) and PVCs {', '.join(pvcs)} are gone"
        )
        return {
            "cluster": name,
            "instances": pods,
            "pvcs": pvcs,
            "pod_grace_seconds": 0,
            "primary": (cluster.get("status") or {}).get("currentPrimary"),
            "server_name": source.server_name,
            "archive": source.archive,
            "destroyed_at": datetime.now(UTC).isoformat(),
            "manifest": manifest,
        }

    def rebuild_from_backup(
        self, backup: Backup, destroyed: dict | None = None, *, timeout: float = 900
    ) -> RestoreResult:
        """Create the rebuilding Cluster from the destroyed one's manifest and wait until
        CNPG reports it healthy and its primary accepts writes."""
        ns, name = self.config.namespace, self.config.cluster
        if not destroyed or not destroyed.get("manifest"):
            raise TargetError(
                "there is no destroyed Cluster to rebuild in this run",
                fix="run actions.faults.destroy_cluster first",
            )
        if self._cluster_or_none() is not None:
            raise TargetError(
                f"Cluster {ns}/{name} exists: a rebuild from the bucket "
                f"replaces a lost cluster, never a running one"
            )
        old_doc = destroyed["manifest"]
        store = self._object_store(old_doc)
        old = read_source(old_doc, store, namespace=ns)
        new_name = rebuilt_server_name(old.server_name, self._folder_taken(old))
        doc = validate_manifest(
            rebuild_manifest(old, old_doc, server_name=new_name, backup_id=backup.id)
        )
        if archives_into(doc, old, {old.object_store: store} if store else None):
            raise TargetError(f"the rebuilt Cluster would archive into {old.archive}")
        started_at, t0 = datetime.now(UTC), time.monotonic()
        say(
            f"rebuilding Cluster {ns}/{name} from backup {backup.id} of {old.archive}, "
            f"archiving under serverName {new_name}"
        )
        self.kube.create_custom(doc)
        seen = self._wait_rebuilt(timeout)
        instance = self._instance(self._primary_pod(), Role.PRIMARY)
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
            target=RecoveryTarget(),
            started_at=started_at,
            phases=restore_phases(seen, total),
            phase_details=seen,
        )

    def _cluster_or_none(self) -> dict | None:
        from pgdrill.core.errors import PreflightRefused

        try:
            return self._cluster()
        except PreflightRefused:
            return None

    def _object_store(self, cluster_doc: dict) -> dict | None:
        for plugin in (cluster_doc.get("spec") or {}).get("plugins") or []:
            store = (plugin.get("parameters") or {}).get("barmanObjectName")
            if store:
                return self.kube.get_custom(
                    PLUGIN_GROUP, PLUGIN_VERSION, self.config.namespace, "objectstores", store
                )
        return None

    def _folder_taken(self, old):
        """Whether a serverName's folder next to the old archive holds any object."""
        from pgdrill.credentials.s3client import s3_client, split_destination

        credentials = self.s3_credentials()
        client = s3_client(
            self.config.s3_endpoint(old.endpoint_url, credentials.endpoint),
            credentials,
            self.config.s3_options(),
        )
        bucket, prefix = split_destination(old.destination_path)

        def taken(server_name: str) -> bool:
            listing = client.list_objects_v2(
                Bucket=bucket, Prefix=f"{prefix}{server_name}/", MaxKeys=1
            )
            return listing.get("KeyCount", 0) > 0

        return taken

    def _primary_pod(self) -> dict:
        from pgdrill.targets.cnpg.status import primary_pod

        pod = primary_pod(self._cluster(), self._pods())
        if pod is None:
            raise TargetError(
                f"the rebuilt Cluster {self.config.cluster} is healthy but has no primary pod"
            )
        return pod

    def _wait_rebuilt(self, timeout: float) -> dict[str, float]:
        """The rebuilding Cluster, as restore-test's copy is waited for (wait_recovered).
        Returns the seconds spent in each phase."""
        _, seen = wait_recovered(
            self.kube,
            self.config.namespace,
            self.config.cluster,
            timeout,
            label="rebuilt",
            stuck_hint="a wrong serverName or an archive that is not "
            "empty keeps it in 'Setting up primary'",
        )
        return seen
