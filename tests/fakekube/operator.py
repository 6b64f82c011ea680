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
  (§4-§6); deleted: restore-test removed (its objects go by ownerReferences);
- the source Cluster deleted (cluster loss): the sandbox's instances really destroyed, then a
  new Cluster of the same name with bootstrap.recovery really rebuilt from the old archive
  under its own serverName (`rebuild`).

NOT emulated: scheduling (ScheduledBackups never fire), pg_rewind (the supervisor re-clones the
old primary), rolling updates, switchover, fencing, hibernation, webhooks, RBAC, more than one
recovered instance, `bootstrap.recovery.backup`, targetXID/targetImmediate/targetTLI,
retention. Backups run on the primary (CNPG defaults to prefer-standby). A recovery Cluster
whose archive is wrong stays in `Setting up primary` with a phaseReason (CNPG < 1.29.2; 1.30
gives up once the Job's retries are spent). Test knobs (test doubles, not CNPG):
`stuck_failover`, `fail_backups`.

This module holds the loop and the source Cluster's reconcile (failover, lost storage,
health, the pvc-protection controller); beside it: `seed` (the objects seeded at start),
`backups`, `recovery` (recovery Clusters), `rebuild` (cluster loss) and `pod_io` (exec,
port-forward and logs).
"""

from __future__ import annotations

import sys
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import psycopg

from pgdrill.core.procs import pid_alive
from pgdrill.core.waiting import poll_until
from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.cluster import SandboxCluster, replica_streaming, sandbox_credentials
from pgdrill.targets.sandbox.osuser import resolve_run_as

from .backups import BackupsMixin
from .cnpg import (
    FAILING_OVER,
    HEALTHY,
    NEW_REPLICA,
    PVC_PROTECTION,
    TIMELINE_SQL,
    WAITING,
    deleting,
    message,
    micro,
    seconds,
)
from .errors import Conflict, NotFound
from .kinds import BACKUPS, CLUSTERS, OBJECT_STORES, PODS, PVCS, SCHEDULED_BACKUPS
from .pod_io import PodIOMixin
from .rebuild import RebuildMixin
from .recovery import RecoveryMixin
from .seed import SeedMixin


@dataclass
class Down:
    """A source pod seen deleted, until it is recreated."""

    instance: str
    wiped: bool = False


class FakeCnpgOperator(SeedMixin, BackupsMixin, RecoveryMixin, RebuildMixin, PodIOMixin):
    def __init__(
        self,
        server,
        sandbox,
        *,
        namespace: str = "staging",
        cluster: str = "app-db",
        style: str = "in-tree",
        restore_namespace: str = "restore-test",
    ) -> None:
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
        # cluster loss (rebuild.py): the source Cluster played now, its destruction, rebuilds
        self._source_uid: str | None = None
        self._destroying: Future | None = None
        self._rebuilding: dict[str, Future] = {}
        self._rebuild_sources: dict[str, object] = {}
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
            return status.get("currentPrimary") == status.get("targetPrimary") and status.get(
                "currentPrimary"
            )

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
        if not self._reconcile_rebuild(sc):
            self._reconcile_source(sc)
        self._release_pvcs()
        self._reconcile_backups()
        self._reconcile_recoveries()

    def _log(
        self,
        msg: str,
        *,
        level: str = "info",
        namespace: str | None = None,
        cluster: str | None = None,
        logger: str = "cluster",
        **fields,
    ) -> None:
        entry = {
            "level": level,
            "ts": micro(),
            "logger": logger,
            "msg": msg,
            "namespace": namespace or self.namespace,
            "cluster": cluster or self.cluster,
            **fields,
        }
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
            self.store.patch(
                kind, obj["metadata"]["namespace"], obj["metadata"]["name"], {"status": diff}
            )

    @staticmethod
    def _condition(
        existing: list[dict] | None, type_: str, ok: bool, reason: str, note: str
    ) -> dict:
        """A condition that keeps its lastTransitionTime while its status is unchanged."""
        status = "True" if ok else "False"
        old = next((c for c in existing or [] if c.get("type") == type_), None)
        since = old["lastTransitionTime"] if old and old.get("status") == status else seconds()
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": note,
            "lastTransitionTime": since,
        }

    def pod_of(self, instance: str | None) -> str | None:
        return next((p for p, i in self.pods.items() if i == instance), None)

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
                self._log(
                    f"recreated pod {name} as {role}: sandbox instance {down.instance} runs again",
                    instance=name,
                )
        for name, pod in pods.items():  # role labels follow currentPrimary
            role = "primary" if name == current else "replica"
            if not deleting(pod) and pod["metadata"]["labels"].get("cnpg.io/instanceRole") != role:
                self.store.patch(
                    PODS,
                    self.namespace,
                    name,
                    {"metadata": {"labels": {"cnpg.io/instanceRole": role, "role": role}}},
                )
        self._patch_status(CLUSTERS, cluster, desired | self._health(sc, status, desired))

    def _pod_deleted(self, sc, name: str, storage_gone: bool, primary: bool) -> None:
        instance, role = self.pods[name], "primary" if primary else "replica"
        self._down[name] = Down(instance)
        if storage_gone:
            self._log(f"pod {name} ({role}) deleted with its PVC", instance=name)
            return self._wipe(sc, name)
        pid = postgres.kill_postmaster(self.sandbox.layout.data_dir(instance))
        self._log(
            f"pod {name} ({role}) deleted: postmaster of {instance} "
            + (f"(pid {pid}) killed with SIGKILL" if pid else "was not running"),
            instance=name,
        )
        if pid:
            poll_until(lambda: not pid_alive(pid), timeout=30, what=f"{instance} to die")

    def _wipe(self, sc, name: str) -> None:
        """As `SandboxTarget.drop_storage`: postmaster killed, data directory removed."""
        self.sandbox.drop_storage(sc.instance(self.pods[name]))
        self._down[name].wiped = True
        self._log(
            f"storage of {name} dropped: sandbox instance {self.pods[name]} wiped", instance=name
        )

    def _instance_back(self, sc, name: str, down: Down, current: str | None) -> bool:
        """The sandbox runs the instance again in the role the Cluster's status gives it (no
        recreation during a failover, but for the old primary restarted in place)."""
        inst = sc.state.instances.get(down.instance)
        if (
            inst is None
            or inst.needs_rebuild
            or not sc.has_storage(down.instance)
            or not sc.is_running(down.instance)
        ):
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
            return (
                {}
                if target == current
                else {  # the primary came back in place
                    "targetPrimary": current,
                    "targetPrimaryTimestamp": micro(),
                }
            )
        if target == current:
            self._log(
                f"primary {current} is gone: failing over (failoverDelay 0)",
                level="warning",
                instance=current,
            )
            return {"targetPrimary": "pending", "targetPrimaryTimestamp": micro()}
        candidate = (
            real
            if real not in (current, None)
            else next(
                (
                    p
                    for p, i in self.pods.items()
                    if p not in self._down and p != current and sc.is_running(i)
                ),
                None,
            )
        )
        if candidate and (target == "pending" or (target != candidate and candidate == real)):
            self._log(f"electing {candidate} as the new primary", instance=candidate)
            return {"targetPrimary": candidate, "targetPrimaryTimestamp": micro()}
        if target != real or self.stuck_failover or not self._writable(sc, target):
            return {}
        timeline = sc.query_one(self.pods[target], TIMELINE_SQL)
        self._log(f"{target} is the new primary (timeline {timeline})", instance=target)
        return {
            "currentPrimary": target,
            "currentPrimaryTimestamp": micro(),
            "timelineID": timeline,
        }

    def _writable(self, sc, pod: str) -> bool:
        try:
            return sc.query_one(self.pods[pod], "SELECT NOT pg_is_in_recovery()") is True
        except psycopg.Error:
            return False

    def _health(self, sc, status: dict, failover: dict) -> dict:
        current = failover.get("currentPrimary", status.get("currentPrimary"))
        target = failover.get("targetPrimary", status.get("targetPrimary"))
        quick = status.get("phase") == HEALTHY  # no SQL while nothing changed
        ready = [
            p
            for p, i in self.pods.items()
            if p not in self._down
            and sc.is_running(i)
            and (quick or p == current or replica_streaming(sc, i))
        ]
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
            conditions,
            "Ready",
            ok,
            "ClusterIsReady" if ok else "ClusterIsNotReady",
            "Cluster is Ready" if ok else "Cluster Is Not Ready",
        )
        return {
            "phase": phase,
            "phaseReason": reason,
            "readyInstances": len(ready),
            "instancesStatus": {"healthy": ready, "failed": sorted(set(self.pods) - set(ready))},
            "conditions": [ready_condition, *[c for c in conditions if c.get("type") != "Ready"]],
        }

    def _release_pvcs(self) -> None:
        """The pvc-protection controller: a deleted PVC goes once no pod uses it."""
        for pvc in self.store.list(PVCS):
            meta = pvc["metadata"]
            ns, name, finalizers = meta["namespace"], meta["name"], meta.get("finalizers") or []
            if (
                not deleting(pvc)
                or PVC_PROTECTION not in finalizers
                or any(
                    v.get("persistentVolumeClaim", {}).get("claimName") == name
                    for pod in self.store.list(PODS, ns)
                    for v in pod["spec"].get("volumes", [])
                )
            ):
                continue
            if ns == self.namespace and name in self._down and not self._down[name].wiped:
                continue  # its storage is wiped first
            rest = [f for f in finalizers if f != PVC_PROTECTION]
            try:
                self.store.patch(PVCS, ns, name, {"metadata": {"finalizers": rest or None}})
            except NotFound:
                continue
            self._log(f"PVC {name} released: no pod uses it", namespace=ns, logger="pvc-protection")

    # -- the workers' outcomes (backups.py, recovery.py) --------------------------------
    def _done(self, uid: str, work: Future) -> bool:
        """`work` finished and its outcome is not applied yet (it is now, by the caller)."""
        if not work.done() or uid in self._applied:
            return False
        self._applied.add(uid)
        return True
