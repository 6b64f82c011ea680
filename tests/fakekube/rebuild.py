"""The source Cluster destroyed and rebuilt, as the fake CNPG operator plays it (cluster-loss):

- deleted: the seeded Cluster carries this operator's finalizer, so that — as a kubelet stops
  the containers before their pods disappear — it stays `deleting` until the sandbox's real
  instances are destroyed (`SandboxTarget.destroy_cluster`: the supervisor told, every
  postmaster SIGKILLed, every data directory deleted, in a worker). Then the finalizer goes,
  and the store's garbage collection removes the pods, PVCs (the pvc-protection controller
  releases them), Secrets and Services;
- a new Cluster under the same name with `bootstrap.recovery`: the checks CNPG + barman would
  trip over (the externalClusters entry must read the sandbox's archive: same destinationPath,
  endpoint and serverName; credentials Secret in the namespace; an archive of its own that is
  not the old one — "Expected empty archive"), then Job `<name>-1-full-recovery` and a REAL
  rebuild (`SandboxTarget.rebuild_from_backup` into the Cluster's own serverName: restore,
  replay, promotion, archiving there, replica re-cloned), then pods, PVCs, Secrets, Services
  and a healthy status, as after seeding.

NOT emulated: a rebuilt Cluster with another number of instances, another bucket or endpoint
than the sandbox's, `bootstrap.recovery.backup`, recovery targets other than backupID."""

from __future__ import annotations

from concurrent.futures import Future

from pgdrill.targets.cnpg.catalog import split_destination
from pgdrill.targets.cnpg.manifests import archives_into, read_source

from .cnpg import PLUGIN, SETTING_UP, UNRECOVERABLE, deleting, message
from .kinds import CLUSTERS, OBJECT_STORES

FINALIZER = "fake.cnpg.io/instances"  # a test double's device, not CNPG's


