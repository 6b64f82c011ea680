"""The cnpg target: the same drills against a real CloudNativePG cluster, through the
Kubernetes API (CNPG's CRDs) and PostgreSQL's own protocol.

- instances and roles from pod labels (`cnpg.io/cluster`, `cnpg.io/instanceRole`) and the
  Cluster's `status.currentPrimary`; credentials from the `<cluster>-superuser` Secret;
- faults: the primary pod deleted with grace period 1; an instance's PVCs then its pod deleted
  (a lost volume); a page overwritten by exec in the primary's pod;
- backups: a `Backup` object, waited for until `completed`; listed from the object store;
- restore points looked up in the primary's pg_wal with pg_waldump by exec in its pod;
- restore: a recovery Cluster in restore-test (pgdrill.targets.cnpg.restore);
- health: "Cluster in healthy state", Ready, currentPrimary == targetPrimary, plus a write
  through the primary (client side);
- cluster loss (pgdrill.targets.cnpg.rebuild): the Cluster and its PVCs deleted, then a new
  Cluster of the same name recovered from the old archive under a new serverName;
- Flux (pgdrill.targets.cnpg.flux): the Kustomization or HelmRelease that applies the
  Cluster, from its labels, suspended before a cluster loss when `flux_suspend` is set.

The target never creates, recreates or wipes the source cluster on its own: only the isolated
copy, and — when the cluster-loss drill asks, with the cluster-loss Role — the rebuild."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg

from pgdrill.core.console import say
from pgdrill.core.errors import PgdrillError, PreflightRefused, TargetError
from pgdrill.core.model import (
    Instance,
    LoadConnection,
    Role,
)
from pgdrill.credentials.secret import S3Credentials, load_s3_credentials, redact
from pgdrill.targets.cnpg.backups import CnpgBackups
from pgdrill.targets.cnpg.config import SERVICE, CnpgConfig
from pgdrill.targets.cnpg.connections import PortForwards, ServiceAddresses
from pgdrill.targets.cnpg.faults import CnpgFaults
from pgdrill.targets.cnpg.flux import CnpgFlux
from pgdrill.targets.cnpg.health import CnpgHealth
from pgdrill.targets.cnpg.kube import (
    PLUGIN_GROUP,
    PLUGIN_VERSION,
    Kube,
    NotFound,
    api_client,
)
from pgdrill.targets.cnpg.manifests import (
    SourceCluster,
    read_source,
    restore_requirements,
    restore_secret_name,
)
from pgdrill.targets.cnpg.rebuild import CnpgRebuild
from pgdrill.targets.cnpg.restoring import CnpgRestoreTest
from pgdrill.targets.cnpg.status import (
    cluster_facts,
    live_pods,
    pod_role,
    primary_pod,
)

_CACHE: dict[tuple, CnpgTarget] = {}
_CACHE_LOCK = threading.Lock()


def image_version(image: str) -> str | None:
    """The version an image reference names: its tag (`…/cloudnative-pg:1.30.0`, also when
    pinned as `:1.30.0@sha256:…`), else its digest (`@sha256:…`), else None. A registry port
    (`registry:5000/cnpg`) is not a tag."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return f"@{digest}" if digest else None


def pod_containers(pod: dict) -> list[str]:
    """Every container of a pod, init containers first: the barman-cloud plugin's sidecar is
    a native init container (restartPolicy Always) and logs there."""
    spec = pod.get("spec") or {}
    return [
        c["name"]
        for group in ("initContainers", "containers")
        for c in spec.get(group) or []
        if c.get("name")
    ]


