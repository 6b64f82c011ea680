"""A test double for the CloudNativePG 1.30 operator, backed by the sandbox's REAL PostgreSQL,
S3 (moto) and barman-cloud, playing CNPG against the fake API server's store
(tests/fakekube/apiserver.py). A background thread, level-based: every pass re-reads the
Cluster, pods, PVCs, Backups, recovery Clusters and the sandbox's state (never trusting one
event), woken by `Store.wait_changed` or every 0.3 s. Every store write is made by that thread;
real backups and restores run in worker threads whose outcome the loop applies.

Emulated (cnpg.md § in brackets):
- the source Cluster seeded in CNPG's shape: one pod + PVC per sandbox instance, named
  `<cluster>-<serial>` (the explicit `pods` mapping to sandbox instances), Secrets, Services,
  a ScheduledBackup, the ObjectStore (plugin style), an operator pod in cnpg-system;
- primary pod deleted: its postmaster SIGKILLed, `Failing over`, targetPrimary `pending`, then
  the candidate; currentPrimary once the sandbox supervisor's REAL promotion is writable; the
  pod recreated with the same serial (1.30) once the instance runs again (§9);
- `kubectl cnpg destroy` (PVC deleted, then the pod): the instance's storage wiped like
  `SandboxTarget.drop_storage`, the PVC released (this thread also plays the pvc-protection
  controller, in every namespace), `Creating a new replica` until the supervisor re-cloned
  it, then a fresh PVC + pod (§9);
- Backup: a real barman-cloud base backup of the current primary, status as CNPG fills it
  (destinationPath/serverName/endpointURL only in-tree) (§3);
- recovery Cluster in the restore namespace: the checks CNPG + barman would trip over
  (external cluster, archive location, serverName, credentials Secret, an archiver of its
  own), then Job `<name>-1-full-recovery` and a REAL restore into the sandbox's restore-test
  (§4-§6); deleted: restore-test removed (its objects go by ownerReferences).

NOT emulated: scheduling (ScheduledBackups never fire), pg_rewind (the supervisor re-clones the
old primary), rolling updates, switchover, fencing, hibernation, webhooks, RBAC, more than one
recovered instance, `bootstrap.recovery.backup`, targetXID/targetImmediate/targetTLI,
retention. Backups run on the primary (CNPG defaults to prefer-standby). A recovery Cluster
whose archive is wrong stays in `Setting up primary` with a phaseReason (CNPG < 1.29.2; 1.30
gives up once the Job's retries are spent). Test knobs (test doubles, not CNPG):
`stuck_failover`, `fail_backups`.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from pgdrill.model import RecoveryTarget
from pgdrill.procs import pid_alive
from pgdrill.targets.cnpg.catalog import split_destination
from pgdrill.targets.cnpg.manifests import archives_into, read_source
from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.cluster import SandboxCluster, replica_streaming, sandbox_credentials
from pgdrill.targets.sandbox.osuser import resolve_run_as
from pgdrill.targets.sandbox.state import RESTORE_NAME
from pgdrill.waiting import poll_until

from .apiserver import (
    BACKUPS, CLUSTERS, JOBS, NAMESPACES, OBJECT_STORES, PODS, PVCS, SCHEDULED_BACKUPS, SECRETS,
    SERVICES, Conflict, NotFound,
)

CNPG_API, PLUGIN_API, PLUGIN = "postgresql.cnpg.io/v1", "barmancloud.cnpg.io/v1", \
    "barman-cloud.cloudnative-pg.io"
HEALTHY, FAILING_OVER = "Cluster in healthy state", "Failing over"
NEW_REPLICA, WAITING = "Creating a new replica", "Waiting for the instances to become active"
SETTING_UP = "Setting up primary"
UNRECOVERABLE = "Cluster is unrecoverable and needs manual intervention"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
OPERATOR_NS, OPERATOR_POD = "cnpg-system", "cnpg-controller-manager-6b9f78f594-x7k2p"
DONE_BACKUP = ("completed", "failed", "walArchivingFailing", "invalid backup definition")
TIMELINE_SQL = "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
PG_LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (\S+) ")


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


@dataclass
class Down:
    """A source pod seen deleted, until it is recreated."""
    instance: str
    wiped: bool = False


class FakeCnpgOperator:
    def __init__(self, server, sandbox, *, namespace: str = "staging", cluster: str = "app-db",
                 style: str = "in-tree", restore_namespace: str = "restore-test") -> None:
        if style not in ("in-tree", "plugin"):
            raise ValueError(f"style must be 'in-tree' or 'plugin', not {style!r}")
        self.server, self.store, self.sandbox = server, server.store, sandbox
        self.namespace, self.cluster, self.style = namespace, cluster, style
        self.restore_namespace = restore_namespace
        # test knobs: a failover that never completes; Backups failing without barman
        self.stuck_failover = False
        self.fail_backups: str | None = None
        self.backup_timeout = self.restore_timeout = 600.0
        self.events: list[dict] = []  # every decision, as in the operator pod's log
        self._mine: set[str] = set()  # uids of the objects this operator created
        self._seen: dict[str, dict] = {}  # CNPG objects others created, as first seen
        self.pods: dict[str, str] = {}  # source pod -> sandbox instance
        self._down: dict[str, Down] = {}
        # real barman-cloud backups and restores run in workers; the loop applies outcomes
        self._workers = ThreadPoolExecutor(4, thread_name_prefix="fake-cnpg-worker")
        self._backups: dict[str, Future] = {}  # Backup uid -> its backup
        self._restores: dict[str, tuple[str, Future]] = {}  # recovery Cluster uid -> restore
        self._applied: set[str] = set()  # uids whose outcome is in the store
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> FakeCnpgOperator:
        state = self.sandbox.layout.read()
        self._run_as = resolve_run_as(state.run_as or None)
        self._credentials = sandbox_credentials(self.sandbox.layout)
        self.server.exec_handler = self._exec
        self.server.portforward_resolver = self._resolve
        self.server.log_source = self._logs
        self._seed(SandboxCluster(self.sandbox.layout, state, self._run_as))
        self._thread = threading.Thread(target=self._loop, name="fake-cnpg-operator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self._workers.shutdown(wait=True)

    def __enter__(self) -> FakeCnpgOperator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def unstick(self, timeout: float = 60) -> str:
        """Clear `stuck_failover` and wait until currentPrimary follows targetPrimary."""
        self.stuck_failover = False

        def done():
            status = self.store.get(CLUSTERS, self.namespace, self.cluster).get("status") or {}
            return status.get("currentPrimary") == status.get("targetPrimary") and \
                status.get("currentPrimary")
        return poll_until(done, timeout=timeout, what="the failover to complete")

    def created_documents(self) -> list[dict]:
        """Clusters, Backups, ScheduledBackups and ObjectStores created by others (the
        target under test), as this operator first saw them."""
        with self._lock:
            return list(self._seen.values())

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            version = self.store.version
            try:
                self.reconcile()
                failures = 0
            except Exception as exc:  # keep playing the operator; its log says why
                failures += 1
                self._log(f"reconcile failed: {message(exc)}", level="error")
                if failures == 1:
                    traceback.print_exc(file=sys.stderr)
                self._stop.wait(min(2.0, 0.2 * failures))
            self.store.wait_changed(version, 0.3)

    def reconcile(self) -> None:
        """One level-based pass over everything."""
        sc = SandboxCluster(self.sandbox.layout, self.sandbox.layout.read(), self._run_as)
        for kind in (CLUSTERS, BACKUPS, SCHEDULED_BACKUPS, OBJECT_STORES):
            for obj in self.store.list(kind):
                if obj["metadata"]["uid"] not in self._mine:
                    with self._lock:
                        self._seen.setdefault(obj["metadata"]["uid"], obj)
        self._reconcile_source(sc)
        self._release_pvcs()
        self._reconcile_backups()
        self._reconcile_recoveries()

    def _log(self, msg: str, *, level: str = "info", namespace: str | None = None,
             cluster: str | None = None, logger: str = "cluster", **fields) -> None:
        entry = {"level": level, "ts": micro(), "logger": logger, "msg": msg,
                 "namespace": namespace or self.namespace, "cluster": cluster or self.cluster,
                 **fields}
        with self._lock:
            self.events.append(entry)

    # -- objects ------------------------------------------------------------------------
    def _create(self, kind, obj: dict) -> dict:
        try:
            created = self.store.create(kind, obj)
            self._mine.add(created["metadata"]["uid"])
            return created
        except Conflict:
            return self.store.get(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])

    def _patch_status(self, kind, obj: dict, desired: dict) -> None:
        """Merge-patch the status fields of `desired` that differ (None removes one)."""
        status = obj.get("status") or {}
        diff = {k: v for k, v in desired.items() if status.get(k) != v}
        if diff:
            self.store.patch(kind, obj["metadata"]["namespace"], obj["metadata"]["name"],
                             {"status": diff})

    @staticmethod
    def _condition(existing: list[dict] | None, type_: str, ok: bool, reason: str,
                   note: str) -> dict:
        """A condition that keeps its lastTransitionTime while its status is unchanged."""
        status = "True" if ok else "False"
        old = next((c for c in existing or [] if c.get("type") == type_), None)
        since = old["lastTransitionTime"] if old and old.get("status") == status else seconds()
        return {"type": type_, "status": status, "reason": reason, "message": note,
                "lastTransitionTime": since}

    @staticmethod
    def _owned(cluster: dict, name: str, labels: dict | None = None, **meta) -> dict:
        """metadata of an object the Cluster owns (garbage-collected with it)."""
        m = cluster["metadata"]
        return {"name": name, "namespace": m["namespace"], "labels": {
            "cnpg.io/cluster": m["name"], **(labels or {})}, "ownerReferences": [
            {"apiVersion": CNPG_API, "kind": "Cluster", "name": m["name"], "uid": m["uid"],
             "controller": True, "blockOwnerDeletion": True}], **meta}

    def _seed(self, sc: SandboxCluster) -> None:
        """What a CNPG install and the source Cluster would have made, on the sandbox."""
        for ns in (self.namespace, self.restore_namespace, OPERATOR_NS):
            self._create(NAMESPACES, {"metadata": {"name": ns}})
        self._create(PODS, {"metadata": {"name": OPERATOR_POD, "namespace": OPERATOR_NS, "labels": {
            "app.kubernetes.io/name": "cloudnative-pg", "app.kubernetes.io/instance": "cnpg"}},
            "spec": {"containers": [{"name": "manager",
                                     "image": "ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0"}]},
            "status": self._pod_status("10.244.0.2")})
        version = sc.query_one(sc.state.primary_name, "SHOW server_version").split()[0]
        self.major = int(version.split(".")[0])
        self.image = (f"ghcr.io/cloudnative-pg/postgresql:{version}-"
                      f"{'system' if self.style == 'in-tree' else 'minimal'}-trixie")
        cluster = self._seed_cluster(sc.state)
        self._secrets_and_services(cluster)
        self._seed_instances(sc, cluster)
        self._recovery_window(self.sandbox.list_backups())
        self._log(f"seeded Cluster {self.cluster} ({self.style}) on sandbox instances "
                  f"{self.pods}", logger="setup")

    def _seed_cluster(self, state) -> dict:
        """The source Cluster (plugin: and its ObjectStore) archiving to the sandbox's real
        s3://<bucket>/<sandbox cluster name>/, its credentials Secret, its ScheduledBackup."""
        c = self._credentials
        self._create(SECRETS, {"metadata": {"name": "cnpg-backup-s3", "namespace": self.namespace},
                               "data": b64({"ACCESS_KEY_ID": c.access_key_id,
                                            "ACCESS_SECRET_KEY": c.secret_access_key,
                                            "REGION": c.region, "BUCKET": c.bucket,
                                            "ENDPOINT": c.endpoint})})
        archive = {"destinationPath": f"s3://{state.bucket}/", "endpointURL": state.endpoint_url,
                   "s3Credentials": {field: {"name": "cnpg-backup-s3", "key": key} for field, key in
                                     (("accessKeyId", "ACCESS_KEY_ID"), ("region", "REGION"),
                                      ("secretAccessKey", "ACCESS_SECRET_KEY"))},
                   "wal": {"compression": "gzip"}, "data": {"compression": "gzip"}}
        spec = {"instances": len(state.instances), "imageName": self.image,
                "storage": {"size": "1Gi"}, "enableSuperuserAccess": True,
                "failoverDelay": 0, "switchoverDelay": 3600}
        method, store = {"method": "barmanObjectStore"}, None
        if self.style == "in-tree":
            spec["backup"] = {"retentionPolicy": "30d", "barmanObjectStore": {
                **archive, "serverName": state.cluster}}
        else:  # serverName (the sandbox's, unlike the Cluster's name) goes with the plugin
            spec["plugins"] = [{"name": PLUGIN, "isWALArchiver": True, "parameters": {
                "barmanObjectName": f"{self.cluster}-store", "serverName": state.cluster}}]
            store = self._create(OBJECT_STORES, {
                "apiVersion": PLUGIN_API, "kind": "ObjectStore",
                "metadata": {"name": f"{self.cluster}-store", "namespace": self.namespace},
                "spec": {"retentionPolicy": "30d", "configuration": archive}})
            method = {"method": "plugin", "pluginConfiguration": {"name": PLUGIN}}
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self._create(SCHEDULED_BACKUPS, {
            "apiVersion": CNPG_API, "kind": "ScheduledBackup",
            "metadata": {"name": f"{self.cluster}-daily", "namespace": self.namespace},
            "spec": {"schedule": "0 0 0 * * *", "cluster": {"name": self.cluster},
                     "backupOwnerReference": "self", **method},
            "status": {"lastCheckTime": seconds(), "lastScheduleTime": seconds(midnight),
                       "nextScheduleTime": seconds(midnight + timedelta(days=1))}})
        cluster = self._create(CLUSTERS, {"apiVersion": CNPG_API, "kind": "Cluster", "metadata": {
            "name": self.cluster, "namespace": self.namespace}, "spec": spec})
        self.source = read_source(cluster, store)  # the sandbox's real archive
        return cluster

    def _seed_instances(self, sc: SandboxCluster, cluster: dict) -> None:
        """A PVC + pod per sandbox instance, serials in instance order; the Cluster's status."""
        state = sc.state
        names = sorted(state.instances, key=lambda n: int(n.rsplit("-", 1)[1]))
        self.pods = {f"{self.cluster}-{serial}": name for serial, name in enumerate(names, 1)}
        primary = self.pod_of(state.primary_name)
        for pod in self.pods:
            self._create(PVCS, self._pvc(cluster, pod))
            self._create(PODS, self._pod(cluster, pod, "primary" if pod == primary else "replica"))
        now, pods = micro(), sorted(self.pods)
        self.store.patch(CLUSTERS, self.namespace, self.cluster, {"status": {
            "currentPrimary": primary, "currentPrimaryTimestamp": now, "targetPrimary": primary,
            "targetPrimaryTimestamp": now, "phase": HEALTHY, "instances": len(pods),
            "readyInstances": len(pods), "instanceNames": pods, "latestGeneratedNode": len(pods),
            "instancesStatus": {"healthy": pods, "failed": []}, "image": self.image,
            "timelineID": sc.query_one(state.primary_name, TIMELINE_SQL),
            "writeService": f"{self.cluster}-rw", "readService": f"{self.cluster}-r",
            "conditions": [
                self._condition(None, "Ready", True, "ClusterIsReady", "Cluster is Ready"),
                self._condition(None, "ContinuousArchiving", True, "ContinuousArchivingSuccess",
                                "Continuous archiving is working")]}})

    def pod_of(self, instance: str | None) -> str | None:
        return next((p for p, i in self.pods.items() if i == instance), None)

    def _secrets_and_services(self, cluster: dict) -> None:
        """`<c>-app`, `<c>-superuser` (enableSuperuserAccess) and Services -rw/-ro/-r (§8).
        Both name user postgres: the sandbox has no `app` role and trusts local TCP, so any
        password works (a real cluster checks it)."""
        ns, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
        host = f"{name}-rw"
        for user_type, db in (("app", "app"), ("superuser", "*")):
            pw = secrets.token_urlsafe(24)
            uri = f"postgresql://postgres:{pw}@{host}.{ns}:5432/{db}"
            self._create(SECRETS, {"type": "kubernetes.io/basic-auth", "metadata": self._owned(
                cluster, f"{name}-{user_type}", {"cnpg.io/userType": user_type}),
                "data": b64({"username": "postgres", "user": "postgres", "password": pw,
                             "dbname": db, "host": host, "port": "5432", "uri": uri,
                             "pgpass": f"{host}:5432:{db}:postgres:{pw}\n",
                             "jdbc-uri": f"jdbc:postgresql://{host}.{ns}:5432/{db}?password="
                                         f"{pw}&user=postgres"})})
        for suffix, selector in (("rw", {"cnpg.io/instanceRole": "primary"}),
                                 ("ro", {"cnpg.io/instanceRole": "replica"}),
                                 ("r", {"cnpg.io/podRole": "instance"})):
            self._create(SERVICES, {"metadata": self._owned(cluster, f"{name}-{suffix}"), "spec": {
                "type": "ClusterIP", "selector": {"cnpg.io/cluster": name, **selector},
                "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432}]}})

    def _pvc(self, cluster: dict, name: str) -> dict:
        return {"metadata": self._owned(cluster, name, {
            "cnpg.io/instanceName": name, "cnpg.io/pvcRole": "PG_DATA"},
            finalizers=[PVC_PROTECTION], annotations={"cnpg.io/pvcStatus": "ready"}),
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {
                "storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}

    @staticmethod
    def _pod_status(ip: str) -> dict:
        now = seconds()
        return {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now,
                "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                               for t in ("PodScheduled", "Initialized", "ContainersReady",
                                         "Ready")]}

    def _pod(self, cluster: dict, name: str, role: str) -> dict:
        status = self._pod_status(f"10.244.{1 + len(cluster['metadata']['namespace'])}."
                                  f"{10 + int(name.rsplit('-', 1)[1])}")
        status["containerStatuses"] = [{
            "name": "postgres", "ready": True, "started": True, "restartCount": 0,
            "image": self.image, "imageID": self.image,
            "state": {"running": {"startedAt": status["startTime"]}}}]
        return {"metadata": self._owned(cluster, name, {
            "cnpg.io/instanceName": name, "cnpg.io/podRole": "instance",
            "cnpg.io/instanceRole": role, "role": role}),
            "spec": {"hostname": name, "nodeName": "fake-node-1", "containers": [
                {"name": "postgres", "image": self.image,
                 "ports": [{"name": "postgresql", "containerPort": 5432, "protocol": "TCP"}]}],
                "volumes": [{"name": "pgdata", "persistentVolumeClaim": {"claimName": name}}]},
            "status": status}

    # -- the source cluster: failover, lost storage, health -----------------------------
    def _reconcile_source(self, sc: SandboxCluster) -> None:
        cluster = self.store.get(CLUSTERS, self.namespace, self.cluster)
        if cluster is None or deleting(cluster):
            return
        selector = f"cnpg.io/cluster={self.cluster}"
        pods = {p["metadata"]["name"]: p for p in self.store.list(PODS, self.namespace, selector)}
        pvcs = {p["metadata"]["name"]: p for p in self.store.list(PVCS, self.namespace, selector)}
        status = cluster.get("status") or {}
        for name in self.pods:
            pod, pvc = pods.get(name), pvcs.get(name)
            storage_gone = pvc is None or deleting(pvc)
            if name not in self._down and (pod is None or deleting(pod)):
                self._pod_deleted(sc, name, storage_gone, name == status.get("currentPrimary"))
            elif name in self._down and storage_gone and not self._down[name].wiped:
                self._wipe(sc, name)
        desired = self._failover(sc, status)
        current = desired.get("currentPrimary", status.get("currentPrimary"))
        for name, down in list(self._down.items()):
            if name not in pods and self._instance_back(sc, name, down, current):
                role = "primary" if name == current else "replica"
                self._create(PVCS, self._pvc(cluster, name))
                self.store.create(PODS, self._pod(cluster, name, role))
                del self._down[name]
                self._log(f"recreated pod {name} as {role}: sandbox instance {down.instance} "
                          f"runs again", instance=name)
        for name, pod in pods.items():  # role labels follow currentPrimary
            role = "primary" if name == current else "replica"
            if not deleting(pod) and pod["metadata"]["labels"].get("cnpg.io/instanceRole") != role:
                self.store.patch(PODS, self.namespace, name, {"metadata": {"labels": {
                    "cnpg.io/instanceRole": role, "role": role}}})
        self._patch_status(CLUSTERS, cluster, desired | self._health(sc, status, desired))

    def _pod_deleted(self, sc, name: str, storage_gone: bool, primary: bool) -> None:
        instance, role = self.pods[name], "primary" if primary else "replica"
        self._down[name] = Down(instance)
        if storage_gone:
            self._log(f"pod {name} ({role}) deleted with its PVC", instance=name)
            return self._wipe(sc, name)
        pid = postgres.kill_postmaster(self.sandbox.layout.data_dir(instance))
        self._log(f"pod {name} ({role}) deleted: postmaster of {instance} " + (
            f"(pid {pid}) killed with SIGKILL" if pid else "was not running"), instance=name)
        if pid:
            poll_until(lambda: not pid_alive(pid), timeout=30, what=f"{instance} to die")

    def _wipe(self, sc, name: str) -> None:
        """As `SandboxTarget.drop_storage`: postmaster killed, data directory removed."""
        self.sandbox.drop_storage(sc.instance(self.pods[name]))
        self._down[name].wiped = True
        self._log(f"storage of {name} dropped: sandbox instance {self.pods[name]} wiped",
                  instance=name)

    def _instance_back(self, sc, name: str, down: Down, current: str | None) -> bool:
        """The sandbox runs the instance again in the role the Cluster's status gives it (no
        recreation during a failover, but for the old primary restarted in place)."""
        inst = sc.state.instances.get(down.instance)
        if inst is None or inst.needs_rebuild or not sc.has_storage(down.instance) \
                or not sc.is_running(down.instance):
            return False
        if name == current:
            return inst.role == "primary"
        return inst.role == "replica" and current not in self._down

    def _failover(self, sc, status: dict) -> dict:
        """targetPrimary `pending`, then the candidate, then currentPrimary once writable:
        one step per pass, from the status the pass began with."""
        current, target = status.get("currentPrimary"), status.get("targetPrimary")
        real = self.pod_of(sc.state.primary_name)  # the sandbox's primary
        if current not in self._down and real == current:
            return {} if target == current else {  # the primary came back in place
                "targetPrimary": current, "targetPrimaryTimestamp": micro()}
        if target == current:
            self._log(f"primary {current} is gone: failing over (failoverDelay 0)",
                      level="warning", instance=current)
            return {"targetPrimary": "pending", "targetPrimaryTimestamp": micro()}
        candidate = real if real not in (current, None) else next(
            (p for p, i in self.pods.items()
             if p not in self._down and p != current and sc.is_running(i)), None)
        if candidate and (target == "pending" or (target != candidate and candidate == real)):
            self._log(f"electing {candidate} as the new primary", instance=candidate)
            return {"targetPrimary": candidate, "targetPrimaryTimestamp": micro()}
        if target != real or self.stuck_failover or not self._writable(sc, target):
            return {}
        timeline = sc.query_one(self.pods[target], TIMELINE_SQL)
        self._log(f"{target} is the new primary (timeline {timeline})", instance=target)
        return {"currentPrimary": target, "currentPrimaryTimestamp": micro(),
                "timelineID": timeline}

    def _writable(self, sc, pod: str) -> bool:
        try:
            return sc.query_one(self.pods[pod], "SELECT NOT pg_is_in_recovery()") is True
        except psycopg.Error:
            return False

    def _health(self, sc, status: dict, failover: dict) -> dict:
        current = failover.get("currentPrimary", status.get("currentPrimary"))
        target = failover.get("targetPrimary", status.get("targetPrimary"))
        quick = status.get("phase") == HEALTHY  # no SQL while nothing changed
        ready = [p for p, i in self.pods.items() if p not in self._down and sc.is_running(i)
                 and (quick or p == current or replica_streaming(sc, i))]
        if current != target or current in self._down:
            phase, reason = FAILING_OVER, f"Failing over from {current} to {target}"
        elif any(d.wiped for d in self._down.values()):
            phase, reason = NEW_REPLICA, f"Creating replica {', '.join(sorted(self._down))}"
        elif len(ready) < len(self.pods):
            phase, reason = WAITING, "Some instances are not yet active"
        else:
            phase, reason = HEALTHY, None
        if phase != status.get("phase"):
            self._log(f"cluster phase: {phase}" + (f" ({reason})" if reason else ""))
        conditions, ok = status.get("conditions") or [], phase == HEALTHY
        ready_condition = self._condition(
            conditions, "Ready", ok, "ClusterIsReady" if ok else "ClusterIsNotReady",
            "Cluster is Ready" if ok else "Cluster Is Not Ready")
        return {"phase": phase, "phaseReason": reason, "readyInstances": len(ready),
                "instancesStatus": {"healthy": ready,
                                    "failed": sorted(set(self.pods) - set(ready))},
                "conditions": [ready_condition,
                               *[c for c in conditions if c.get("type") != "Ready"]]}

    def _release_pvcs(self) -> None:
        """The pvc-protection controller: a deleted PVC goes once no pod uses it."""
        for pvc in self.store.list(PVCS):
            meta = pvc["metadata"]
            ns, name, finalizers = meta["namespace"], meta["name"], meta.get("finalizers") or []
            if not deleting(pvc) or PVC_PROTECTION not in finalizers or any(
                    v.get("persistentVolumeClaim", {}).get("claimName") == name
                    for pod in self.store.list(PODS, ns) for v in pod["spec"].get("volumes", [])):
                continue
            if ns == self.namespace and name in self._down and not self._down[name].wiped:
                continue  # its storage is wiped first
            rest = [f for f in finalizers if f != PVC_PROTECTION]
            try:
                self.store.patch(PVCS, ns, name, {"metadata": {"finalizers": rest or None}})
            except NotFound:
                continue
            self._log(f"PVC {name} released: no pod uses it", namespace=ns,
                      logger="pvc-protection")

    # -- backups ------------------------------------------------------------------------
    def _done(self, uid: str, work: Future) -> bool:
        """`work` finished and its outcome is not applied yet (it is now, by the caller)."""
        if not work.done() or uid in self._applied:
            return False
        self._applied.add(uid)
        return True

    def _reconcile_backups(self) -> None:
        busy = any(not w.done() for w in self._backups.values())
        for backup in sorted(self.store.list(BACKUPS, self.namespace), key=lambda b: (
                b["metadata"].get("creationTimestamp") or "", b["metadata"]["name"])):
            uid = backup["metadata"]["uid"]
            if (backup.get("spec") or {}).get("cluster", {}).get("name") != self.cluster:
                continue
            if uid in self._backups:
                if self._done(uid, self._backups[uid]):
                    self._backup_done(backup, self._backups[uid])
            elif (backup.get("status") or {}).get("phase") not in DONE_BACKUP:
                problem = self._backup_problem(backup) or self.fail_backups
                if problem:
                    self._backup_failed(backup, problem)
                elif busy:  # one backup at a time
                    self._patch_status(BACKUPS, backup, {"phase": "pending"})
                else:
                    self._backup_start(backup)
                    busy = True

    def _backup_problem(self, backup: dict) -> str | None:
        """CNPG's refusals for a Cluster without that backup method (§3), or None."""
        spec = (self.store.get(CLUSTERS, self.namespace, self.cluster) or {}).get("spec") or {}
        method = backup["spec"].get("method") or "barmanObjectStore"
        in_tree = (spec.get("backup") or {}).get("barmanObjectStore")
        if method == "barmanObjectStore" and not in_tree:
            return "no barmanObjectStore section defined on the target cluster"
        wanted = (backup["spec"].get("pluginConfiguration") or {}).get("name")
        if method == "plugin" and wanted not in [p.get("name") for p in spec.get("plugins") or []]:
            return f"cluster {self.cluster} has no plugin configured named {wanted}"
        return None

    def _backup_failed(self, backup: dict, error: str) -> None:
        self._log(f"backup {backup['metadata']['name']} failed: {error}", level="error",
                  logger="backup")
        self._patch_status(BACKUPS, backup, {"phase": "failed", "error": error,
                                             "stoppedAt": seconds()})
        self._backup_condition(False, "LastBackupFailed", error)

    def _backup_start(self, backup: dict) -> None:
        name = backup["metadata"]["name"]
        primary = self.store.get(CLUSTERS, self.namespace, self.cluster)["status"]["currentPrimary"]
        self._patch_status(BACKUPS, backup, {
            "phase": "running", "startedAt": seconds(), "online": True,
            "method": backup["spec"].get("method") or "barmanObjectStore",
            "instanceID": {"podName": primary}})
        self._backup_condition(False, "BackupStarted", "New Backup starting up")
        self._log(f"backup {name}: barman-cloud-backup of {primary}", logger="backup")
        self._backups[backup["metadata"]["uid"]] = self._workers.submit(lambda: (
            self.sandbox.backup(timeout=self.backup_timeout), self.sandbox.list_backups()))

    def _backup_done(self, backup: dict, work: Future) -> None:
        if work.exception() is not None:
            return self._backup_failed(backup, message(work.exception()))
        taken, catalog = work.result()
        status = {"phase": "completed", "backupId": taken.id,
                  "backupName": taken.name or f"backup-{taken.id}",
                  "beginLSN": taken.begin_lsn, "endLSN": taken.end_lsn,
                  "beginWal": taken.begin_wal, "endWal": taken.end_wal,
                  "startedAt": seconds(taken.begin_time), "stoppedAt": seconds(taken.end_time),
                  "majorVersion": self.major}
        if (backup["spec"].get("method") or "barmanObjectStore") == "barmanObjectStore":
            status |= {"destinationPath": self.source.destination_path,
                       "serverName": self.source.server_name,
                       "endpointURL": self.source.endpoint_url}
        else:  # plugin backups leave destinationPath/serverName empty (§3)
            status["pluginMetadata"] = {"pluginName": PLUGIN, "timeline": str(taken.timeline)}
        try:
            self._patch_status(BACKUPS, backup, status)
        except NotFound:
            return
        self._log(f"backup {backup['metadata']['name']} completed: {taken.id}", logger="backup")
        self._recovery_window(catalog)
        self._backup_condition(True, "LastBackupSucceeded", "Backup was successful")

    def _recovery_window(self, catalog) -> None:
        """In-tree: Cluster status; plugin: the ObjectStore's status (§2)."""
        done = [b for b in catalog if b.completed and b.end_time]
        if not done:
            return
        first, last = seconds(done[0].end_time), seconds(done[-1].end_time)
        if self.style == "in-tree":
            self.store.patch(CLUSTERS, self.namespace, self.cluster, {"status": {
                "firstRecoverabilityPoint": first, "lastSuccessfulBackup": last}})
        else:
            self.store.patch(OBJECT_STORES, self.namespace, self.source.object_store, {
                "status": {"serverRecoveryWindow": {self.source.server_name: {
                    "firstRecoverabilityPoint": first, "lastSuccessfulBackupTime": last}}}})

    def _backup_condition(self, ok: bool, reason: str, note: str) -> None:
        cluster = self.store.get(CLUSTERS, self.namespace, self.cluster)
        conditions = (cluster.get("status") or {}).get("conditions") or []
        self.store.patch(CLUSTERS, self.namespace, self.cluster, {"status": {"conditions": [
            *[c for c in conditions if c["type"] != "LastBackupSucceeded"],
            self._condition(conditions, "LastBackupSucceeded", ok, reason, note)]}})

    # -- recovery clusters ---------------------------------------------------------------
    def _reconcile_recoveries(self) -> None:
        ns = self.restore_namespace
        live = {c["metadata"]["uid"]: c for c in self.store.list(CLUSTERS, ns)
                if not deleting(c) and (c.get("spec") or {}).get("bootstrap", {}).get("recovery")}
        for uid, (name, work) in list(self._restores.items()):
            if uid not in live and work.done():
                self.sandbox.cleanup_restore()
                del self._restores[uid]
                self._log(f"recovery Cluster {name} deleted: restore-test removed",
                          namespace=ns, cluster=name)
        for uid, cluster in live.items():
            if uid not in self._restores:
                self._start_recovery(cluster)
            elif self._done(uid, self._restores[uid][1]):
                self._recovery_done(cluster, self._restores[uid][1])

    def _start_recovery(self, cluster: dict) -> None:
        name, ns = cluster["metadata"]["name"], self.restore_namespace
        busy = next((n for n, _ in self._restores.values()), None)
        problem = self._recovery_problem(cluster) or (
            busy and f"the fake operator has one restore-test instance, in use by {busy}")
        if problem:
            if (cluster.get("status") or {}).get("phaseReason") != problem:
                self._log(f"recovery of {name}: {problem}", level="error", namespace=ns,
                          cluster=name)
            return self._patch_status(CLUSTERS, cluster, {
                "phase": SETTING_UP, "phaseReason": problem, "instances": 1,
                "readyInstances": 0})
        job = f"{name}-1-full-recovery"
        self._restores[cluster["metadata"]["uid"]] = (
            name, self._workers.submit(self._restore_fn(cluster)))
        self._create(JOBS, {"metadata": self._owned(cluster, job, {
            "cnpg.io/jobRole": "full-recovery", "cnpg.io/instanceName": f"{name}-1"}),
            "spec": {"backoffLimit": 6, "template": {"spec": {"containers": [
                {"name": "full-recovery", "image": self.image}]}}},
            "status": {"active": 1, "startTime": seconds()}})
        self._patch_status(CLUSTERS, cluster, {
            "phase": SETTING_UP, "phaseReason": f"Creating primary instance {name}-1",
            "instances": 1, "readyInstances": 0, "latestGeneratedNode": 1,
            "conditions": [self._condition(None, "Ready", False, "ClusterIsNotReady",
                                           "Cluster Is Not Ready")]})
        self._log(f"recovery of {name} started: job {job}", namespace=ns, cluster=name)

    def _recovery_problem(self, cluster: dict) -> str | None:
        """What would keep CNPG + barman from recovering this Cluster from the sandbox's
        archive (§4, §5), or None."""
        spec, name, ns = cluster["spec"], cluster["metadata"]["name"], self.restore_namespace
        recovery = spec["bootstrap"]["recovery"]
        if (spec.get("instances") or 1) != 1 or recovery.get("backup"):
            return "not emulated by the fake operator: instances != 1 or recovery.backup"
        ext = next((e for e in spec.get("externalClusters") or []
                    if e.get("name") == recovery.get("source")), None)
        if not recovery.get("source") or ext is None:
            return f"missing external cluster: {recovery.get('source')}"
        stores = {s["metadata"]["name"]: s for s in self.store.list(OBJECT_STORES, ns)}
        if ext.get("plugin"):
            if ext["plugin"].get("name") != PLUGIN:
                return f"requested plugin is not available: {ext['plugin'].get('name')}"
            parameters = ext["plugin"].get("parameters") or {}
            store = stores.get(parameters.get("barmanObjectName"))
            if store is None:
                return (f'objectstores.barmancloud.cnpg.io "{parameters.get("barmanObjectName")}"'
                        f" not found in namespace {ns}")
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
            return (f"no target backup found under {dest.rstrip('/')}/{server}/ "
                    f"(serverName {server!r})")
        problem = self._credentials_problem(config.get("s3Credentials") or {})
        if problem:
            return problem
        if archives_into(cluster, src, stores):
            return f"WAL archive check failed for server {server}: Expected empty archive"
        if (spec.get("backup") or {}).get("barmanObjectStore") or spec.get("plugins"):
            return "not emulated by the fake operator: a recovered cluster archiving WAL"
        return None

    def _credentials_problem(self, creds: dict) -> str | None:
        """The Secret keys exist in the restore namespace and hold the store's credentials."""
        expected = {"accessKeyId": self._credentials.access_key_id,
                    "secretAccessKey": self._credentials.secret_access_key, "region": None}
        for field, value in expected.items():
            selector = creds.get(field) or {}
            secret = self.store.get(SECRETS, self.restore_namespace, selector.get("name") or "")
            if secret is None:
                return (f"s3Credentials.{field}: secret {selector.get('name')!r} not found in "
                        f"{self.restore_namespace}")
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
                doc["targetTime"].replace("Z", "+00:00"))
            if when and when.tzinfo is None:  # no timezone: UTC (§4)
                when = when.replace(tzinfo=UTC)
            target = RecoveryTarget(time=when or None, lsn=doc.get("targetLSN"),
                                    name=doc.get("targetName"))
            backup = self._choose_backup(doc.get("backupID"), target)
            self._log(f"restoring backup {backup.id} to {target.describe()}",
                      namespace=self.restore_namespace, cluster=cluster["metadata"]["name"])
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
            backups = [b for b in backups
                       if b.end_lsn and lsn_value(b.end_lsn) <= lsn_value(target.lsn)]
        if not backups:
            raise LookupError("no target backup found")
        return backups[-1]

    def _recovery_done(self, cluster: dict, work: Future) -> None:
        name, ns = cluster["metadata"]["name"], self.restore_namespace
        job = self.store.get(JOBS, ns, f"{name}-1-full-recovery")
        if work.exception() is not None:
            error = message(work.exception())
            self._log(f"job {name}-1-full-recovery failed: {error}", level="error",
                      namespace=ns, cluster=name)
            if job:
                self._patch_status(JOBS, job, {"active": None, "failed": 1, "conditions": [{
                    "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                    "message": error}]})
            return self._patch_status(CLUSTERS, cluster, {"phase": UNRECOVERABLE, "phaseReason":
                f"Instance creation failed for the following jobs: {name}-1-full-recovery"})
        result, timeline = work.result()
        if job:
            self._patch_status(JOBS, job, {"active": None, "succeeded": 1,
                                           "completionTime": seconds(), "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": seconds()}]})
        pod, now = f"{name}-1", micro()
        self._create(PVCS, self._pvc(cluster, pod))
        self._create(PODS, self._pod(cluster, pod, "primary"))
        self._secrets_and_services(cluster)
        self._patch_status(CLUSTERS, cluster, {
            "phase": HEALTHY, "phaseReason": None, "instances": 1, "readyInstances": 1,
            "instanceNames": [pod], "instancesStatus": {"healthy": [pod], "failed": []},
            "currentPrimary": pod, "currentPrimaryTimestamp": now, "targetPrimary": pod,
            "targetPrimaryTimestamp": now, "timelineID": timeline, "image": self.image,
            "writeService": f"{name}-rw", "readService": f"{name}-r", "conditions": [
                self._condition(None, "Ready", True, "ClusterIsReady", "Cluster is Ready")]})
        self._log(f"recovery of {name} done: backup {result.backup.id} restored to "
                  f"{result.target.describe()}, {pod} is primary on timeline {timeline}",
                  namespace=ns, cluster=name)

    # -- what the API server delegates: exec, port-forward, logs ------------------------
    def _instance_for(self, namespace: str, pod: str) -> str | None:
        """The sandbox instance behind a live pod (restore-test for a recovered one)."""
        obj = self.store.get(PODS, namespace, pod)
        if obj is None or deleting(obj):
            return None
        if namespace == self.namespace and pod in self.pods:
            return self.pods[pod]
        restored = [f"{n}-1" for n, w in self._restores.values()
                    if w.done() and w.exception() is None]
        return RESTORE_NAME if namespace == self.restore_namespace and pod in restored else None

    def _exec(self, namespace, pod, container, command, stdin):
        """The command runs as PostgreSQL's OS user with PGDATA of the pod's instance."""
        instance = self._instance_for(namespace, pod)
        if instance is None:
            return b"", f"pod {namespace}/{pod} runs no PostgreSQL instance\n".encode(), 1
        layout, state = self.sandbox.layout, self.sandbox.layout.read()
        port = state.restore_port if instance == RESTORE_NAME else state.instances[instance].port
        env = {"PGDATA": str(layout.data_dir(instance)), "PGHOST": "127.0.0.1",
               "PGPORT": str(port), "PGUSER": "postgres", "LANG": "C.UTF-8",
               "PATH": f"{postgres.BIN}:/usr/local/bin:/usr/bin:/bin",
               "HOME": str(layout.instance_dir(instance))}
        try:
            proc = subprocess.run(command, input=stdin or b"", capture_output=True, env=env,
                                  timeout=120, **self._run_as.popen_kwargs())
        except OSError as exc:
            return b"", f"exec: {exc}\n".encode(), 127
        except subprocess.TimeoutExpired:
            return b"", b"exec: command timed out after 120s\n", 124
        return proc.stdout, proc.stderr, proc.returncode

    def _resolve(self, namespace, pod, port):
        instance = self._instance_for(namespace, pod)
        if instance is None or int(port) != 5432:
            raise ConnectionRefusedError(f"nothing listens on {namespace}/{pod}:{port}")
        state = self.sandbox.layout.read()
        local = state.restore_port if instance == RESTORE_NAME else state.instances[instance].port
        if not local or postgres.postmaster_pid(self.sandbox.layout.data_dir(instance)) is None:
            raise ConnectionRefusedError(f"PostgreSQL of {namespace}/{pod} is not running")
        return "127.0.0.1", local

    def _logs(self, namespace, pod, container) -> str:
        if namespace == OPERATOR_NS and pod == OPERATOR_POD:
            with self._lock:
                return "".join(f"{e['ts']} {json.dumps(e)}\n" for e in self.events)
        if namespace == self.namespace and pod in self.pods:
            return timestamped(self.sandbox.layout.log_file(self.pods[pod]))
        if namespace == self.restore_namespace and any(
                pod.startswith(f"{n}-1") for n, _ in self._restores.values()):
            return timestamped(self.sandbox.layout.log_file(RESTORE_NAME))
        return ""


def timestamped(path) -> str:
    """A PostgreSQL log (log_line_prefix '%m [%p] ') as container log lines, each starting
    with an RFC 3339 timestamp; a continuation line takes its record's."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    out, ts = [], micro()
    for line in lines:
        match = PG_LOG_TS.match(line)
        if match:
            when = datetime.fromisoformat(match.group(1))
            ts = micro(when.replace(tzinfo=UTC) if match.group(2) in ("UTC", "GMT")
                       else when.astimezone())
        out.append(f"{ts} {line}\n")
    return "".join(out)