class RebuildMixin:
    """A mixin of `FakeCnpgOperator` (operator.py): it uses the operator's state and helpers
    (`store`, `sandbox`, `source`, `pods`, `_down`, `_workers`, `_create`, `_patch_status`,
    `_condition`, `_log`, the seed's `_seed_instances`/`_secrets_and_services`/`_owned`, the
    recovery's `_credentials_problem`, ...) and keeps `_source_uid`, `_destroying`,
    `_rebuilding`."""

    def _reconcile_rebuild(self, sc) -> bool:
        """Destroy or rebuild the source Cluster; True while that is going on (then the usual
        failover/health reconcile must not run)."""
        cluster = self.store.get(CLUSTERS, self.namespace, self.cluster)
        if cluster is None:
            return True
        uid = cluster["metadata"]["uid"]
        if deleting(cluster):
            self._destroy(cluster)
            return True
        if uid == self._source_uid:
            return False
        recovery = ((cluster.get("spec") or {}).get("bootstrap") or {}).get("recovery")
        if not recovery:
            problem = "not emulated by the fake operator: a new source Cluster without recovery"
            self._patch_status(CLUSTERS, cluster, {"phase": SETTING_UP, "phaseReason": problem})
            return True
        work = self._rebuilding.get(uid)
        if work is None:
            self._start_rebuild(cluster)
        elif work.done():
            self._rebuild_done(cluster, work)
        return True

    def _destroy(self, cluster: dict) -> None:
        if self._destroying is None:
            self._log(
                f"Cluster {self.cluster} deleted: destroying every instance "
                f"({', '.join(self.pods.values())}) and its storage",
                level="warning",
            )
            self._destroying = self._workers.submit(self.sandbox.destroy_cluster)
            return
        if not self._destroying.done():
            return
        work, self._destroying = self._destroying, None
        if work.exception() is not None:
            self._log(
                f"destroying the instances failed: {message(work.exception())}", level="error"
            )
            return
        self.pods, self._down, self._source_uid = {}, {}, None
        finalizers = [f for f in cluster["metadata"].get("finalizers") or [] if f != FINALIZER]
        self.store.patch(
            CLUSTERS, self.namespace, self.cluster, {"metadata": {"finalizers": finalizers or None}}
        )
        self._log(f"Cluster {self.cluster} removed: its instances are destroyed")

    def _start_rebuild(self, cluster: dict) -> None:
        name = cluster["metadata"]["name"]
        problem, new_source = self._rebuild_problem(cluster)
        if problem:
            if (cluster.get("status") or {}).get("phaseReason") != problem:
                self._log(f"rebuild of {name}: {problem}", level="error")
            return self._patch_status(
                CLUSTERS, cluster, {"phase": SETTING_UP, "phaseReason": problem}
            )
        backup_id = (cluster["spec"]["bootstrap"]["recovery"].get("recoveryTarget") or {}).get(
            "backupID"
        )

        def run():
            backups = [
                b
                for b in self.sandbox.list_backups()
                if b.completed and (backup_id is None or b.id == backup_id)
            ]
            if not backups:
                raise LookupError(
                    f"no backup found with ID {backup_id}"
                    if backup_id
                    else "no target backup found"
                )
            return self.sandbox.rebuild_from_backup(
                backups[-1], timeout=self.restore_timeout, server_name=new_source.server_name
            )

        self._rebuilding[cluster["metadata"]["uid"]] = self._workers.submit(run)
        self._rebuild_sources[cluster["metadata"]["uid"]] = new_source
        self._start_recovery_job(cluster, instances=len(self.sandbox.layout.read().instances))
        self._log(
            f"rebuild of {name} started: job {name}-1-full-recovery, archiving under "
            f"serverName {new_source.server_name}"
        )

    def _rebuild_problem(self, cluster: dict):
        """(what would keep CNPG + barman from rebuilding it from the sandbox's archive, or
        None; the rebuilt Cluster's own archive)."""
        spec, ns = cluster["spec"], self.namespace
        recovery = spec["bootstrap"]["recovery"]
        state = self.sandbox.layout.read()
        if (spec.get("instances") or 1) != len(state.instances) or recovery.get("backup"):
            return (
                "not emulated by the fake operator: instances != the sandbox's, or recovery.backup"
            ), None
        ext = next(
            (
                e
                for e in spec.get("externalClusters") or []
                if e.get("name") == recovery.get("source")
            ),
            None,
        )
        if not recovery.get("source") or ext is None:
            return f"missing external cluster: {recovery.get('source')}", None
        stores = {s["metadata"]["name"]: s for s in self.store.list(OBJECT_STORES, ns)}
        if ext.get("plugin"):
            parameters = ext["plugin"].get("parameters") or {}
            if ext["plugin"].get("name") != PLUGIN:
                return f"requested plugin is not available: {ext['plugin'].get('name')}", None
            store = stores.get(parameters.get("barmanObjectName"))
            if store is None:
                return (
                    f'objectstores.barmancloud.cnpg.io "{parameters.get("barmanObjectName")}"'
                    f" not found in namespace {ns}"
                ), None
            config = (store.get("spec") or {}).get("configuration") or {}
            server = parameters.get("serverName") or cluster["metadata"]["name"]
        else:
            config = ext.get("barmanObjectStore") or {}
            server = config.get("serverName") or ext["name"]
        old = self.source
        if (
            (config.get("endpointURL") or "").rstrip("/") != old.endpoint_url.rstrip("/")
            or str(config.get("destinationPath") or "").rstrip("/")
            != old.destination_path.rstrip("/")
            or server != state.archive_server
        ):
            return (
                f"no target backup found under {config.get('destinationPath')}{server}/ "
                f"(serverName {server!r})"
            ), None
        problem = self._credentials_problem(config.get("s3Credentials") or {}, namespace=ns)
        if problem:
            return problem, None
        own = next(
            (
                p.get("parameters") or {}
                for p in spec.get("plugins") or []
                if p.get("name") == PLUGIN
            ),
            {},
        )
        try:
            new = read_source(cluster, stores.get(own.get("barmanObjectName") or ""))
        except Exception as exc:
            return f"invalid backup configuration: {message(exc)}", None
        if archives_into(cluster, old, stores):
            return (
                f"WAL archive check failed for server {new.server_name}: Expected empty archive"
            ), None
        if split_destination(new.destination_path) != split_destination(old.destination_path) or (
            new.endpoint_url or ""
        ) != (old.endpoint_url or ""):
            return (
                "not emulated by the fake operator: archiving outside the sandbox's bucket folder"
            ), None
        return None, new

    def _rebuild_done(self, cluster: dict, work: Future) -> None:
        uid, name = cluster["metadata"]["uid"], cluster["metadata"]["name"]
        if work.exception() is not None:
            if (cluster.get("status") or {}).get("phase") != UNRECOVERABLE:
                self._end_recovery_job(cluster, self.namespace, message(work.exception()))
            return
        result = work.result()
        self._end_recovery_job(cluster, self.namespace, None)
        from pgdrill.targets.sandbox.cluster import SandboxCluster

        sc = SandboxCluster(self.sandbox.layout, self.sandbox.layout.read(), self._run_as)
        self.source, self._source_uid = self._rebuild_sources.pop(uid), uid
        del self._rebuilding[uid]
        self.store.patch(
            CLUSTERS,
            self.namespace,
            name,
            {
                "metadata": {
                    "finalizers": [*(cluster["metadata"].get("finalizers") or []), FINALIZER]
                }
            },
        )
        self._secrets_and_services(self.store.get(CLUSTERS, self.namespace, name))
        self._seed_instances(sc, self.store.get(CLUSTERS, self.namespace, name))
        self._patch_status(
            CLUSTERS, self.store.get(CLUSTERS, self.namespace, name), {"phaseReason": None}
        )
        self._log(
            f"rebuild of {name} done: backup {result.backup.id} restored, "
            f"{self.pod_of(sc.state.primary_name)} is primary, archiving under "
            f"serverName {self.source.server_name}"
        )