class CnpgTarget(CnpgFaults, CnpgBackups, CnpgRestoreTest, CnpgHealth, CnpgRebuild, CnpgFlux):
    """A CNPG Cluster and its object store, driven through the Kubernetes API."""

    name = "cnpg"

    def __init__(self, config: CnpgConfig, kube: Kube) -> None:
        self.config = config
        self.kube = kube
        self.addresses = (
            ServiceAddresses(config.port)
            if config.connection == SERVICE
            else PortForwards(kube, config.port)
        )
        self._checked = False
        self._passwords: dict[tuple[str, str], dict[str, str]] = {}
        self._credentials: S3Credentials | None = None

    @classmethod
    def from_configuration(cls, cfg: dict, secrets: dict | None = None) -> CnpgTarget:
        """One target per configuration and process: port-forward listeners a load uses must
        outlive the activity that started it."""
        config = CnpgConfig.from_configuration(cfg)
        flat = {
            k: v
            for entries in (secrets or {}).values()
            if isinstance(entries, dict)
            for k, v in entries.items()
            if str(k).startswith("KUBERNETES_")
        }
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
                "-A), and check the kubeconfig context",
            ) from None

    def source(self, cluster: dict | None = None) -> SourceCluster:
        cluster = cluster or self._cluster()
        store_doc = None
        for plugin in (cluster.get("spec") or {}).get("plugins") or []:
            store = (plugin.get("parameters") or {}).get("barmanObjectName")
            if store:
                store_doc = self.kube.get_custom(
                    PLUGIN_GROUP, PLUGIN_VERSION, self.config.namespace, "objectstores", store
                )
        return read_source(cluster, store_doc, namespace=self.config.namespace)

    def s3_credentials(self) -> S3Credentials:
        if self._credentials is None:
            if not self.config.credentials_file:
                raise PreflightRefused(
                    "the cnpg target needs the SOPS/age file of the cnpg-backup-s3 Secret",
                    fix="set `credentials:` in the environment file (or a secrets entry "
                    "{type: sops, file: ...})",
                )
            identities = [self.config.age_identity_file] if self.config.age_identity_file else None
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
        copied = restore_requirements(
            self.source(cluster),
            ca_bundle=self.config.s3_ca_bundle,
            iam_role_from_node=self.config.restore_iam_role_from_node,
        )
        if copied:
            say(f"restore-test gets copies of the source's {', '.join(copied)}")
        if not self.kube.namespace_exists(self.config.restore_namespace):
            raise PreflightRefused(
                f"the restore namespace {self.config.restore_namespace} does not exist",
                fix=f"kubectl create namespace {self.config.restore_namespace} (pgdrill "
                "restores only into an isolated namespace it does not create)",
            )
        self._password(
            self.config.namespace,
            f"{self.config.cluster}-superuser",
            hint="set spec.enableSuperuserAccess: true on the Cluster (staging), "
            "so that CNPG creates the <cluster>-superuser Secret",
        )
        self.s3_credentials()
        self._checked = True

    def credentials_source(self) -> dict:
        return {
            **self.s3_credentials().describe(),
            "restore_secret": f"{self.config.restore_namespace}/"
            f"{restore_secret_name(self.config.restore_cluster)} (created "
            "from the file for the restore, deleted after)",
        }

    def facts(self) -> dict:
        cluster = self._cluster()
        source = self.source(cluster)
        facts = {
            "kind": "cnpg",
            "api": self.kube.host,
            "cluster": self.config.cluster,
            "namespace": self.config.namespace,
            "connection": self.config.connection,
            **cluster_facts(cluster),
            "backup_style": source.style,
            "archive": source.archive,
            "server_name": source.server_name,
            "operator_version": self._operator_version(),
        }
        try:
            facts["kubernetes_version"] = self.kube.version().get("gitVersion")
        except PgdrillError:
            facts["kubernetes_version"] = None
        return facts

    def _operator_version(self) -> str | None:
        try:
            pods = self.kube.pods(
                self.config.operator_namespace, "app.kubernetes.io/name=cloudnative-pg"
            )
        except PgdrillError:
            return None
        for pod in pods:
            for container in (pod.get("spec") or {}).get("containers") or []:
                version = image_version(container.get("image") or "")
                if version:
                    return version
        return None

    def cluster_identity(self) -> str:
        with self.connect(self.primary(), "postgres") as conn:
            return str(
                conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
            )

    # -- instances and connections ------------------------------------------------------
    def _pods(self) -> list[dict]:
        return live_pods(self.kube.pods(self.config.namespace, self.config.selector))

    def _instance(
        self,
        pod: dict,
        role: Role | None = None,
        *,
        namespace: str | None = None,
        secret: str | None = None,
    ) -> Instance:
        ns = namespace or self.config.namespace
        host, port = self.addresses.pod(ns, pod)
        return Instance(
            name=pod["metadata"]["name"],
            role=role or pod_role(pod),
            host=host,
            port=port,
            dbname="app",
            user="postgres",
            sslmode=self.config.sslmode,
            password_source=f"secret {ns}/{secret or self.config.cluster + '-superuser'}",
        )

    def instances(self) -> list[Instance]:
        return [self._instance(p) for p in self._pods()]

    def _primary_name(self) -> str:
        pod = primary_pod(self._cluster(), self._pods())
        if pod is None:
            raise TargetError(
                f"Cluster {self.config.namespace}/{self.config.cluster} has no primary right now",
                fix="wait for the failover to finish",
            )
        return pod["metadata"]["name"]

    def primary(self) -> Instance:
        cluster = self._cluster()
        pod = primary_pod(cluster, self._pods())
        if pod is None:
            raise TargetError(
                f"Cluster {self.config.namespace}/{self.config.cluster} has no "
                f"primary right now (currentPrimary "
                f"{(cluster.get('status') or {}).get('currentPrimary')})",
                fix="wait for the failover to finish",
            )
        return self._instance(pod, Role.PRIMARY)

    def _password(self, namespace: str, secret: str, hint: str | None = None) -> dict[str, str]:
        key = (namespace, secret)
        if key not in self._passwords:
            try:
                values = self.kube.secret_values(namespace, secret)
            except NotFound:
                raise PreflightRefused(
                    f"Secret {namespace}/{secret} does not exist",
                    fix=hint or "check the Cluster's status",
                ) from None
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
            return psycopg.connect(
                instance.conninfo(dbname),
                user=values.get("username") or instance.user,
                password=values["password"],
                autocommit=True,
            )
        except psycopg.OperationalError as exc:
            message = redact(str(exc).strip(), [values["password"]])
            raise TargetError(
                f"cannot connect to {instance.name} ({instance.host}:"
                f"{instance.port}, {self.config.connection}): {message}",
                fix="check the pod is running and the connection mode (cnpg_connection)",
            ) from None

    def client_env(self, instance: Instance) -> dict[str, str]:
        namespace, secret = self._secret_for(instance)
        values = self._password(namespace, secret)
        return {
            "PGPASSWORD": values["password"],
            "PGUSER": values.get("username") or "postgres",
            "PGSSLMODE": self.config.sslmode,
        }

    def load_connection(self, dbname: str) -> LoadConnection:
        """The primary as the -rw Service (in-cluster) or a port-forward that follows the
        primary, as the application's user (`<cluster>-app` Secret)."""
        values = self._password(self.config.namespace, f"{self.config.cluster}-app")
        host, port = self.addresses.primary(
            self.config.namespace, self.config.cluster, self._primary_name
        )
        user = values.get("username") or "app"
        return LoadConnection(
            f"host={host} port={port} dbname={dbname} user={user} "
            f"sslmode={self.config.sslmode} target_session_attrs=read-write connect_timeout=2",
            env={"PGPASSWORD": values["password"]},
        )

    def close(self) -> None:
        self.addresses.close()

    def save_logs(self, folder, since) -> list[str]:
        """The operator's pods, the source's instance pods and the recovery Cluster's pods
        (its recovery Job too), from `since` on, redacted (Secret values and S3 keys)."""
        from pgdrill.evidence.logs import save_log

        # the passwords only: the Secrets' other keys (username, dbname, host, port) are not
        # secret, and masking "postgres" or "5432" mangled every path and port in the logs;
        # the keys that embed the password (uri, pgpass, jdbc-uri) are masked through it
        secrets = [
            values["password"] for values in self._passwords.values() if values.get("password")
        ]
        if self._credentials is not None:
            secrets += list(self._credentials.secret_values())
        seconds = max(1, int((datetime.now(UTC) - since).total_seconds()) + 1)
        groups = [
            (self.config.operator_namespace, "app.kubernetes.io/name=cloudnative-pg"),
            (self.config.namespace, f"cnpg.io/cluster={self.config.cluster}"),
            (self.config.restore_namespace, f"cnpg.io/cluster={self.config.restore_cluster}"),
        ]
        written = []
        for namespace, selector in groups:
            try:
                pods = self.kube.pods(namespace, selector)
            except PgdrillError as exc:
                say(f"cannot list pods for logs in {namespace}: {exc.message}")
                continue
            for pod in pods:
                name = pod["metadata"]["name"]
                for container in pod_containers(pod) or [None]:
                    try:
                        text = self.kube.pod_log(
                            namespace, name, container=container, since_seconds=seconds
                        )
                    except PgdrillError as exc:
                        say(
                            f"cannot read the log of {namespace}/{name}"
                            + (f" container {container}" if container else "")
                            + f": {exc.message}"
                        )
                        continue
                    label = f"{namespace}.{name}" + (f".{container}" if container else "") + ".log"
                    if save_log(folder, label, text, since, secrets):
                        written.append(label)
        return written
