"""The cnpg target: the same drills against a real CloudNativePG cluster, through the
Kubernetes API (CNPG's CRDs) and PostgreSQL's own protocol.

- instances and roles from pod labels (`cnpg.io/cluster`, `cnpg.io/instanceRole`) and the
  Cluster's `status.currentPrimary`; credentials from the `<cluster>-superuser` Secret;
- faults: the primary pod deleted with grace period 1; an instance's PVCs then its pod deleted
  (as `kubectl cnpg destroy`); a page overwritten by exec in the primary's pod;
- backups: a `Backup` object, waited for until `completed`; listed from the object store;
- restore points looked up in the primary's pg_wal with pg_waldump by exec in its pod;
- restore: a recovery Cluster in restore-test (pgdrill.targets.cnpg.restore);
- health: "Cluster in healthy state", Ready, currentPrimary == targetPrimary, plus a write
  through the primary (client side).

The target never creates, recreates or wipes the source cluster: only the isolated copy."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg

from pgdrill import corruption
from pgdrill.console import say
from pgdrill.credentials import S3Credentials, load_s3_credentials, redact
from pgdrill.errors import PgdrillError, PreflightRefused, TargetError
from pgdrill.model import (
    Backup, HealReport, Instance, LoadConnection, RecoveryTarget, RestoreResult, Role,
)
from pgdrill.targets.base import WalNotAvailable
from pgdrill.targets.cnpg import catalog
from pgdrill.targets.cnpg.config import SERVICE, CnpgConfig
from pgdrill.targets.cnpg.connections import PortForwards, ServiceAddresses
from pgdrill.targets.cnpg.kube import (
    CNPG_GROUP, CNPG_VERSION, PLUGIN_GROUP, PLUGIN_VERSION, Kube, NotFound, api_client,
)
from pgdrill.targets.cnpg.manifests import SourceCluster, backup_manifest, read_source
from pgdrill.targets.cnpg.restore import (
    create_restore, remove_restore, restore_documents, restore_phases, wait_restored,
)
from pgdrill.targets.cnpg.status import (
    cluster_facts, describe_conditions, live_pods, operator_failover, pod_ready, pod_role,
    primary_pod, unhealthy_reasons,
)
from pgdrill.waiting import poll_until

CONTAINER = "postgres"
_CACHE: dict[tuple, "CnpgTarget"] = {}
_CACHE_LOCK = threading.Lock()


class CnpgTarget:
    """A CNPG Cluster and its object store, driven through the Kubernetes API."""

    name = "cnpg"

    def __init__(self, config: CnpgConfig, kube: Kube) -> None:
        self.config = config
        self.kube = kube
        self.addresses = (ServiceAddresses(config.port) if config.connection == SERVICE
                          else PortForwards(kube, config.port))
        self._checked = False
        self._passwords: dict[tuple[str, str], dict[str, str]] = {}
        self._credentials: S3Credentials | None = None

    @classmethod
    def from_configuration(cls, cfg: dict, secrets: dict | None = None) -> "CnpgTarget":
        """One target per configuration and process: port-forward listeners a load uses must
        outlive the activity that started it."""
        config = CnpgConfig.from_configuration(cfg)
        flat = {k: v for entries in (secrets or {}).values() if isinstance(entries, dict)
                for k, v in entries.items() if str(k).startswith("KUBERNETES_")}
        key = (config, tuple(sorted((k, str(v)) for k, v in flat.items())))
        with _CACHE_LOCK:
            if key not in _CACHE:
                _CACHE[key] = cls(config, Kube(api_client(flat)))
            return _CACHE[key]

    # -- what the drill is pointed at ---------------------------------------------------
    def _cluster(self) -> dict:
        try:
            return self.kube.cluster(self.config.namespace, self.config.cluster)
        except NotFound:
            raise PreflightRefused(
                f"there is no CNPG Cluster {self.config.namespace}/{self.config.cluster} "
                f"(API {self.kube.host})",
                fix="set cluster and namespace to an existing Cluster (kubectl get clusters "
                    "-A), and check the kubeconfig context") from None

    def source(self, cluster: dict | None = None) -> SourceCluster:
        cluster = cluster or self._cluster()
        store_doc = None
        for plugin in (cluster.get("spec") or {}).get("plugins") or []:
            store = (plugin.get("parameters") or {}).get("barmanObjectName")
            if store:
                store_doc = self.kube.get_custom(PLUGIN_GROUP, PLUGIN_VERSION,
                                                 self.config.namespace, "objectstores", store)
        return read_source(cluster, store_doc, namespace=self.config.namespace)

    def s3_credentials(self) -> S3Credentials:
        if self._credentials is None:
            if not self.config.credentials_file:
                raise PreflightRefused(
                    "the cnpg target needs the SOPS/age file of the cnpg-backup-s3 Secret",
                    fix="set `credentials:` in the environment file (or a secrets entry "
                        "{type: sops, file: ...})")
            identities = [self.config.age_identity_file] if self.config.age_identity_file \
                else None
            self._credentials = load_s3_credentials(self.config.credentials_file, identities)
        return self._credentials

    # -- Target protocol: checks --------------------------------------------------------
    def check_ready(self) -> None:
        """Once per process: the API answers, the Cluster exists and backs up to S3, the
        restore namespace exists, the superuser Secret and the SOPS file can be read. Later
        calls are free (mid-drill the cluster is expected to be unhealthy)."""
        if self._checked:
            return
        cluster = self._cluster()
        self.source(cluster)
        if not self.kube.namespace_exists(self.config.restore_namespace):
            raise PreflightRefused(
                f"the restore namespace {self.config.restore_namespace} does not exist",
                fix=f"kubectl create namespace {self.config.restore_namespace} (pgdrill "
                    "restores only into an isolated namespace it does not create)")
        self._password(self.config.namespace, f"{self.config.cluster}-superuser",
                       hint="set spec.enableSuperuserAccess: true on the Cluster (staging), "
                            "so that CNPG creates the <cluster>-superuser Secret")
        self.s3_credentials()
        self._checked = True

    def credentials_source(self) -> dict:
        return {**self.s3_credentials().describe(),
                "restore_secret": f"{self.config.restore_namespace}/cnpg-backup-s3 (created "
                                  "from the file for the restore, deleted after)"}

    def facts(self) -> dict:
        cluster = self._cluster()
        source = self.source(cluster)
        facts = {"kind": "cnpg", "api": self.kube.host, "cluster": self.config.cluster,
                 "namespace": self.config.namespace, "connection": self.config.connection,
                 **cluster_facts(cluster), "backup_style": source.style,
                 "archive": source.archive, "server_name": source.server_name,
                 "operator_version": self._operator_version()}
        try:
            facts["kubernetes_version"] = self.kube.version().get("gitVersion")
        except PgdrillError:
            facts["kubernetes_version"] = None
        return facts

    def _operator_version(self) -> str | None:
        try:
            pods = self.kube.pods(self.config.operator_namespace,
                                  "app.kubernetes.io/name=cloudnative-pg")
        except PgdrillError:
            return None
        for pod in pods:
            for container in (pod.get("spec") or {}).get("containers") or []:
                image = container.get("image") or ""
                if ":" in image:
                    return image.rsplit(":", 1)[1]
        return None

    def cluster_identity(self) -> str:
        with self.connect(self.primary(), "postgres") as conn:
            return str(conn.execute(
                "SELECT system_identifier FROM pg_control_system()").fetchone()[0])

    # -- instances and connections ------------------------------------------------------
    def _pods(self) -> list[dict]:
        return live_pods(self.kube.pods(self.config.namespace, self.config.selector))

    def _instance(self, pod: dict, role: Role | None = None, *, namespace: str | None = None,
                  secret: str | None = None) -> Instance:
        ns = namespace or self.config.namespace
        host, port = self.addresses.pod(ns, pod)
        return Instance(name=pod["metadata"]["name"], role=role or pod_role(pod), host=host,
                        port=port, dbname="app", user="postgres", sslmode=self.config.sslmode,
                        password_source=f"secret {ns}/{secret or self.config.cluster + '-superuser'}")

    def instances(self) -> list[Instance]:
        return [self._instance(p) for p in self._pods()]

    def _primary_name(self) -> str:
        pod = primary_pod(self._cluster(), self._pods())
        if pod is None:
            raise TargetError(f"Cluster {self.config.namespace}/{self.config.cluster} has no "
                              f"primary right now", fix="wait for the failover to finish")
        return pod["metadata"]["name"]

    def primary(self) -> Instance:
        cluster = self._cluster()
        pod = primary_pod(cluster, self._pods())
        if pod is None:
            raise TargetError(f"Cluster {self.config.namespace}/{self.config.cluster} has no "
                              f"primary right now (currentPrimary "
                              f"{(cluster.get('status') or {}).get('currentPrimary')})",
                              fix="wait for the failover to finish")
        return self._instance(pod, Role.PRIMARY)

    def _password(self, namespace: str, secret: str, hint: str | None = None) -> dict[str, str]:
        key = (namespace, secret)
        if key not in self._passwords:
            try:
                values = self.kube.secret_values(namespace, secret)
            except NotFound:
                raise PreflightRefused(f"Secret {namespace}/{secret} does not exist",
                                       fix=hint or "check the Cluster's status") from None
            if not values.get("password"):
                raise PreflightRefused(f"Secret {namespace}/{secret} has no password key")
            self._passwords[key] = values
        return self._passwords[key]

    def _secret_for(self, instance: Instance) -> tuple[str, str]:
        source = (instance.password_source or "").removeprefix("secret ")
        namespace, _, secret = source.partition("/")
        return namespace, secret

    def connect(self, instance: Instance, dbname: str | None = None) -> psycopg.Connection:
        namespace, secret = self._secret_for(instance)
        values = self._password(namespace, secret)
        try:
            return psycopg.connect(instance.conninfo(dbname), user=values.get("username")
                                   or instance.user, password=values["password"],
                                   autocommit=True)
        except psycopg.OperationalError as exc:
            message = redact(str(exc).strip(), [values["password"]])
            raise TargetError(f"cannot connect to {instance.name} ({instance.host}:"
                              f"{instance.port}, {self.config.connection}): {message}",
                              fix="check the pod is running and the connection mode "
                                  "(cnpg_connection)") from None

    def client_env(self, instance: Instance) -> dict[str, str]:
        namespace, secret = self._secret_for(instance)
        values = self._password(namespace, secret)
        return {"PGPASSWORD": values["password"], "PGUSER": values.get("username") or "postgres",
                "PGSSLMODE": self.config.sslmode}

    def load_connection(self, dbname: str) -> LoadConnection:
        """The primary as the -rw Service (in-cluster) or a port-forward that follows the
        primary, as the application's user (`<cluster>-app` Secret)."""
        values = self._password(self.config.namespace, f"{self.config.cluster}-app")
        host, port = self.addresses.primary(self.config.namespace, self.config.cluster,
                                            self._primary_name)
        user = values.get("username") or "app"
        return LoadConnection(
            f"host={host} port={port} dbname={dbname} user={user} "
            f"sslmode={self.config.sslmode} target_session_attrs=read-write connect_timeout=2",
            env={"PGPASSWORD": values["password"]})

    def close(self) -> None:
        self.addresses.close()

    def save_logs(self, folder, since) -> list[str]:
        """The operator's pods, the source's instance pods and the recovery Cluster's pods
        (its recovery Job too), from `since` on, redacted (Secret values and S3 keys)."""
        from pgdrill.logs import save_log

        secrets = [v for values in self._passwords.values() for v in values.values()]
        if self._credentials is not None:
            secrets += list(self._credentials.secret_values())
        seconds = max(1, int((datetime.now(UTC) - since).total_seconds()) + 1)
        groups = [(self.config.operator_namespace, "app.kubernetes.io/name=cloudnative-pg"),
                  (self.config.namespace, f"cnpg.io/cluster={self.config.cluster}"),
                  (self.config.restore_namespace, f"cnpg.io/cluster={self.config.restore_cluster}")]
        written = []
        for namespace, selector in groups:
            try:
                pods = self.kube.pods(namespace, selector)
            except PgdrillError as exc:
                say(f"cannot list pods for logs in {namespace}: {exc.message}")
                continue
            for pod in pods:
                name = pod["metadata"]["name"]
                try:
                    text = self.kube.pod_log(namespace, name, since_seconds=seconds)
                except PgdrillError as exc:
                    say(f"cannot read the log of {namespace}/{name}: {exc.message}")
                    continue
                label = f"{namespace}.{name}.log"
                if save_log(folder, label, text, since, secrets):
                    written.append(label)
        return written

    # -- faults -------------------------------------------------------------------------
    def kill_primary(self) -> Instance:
        primary = self.primary()
        self.kube.delete_pod(self.config.namespace, primary.name, grace_period_seconds=1)
        say(f"deleted the primary pod {self.config.namespace}/{primary.name} "
            f"(grace period 1s)")
        return primary

    def drop_storage(self, instance: Instance) -> Instance:
        """As `kubectl cnpg destroy`: the instance's PVCs (data, WAL, tablespaces), then its
        pod; CNPG re-creates the instance from the primary."""
        ns = self.config.namespace
        pvcs = [p["metadata"]["name"] for p in self.kube.pvcs(
            ns, f"cnpg.io/cluster={self.config.cluster},cnpg.io/instanceName={instance.name}")]
        pvcs = pvcs or [instance.name]
        for pvc in pvcs:
            self.kube.delete_pvc(ns, pvc)
        self.kube.delete_pod(ns, instance.name, grace_period_seconds=1)
        say(f"dropped the storage of {instance.name} ({instance.role}): PVC "
            f"{', '.join(pvcs)} and the pod deleted")
        return instance

    def corrupt_page(self, table: str, database: str = "app") -> dict:
        """Physical corruption by exec in the primary's pod (`dd` over $PGDATA/<file>)."""
        primary = self.primary()

        def overwrite(relpath: str, offset: int, length: int) -> None:
            script = ('dd if=/dev/urandom of="$PGDATA/$1" bs=1 seek="$2" count="$3" '
                      'conv=notrunc,fsync status=none')
            out, err, code = self.kube.exec(self.config.namespace, primary.name, CONTAINER,
                                            ["sh", "-c", script, "sh", relpath, str(offset),
                                             str(length)])
            if code != 0:
                raise TargetError(f"overwriting {relpath} in pod {primary.name} failed "
                                  f"(exit {code}): {(err or out).strip()[:300]}",
                                  fix="the drill needs pods/exec on the instance pods")

        with self.connect(primary, database) as conn:
            record = {"instance": primary.name, **corruption.corrupt_page(conn, table, overwrite)}
        say(f"corrupted block {record['block']} of {table} on {primary.name}: "
            + (f"detected ({record['error']})" if record["detected"] else "NOT detected"))
        return record

    # -- backups ------------------------------------------------------------------------
    def backup(self, *, timeout: float = 900) -> Backup:
        source = self.source()
        name = f"{self.config.cluster[:30]}-pgdrill-{datetime.now(UTC):%Y%m%d%H%M%S}"
        doc = backup_manifest(source, name)
        self.kube.create_custom(doc)
        say(f"created Backup {self.config.namespace}/{name} (method {doc['spec']['method']})")
        last = {"phase": None}

        def finished() -> dict | None:
            obj = self.kube.get_custom(CNPG_GROUP, CNPG_VERSION, self.config.namespace,
                                       "backups", name)
            phase = (obj.get("status") or {}).get("phase")
            if phase != last["phase"]:
                last["phase"] = phase
                say(f"  Backup {name}: {phase or 'pending'}")
            return obj if phase in ("completed", "failed", "walArchivingFailing") else None

        try:
            obj = poll_until(finished, timeout=timeout, interval=1,
                             what=f"Backup {name} to complete")
        except PgdrillError as exc:
            raise TargetError(f"Backup {self.config.namespace}/{name} did not complete in "
                              f"{timeout:.0f}s (phase {last['phase'] or 'pending'})",
                              fix="kubectl describe backup; read the operator's log") from exc
        backup = catalog.from_backup_object(obj)
        if not backup.completed:
            status = obj.get("status") or {}
            raise TargetError(f"Backup {self.config.namespace}/{name} ended "
                              f"{status.get('phase')}: {status.get('error') or 'no error given'}",
                              fix="kubectl describe backup " + name + " -n "
                                  + self.config.namespace + "; check ContinuousArchiving and "
                                  "the object store credentials")
        return self._with_catalog_facts(backup)

    def _with_catalog_facts(self, backup: Backup) -> Backup:
        """The Backup object's facts completed from the object store's backup.info (LSNs,
        WAL, timeline, size): the object may lack some (plugin backups, older operators)."""
        import dataclasses

        stored = {b.id: b for b in self.list_backups()}.get(backup.id)
        if stored is None:
            raise TargetError(f"Backup {backup.name} completed with backupId {backup.id}, but "
                              f"{self.source().archive} holds no such backup",
                              fix="check the Cluster's destinationPath and serverName")
        fields = ("begin_time", "end_time", "begin_wal", "end_wal", "timeline", "begin_lsn",
                  "end_lsn", "size")
        return dataclasses.replace(backup, **{f: getattr(backup, f) or getattr(stored, f)
                                              for f in fields})

    def backup_objects(self) -> list[Backup]:
        docs = self.kube.list_custom(CNPG_GROUP, CNPG_VERSION, self.config.namespace, "backups")
        return [catalog.from_backup_object(d) for d in docs
                if (d.get("spec") or {}).get("cluster", {}).get("name") == self.config.cluster]

    def list_backups(self) -> list[Backup]:
        """From the object store (what a restore can use), oldest first."""
        from botocore.exceptions import BotoCoreError, ClientError

        from pgdrill.s3client import s3_client

        source = self.source()
        credentials = self.s3_credentials()
        endpoint = source.endpoint_url or credentials.endpoint
        try:
            return catalog.list_store_backups(s3_client(endpoint, credentials),
                                              source.destination_path, source.server_name)
        except (BotoCoreError, ClientError) as exc:
            raise TargetError(f"cannot list the backups in {source.archive} at {endpoint}: "
                              f"{redact(str(exc), credentials.secret_values())}",
                              fix="check the endpoint and the credentials in "
                                  f"{credentials.source}") from None

    def backup_health(self, max_backup_age_seconds: float | None = None) -> dict:
        """Step 1 of the safe workflow on CNPG: ScheduledBackups present, not suspended and on
        time, the last successful backup recent, a first recoverability point, archiving
        working (pgdrill.targets.cnpg.backup_health)."""
        from datetime import timedelta

        from pgdrill.targets.cnpg.backup_health import assess_backups

        ns = self.config.namespace
        cluster = self._cluster()
        source = self.source(cluster)
        store = (self.kube.get_custom(PLUGIN_GROUP, PLUGIN_VERSION, ns, "objectstores",
                                      source.object_store) if source.object_store else None)
        health = assess_backups(
            cluster, self.kube.list_custom(CNPG_GROUP, CNPG_VERSION, ns, "scheduledbackups"),
            self.kube.list_custom(CNPG_GROUP, CNPG_VERSION, ns, "backups"),
            now=datetime.now(UTC), object_store=store, server_name=source.server_name,
            max_backup_age=(timedelta(seconds=float(max_backup_age_seconds))
                            if max_backup_age_seconds else None))
        return health.to_dict()

    def archive(self) -> str:
        return self.source().archive

    def backup_destination(self) -> str:
        source = self.source()
        return (f"{source.archive} (destinationPath {source.destination_path}, serverName "
                f"{source.server_name}, {source.style} object store)")

    def find_restore_point(self, name: str, since_lsn: str) -> str | None:
        """pg_waldump by exec in the primary's pod over its pg_wal (pgdrill.walscan); no
        pods/exec permission or no pg_waldump there: "cannot tell", never a refusal."""
        from pgdrill import walscan

        primary = self.primary()
        where = f"pod {self.config.namespace}/{primary.name} $PGDATA/pg_wal"

        def dump(links: dict[str, str], args: list[str]) -> tuple[int, str, str]:
            try:
                out, err, code = self.kube.exec(self.config.namespace, primary.name, CONTAINER,
                                                walscan.pod_dump_script(links, args),
                                                timeout=walscan.WALDUMP_TIMEOUT)
            except PgdrillError as exc:
                raise WalNotAvailable(f"cannot run pg_waldump in {where}: {exc.message}") \
                    from None
            return code, out, err

        with self.connect(primary, "postgres") as conn:
            return walscan.find_restore_point(conn, name, since_lsn, dump, where)

    # -- restore ------------------------------------------------------------------------
    def restore(self, backup: Backup, target: RecoveryTarget, *,
                timeout: float = 900) -> RestoreResult:
        self.cleanup_restore()
        docs = restore_documents(self.config, self.source(), backup, target,
                                 self.s3_credentials())
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        say(f"restoring backup {backup.id} into {self.config.restore_namespace}/"
            f"{self.config.restore_cluster} up to {target.describe()}")
        create_restore(self.kube, docs)
        _, seen = wait_restored(self.kube, self.config, timeout)
        instance = self.restored_instance()
        if instance is None:
            raise TargetError(f"the recovery Cluster {self.config.restore_cluster} is healthy but "
                              f"has no primary pod")
        poll_until(lambda: self._accepts(instance), timeout=60, interval=0.5,
                   what=f"{instance.name} to accept connections")
        total = round(time.monotonic() - t0, 3)
        return RestoreResult(instance=instance, backup=backup, target=target,
                             started_at=started_at, phases=restore_phases(seen, total),
                             phase_details=seen)

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
        return self._instance(primaries[0], Role.RESTORE, namespace=ns,
                              secret=f"{self.config.restore_cluster}-superuser")

    def cleanup_restore(self) -> None:
        removed = remove_restore(self.kube, self.config)
        self._passwords.pop((self.config.restore_namespace,
                             f"{self.config.restore_cluster}-superuser"), None)
        if removed:
            say(f"removed restore-test: {', '.join(removed)}")

    # -- health -------------------------------------------------------------------------
    def wait_ready(self, *, timeout: float = 300, since: float | None = None) -> HealReport:
        """Until CNPG reports the Cluster healthy (phase, readyInstances, Ready, no failover
        in progress) and the primary commits a write through the client path. A failover
        stuck with targetPrimary != currentPrimary fails naming the phase and conditions."""
        t0 = since if since is not None else time.monotonic()
        writable_at: list[float] = []

        def healthy() -> HealReport | None:
            cluster = self._cluster()
            if not writable_at and self._primary_writable():
                writable_at.append(time.monotonic())
            if unhealthy_reasons(cluster) or not writable_at:
                return None
            pods = self._pods()
            if not all(pod_ready(p) for p in pods):
                return None
            now = time.monotonic()
            return HealReport(writable_primary_seconds=round(writable_at[0] - t0, 3),
                              healthy_seconds=round(now - t0, 3),
                              primary=self._primary_name(),
                              instances=[self._instance(p) for p in pods],
                              details={"operator": operator_failover(cluster),
                                       "ha": cluster_facts(cluster)})

        try:
            return poll_until(healthy, timeout=timeout, interval=0.5,
                              what=f"Cluster {self.config.namespace}/{self.config.cluster} to be "
                                   "healthy")
        except PgdrillError:
            cluster = self._cluster()
            status = cluster.get("status") or {}
            raise TargetError(
                f"Cluster {self.config.namespace}/{self.config.cluster} did not heal within "
                f"{timeout:.0f}s: " + "; ".join(unhealthy_reasons(cluster) or ["no writable "
                "primary through the client path"]) + f"; phase {status.get('phase')!r}, "
                f"conditions: {describe_conditions(cluster)}",
                fix="kubectl cnpg status " + self.config.cluster + " -n " + self.config.namespace
                    + "; read the operator's log (saved in the run folder)") from None

    def _primary_writable(self) -> bool:
        try:
            with self.connect(self.primary(), "postgres") as conn:
                return bool(conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0])
        except (TargetError, psycopg.Error):
            return False


