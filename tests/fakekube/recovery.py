"""Recovery Clusters as the fake CNPG operator plays them, in the restore namespace: the
checks CNPG + barman would trip over (external cluster, archive location, serverName,
credentials Secret, an archiver of its own), then Job `<name>-1-full-recovery` and a REAL
restore into the sandbox's restore-test (run in a worker), then the recovered pod, PVC,
Secrets, Services and a healthy status; deleted: restore-test removed."""

from __future__ import annotations

import base64
from concurrent.futures import Future
from datetime import UTC, datetime

import psycopg

from pgdrill.core.model import RecoveryTarget
from pgdrill.targets.cnpg.catalog import split_destination
from pgdrill.targets.cnpg.manifests import archives_into

from .cnpg import (
    HEALTHY,
    PLUGIN,
    SETTING_UP,
    TIMELINE_SQL,
    UNRECOVERABLE,
    deleting,
    lsn_value,
    message,
    micro,
    seconds,
)
from .kinds import CLUSTERS, JOBS, OBJECT_STORES, PODS, PVCS, SECRETS


class RecoveryMixin:
    """The recovery Clusters. A mixin of `FakeCnpgOperator` (operator.py): it uses the
    operator's state and helpers (`store`, `sandbox`, `source`, `_restores`, `_workers`,
    `_done`, `_create`, `_patch_status`, `_condition`, `_log`, the seed's `_pvc`/`_pod`, ...)."""

    def _reconcile_recoveries(self) -> None:
        ns = self.restore_namespace
        live = {
            c["metadata"]["uid"]: c
            for c in self.store.list(CLUSTERS, ns)
            if not deleting(c) and (c.get("spec") or {}).get("bootstrap", {}).get("recovery")
        }
        for uid, (name, work) in list(self._restores.items()):
            if uid not in live and work.done():
                self.sandbox.cleanup_restore()
                del self._restores[uid]
                self._log(
                    f"recovery Cluster {name} deleted: restore-test removed",
                    namespace=ns,
                    cluster=name,
                )
        for uid, cluster in live.items():
            if uid not in self._restores:
                self._start_recovery(cluster)
            elif self._done(uid, self._restores[uid][1]):
                self._recovery_done(cluster, self._restores[uid][1])

    def _start_recovery(self, cluster: dict) -> None:
        name, ns = cluster["metadata"]["name"], self.restore_namespace
        busy = next((n for n, _ in self._restores.values()), None)
        problem = self._recovery_problem(cluster) or (
            busy and f"the fake operator has one restore-test instance, in use by {busy}"
        )
        if problem:
            if (cluster.get("status") or {}).get("phaseReason") != problem:
                self._log(
                    f"recovery of {name}: {problem}", level="error", namespace=ns, cluster=name
                )
            return self._patch_status(
                CLUSTERS,
                cluster,
                {"phase": SETTING_UP, "phaseReason": problem, "instances": 1, "readyInstances": 0},
            )
        self._restores[cluster["metadata"]["uid"]] = (
            name,
            self._workers.submit(self._restore_fn(cluster)),
        )
        job = self._start_recovery_job(cluster, instances=1, latestGeneratedNode=1)
        self._log(f"recovery of {name} started: job {job}", namespace=ns, cluster=name)

    # -- the recovery Job, as CNPG runs one for every bootstrap.recovery (restore-test's
    # copy here, a rebuilt cluster in rebuild.py) ---------------------------------------
    def _start_recovery_job(self, cluster: dict, *, instances: int, **status) -> str:
        """Job `<name>-1-full-recovery` (active) and the Cluster "Creating primary
        instance"; returns the Job's name."""
        name = cluster["metadata"]["name"]
        job = f"{name}-1-full-recovery"
        self._create(
            JOBS,
            {
                "metadata": self._owned(
                    cluster,
                    job,
                    {"cnpg.io/jobRole": "full-recovery", "cnpg.io/instanceName": f"{name}-1"},
                ),
                "spec": {
                    "backoffLimit": 6,
                    "template": {
                        "spec": {"containers": [{"name": "full-recovery", "image": self.image}]}
                    },
                },
                "status": {"active": 1, "startTime": seconds()},
            },
        )
        self._patch_status(
            CLUSTERS,
            cluster,
            {
                "phase": SETTING_UP,
                "phaseReason": f"Creating primary instance {name}-1",
                "instances": instances,
                "readyInstances": 0,
                **status,
                "conditions": [
                    self._condition(
                        None, "Ready", False, "ClusterIsNotReady", "Cluster Is Not Ready"
                    )
                ],
            },
        )
        return job

    def _end_recovery_job(self, cluster: dict, namespace: str, error: str | None) -> None:
        """The Job succeeded, or (`error`) failed with its retries spent: then CNPG gives the
        Cluster up (phase UNRECOVERABLE) and the operator logs why."""
        name = cluster["metadata"]["name"]
        job = self.store.get(JOBS, namespace, f"{name}-1-full-recovery")
        if error is None:
            if job:
                self._patch_status(
                    JOBS,
                    job,
                    {
                        "active": None,
                        "succeeded": 1,
                        "completionTime": seconds(),
                        "conditions": [
                            {"type": "Complete", "status": "True", "lastTransitionTime": seconds()}
                        ],
                    },
                )
            return
        self._log(
            f"job {name}-1-full-recovery failed: {error}",
            level="error",
            namespace=namespace,
            cluster=name,
        )
        if job:
            self._patch_status(
                JOBS,
                job,
                {
                    "active": None,
                    "failed": 1,
                    "conditions": [
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": "BackoffLimitExceeded",
                            "message": error,
                        }
                    ],
                },
            )
        self._patch_status(
            CLUSTERS,
            cluster,
            {
                "phase": UNRECOVERABLE,
                "phaseReason": (
                    f"Instance creation failed for the following jobs: {name}-1-full-recovery"
                ),
            },
        )

    def _recovery_problem(self, cluster: dict) -> str | None:
        """What would keep CNPG + barman from recovering this Cluster from the sandbox's
        archive (§4, §5), or None."""
        spec, name, ns = cluster["spec"], cluster["metadata"]["name"], self.restore_namespace
        recovery = spec["bootstrap"]["recovery"]
        if (spec.get("instances") or 1) != 1 or recovery.get("backup"):
            return "not emulated by the fake operator: instances != 1 or recovery.backup"
        ext = next(
            (
                e
                for e in spec.get("externalClusters") or []
                if e.get("name") == recovery.get("source")
            ),
            None,
        )
        if not recovery.get("source") or ext is None:
            return f"missing external cluster: {recovery.get('source')}"
        stores = {s["metadata"]["name"]: s for s in self.store.list(OBJECT_STORES, ns)}
        if ext.get("plugin"):
            if ext["plugin"].get("name") != PLUGIN:
                return f"requested plugin is not available: {ext['plugin'].get('name')}"
            parameters = ext["plugin"].get("parameters") or {}
            store = stores.get(parameters.get("barmanObjectName"))
            if store is None:
                return (
                    f'objectstores.barmancloud.cnpg.io "{parameters.get("barmanObjectName")}"'
                    f" not found in namespace {ns}"
                )
            config = (store.get("spec") or {}).get("configuration") or {}
            server = parameters.get("serverName") or name  # plugin default: own name (§5)
        else:
            config = ext.get("barmanObjectStore") or {}
            server = config.get("serverName") or ext["name"]  # in-tree default: entry name
        dest, src = str(config.get("destinationPath") or ""), self.source
        if (config.get("endpointURL") or "").rstrip("/") != src.endpoint_url.rstrip("/"):
            return f"cannot reach the object store at {config.get('endpointURL')!r}"
        bucket = split_destination(dest)[0]
        if bucket != split_destination(src.destination_path)[0]:
            return f"barman-cloud: bucket {bucket!r} does not exist"
        if dest.rstrip("/") != src.destination_path.rstrip("/") or server != src.server_name:
            return (
                f"no target backup found under {dest.rstrip('/')}/{server}/ (serverName {server!r})"
            )
        problem = self._credentials_problem(config.get("s3Credentials") or {})
        if problem:
            return problem
        if archives_into(cluster, src, stores):
            return f"WAL archive check failed for server {server}: Expected empty archive"
        if (spec.get("backup") or {}).get("barmanObjectStore") or spec.get("plugins"):
            return "not emulated by the fake operator: a recovered cluster archiving WAL"
        return None

    def _credentials_problem(self, creds: dict, namespace: str | None = None) -> str | None:
        """The Secret keys exist in `namespace` (default: the restore namespace) and hold the
        store's credentials."""
        namespace = namespace or self.restore_namespace
        expected = {
            "accessKeyId": self._credentials.access_key_id,
            "secretAccessKey": self._credentials.secret_access_key,
            "region": None,
        }
        for field, value in expected.items():
            selector = creds.get(field) or {}
            secret = self.store.get(SECRETS, namespace, selector.get("name") or "")
            if secret is None:
                return (
                    f"s3Credentials.{field}: secret {selector.get('name')!r} not found in "
                    f"{namespace}"
                )
            data = secret.get("data") or {}
            if selector.get("key") not in data:
                return f'missing key "{selector.get("key")}" in secret {selector["name"]}'
            if value is not None and base64.b64decode(data[selector["key"]]).decode() != value:
                return f"barman-cloud: the object store rejects {field} from {selector['name']}"
        return None

    def _restore_fn(self, cluster: dict):
        doc = cluster["spec"]["bootstrap"]["recovery"].get("recoveryTarget") or {}

        def run():
            odd = [k for k in ("targetXID", "targetImmediate", "targetTLI") if doc.get(k)]
            if odd:
                raise ValueError(f"{', '.join(odd)}: not emulated by the fake operator")
            when = doc.get("targetTime") and datetime.fromisoformat(
                doc["targetTime"].replace("Z", "+00:00")
            )
            if when and when.tzinfo is None:  # no timezone: UTC (§4)
                when = when.replace(tzinfo=UTC)
            target = RecoveryTarget(
                time=when or None, lsn=doc.get("targetLSN"), name=doc.get("targetName")
            )
            backup = self._choose_backup(doc.get("backupID"), target)
            self._log(
                f"restoring backup {backup.id} to {target.describe()}",
                namespace=self.restore_namespace,
                cluster=cluster["metadata"]["name"],
            )
            result = self.sandbox.restore(backup, target, timeout=self.restore_timeout)
            with psycopg.connect(result.instance.conninfo("postgres")) as conn:
                return result, conn.execute(TIMELINE_SQL).fetchone()[0]

        return run

    def _choose_backup(self, backup_id: str | None, target: RecoveryTarget):
        """backupID, else for a time/LSN target the latest backup ending before it, else the
        latest (bc catalog.FindBackupInfo, §4)."""
        backups = [b for b in self.sandbox.list_backups() if b.completed]
        if backup_id:
            backups = [b for b in backups if b.id == backup_id]
            if not backups:
                raise LookupError(f"no backup found with ID {backup_id}")
        elif target.kind == "time":
            backups = [b for b in backups if b.end_time and b.end_time < target.time]
        elif target.kind == "lsn":
            backups = [
                b for b in backups if b.end_lsn and lsn_value(b.end_lsn) <= lsn_value(target.lsn)
            ]
        if not backups:
            raise LookupError("no target backup found")
        return backups[-1]

    def _recovery_done(self, cluster: dict, work: Future) -> None:
        name, ns = cluster["metadata"]["name"], self.restore_namespace
        if work.exception() is not None:
            return self._end_recovery_job(cluster, ns, message(work.exception()))
        result, timeline = work.result()
        self._end_recovery_job(cluster, ns, None)
        pod, now = f"{name}-1", micro()
        self._create(PVCS, self._pvc(cluster, pod))
        self._create(PODS, self._pod(cluster, pod, "primary"))
        self._secrets_and_services(cluster)
        self._patch_status(
            CLUSTERS,
            cluster,
            {
                "phase": HEALTHY,
                "phaseReason": None,
                "instances": 1,
                "readyInstances": 1,
                "instanceNames": [pod],
                "instancesStatus": {"healthy": [pod], "failed": []},
                "currentPrimary": pod,
                "currentPrimaryTimestamp": now,
                "targetPrimary": pod,
                "targetPrimaryTimestamp": now,
                "timelineID": timeline,
                "image": self.image,
                "writeService": f"{name}-rw",
                "readService": f"{name}-r",
                "conditions": [
                    self._condition(None, "Ready", True, "ClusterIsReady", "Cluster is Ready")
                ],
            },
        )
        self._log(
            f"recovery of {name} done: backup {result.backup.id} restored to "
            f"{result.target.describe()}, {pod} is primary on timeline {timeline}",
            namespace=ns,
            cluster=name,
        )
