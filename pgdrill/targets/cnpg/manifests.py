"""The Kubernetes manifests a drill creates on a CloudNativePG cluster: pure functions, no I/O
(except reading the CRDs shipped beside this module).

- `read_source` turns the source `Cluster` (and, for the barman-cloud plugin, its
  `ObjectStore`) into a `SourceCluster`: where its backups and WAL live.
- `backup_manifest` is the manual `Backup` of the source.
- `restore_manifests` are the recovery `Cluster` in `restore-test` (and, for the plugin, a copy
  of the ObjectStore there): it reads the SOURCE's destinationPath/serverName through an
  `externalClusters` entry and archives nowhere, so it can never write into the source's path.
- `rebuild_manifest` is the Cluster that rebuilds a destroyed source in place (same name) from
  its old archive, archiving under a new serverName (`rebuilt_server_name`).
- `validate_manifest` checks a doc against the CRD's openAPIV3Schema and the admission-webhook
  rules a schema cannot express.

CNPG rules and where they come from: /work/shared/docs/reference/cnpg.md (§ numbers below)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import UTC
from functools import cache
from pathlib import Path

import yaml

from pgdrill.core.errors import BadInput
from pgdrill.core.model import RecoveryTarget
from pgdrill.credentials.secret import SECRET_NAME

CNPG_API = "postgresql.cnpg.io/v1"
PLUGIN_API = "barmancloud.cnpg.io/v1"
PLUGIN_NAME = "barman-cloud.cloudnative-pg.io"
ORIGIN = "origin"  # the externalClusters entry the restore reads from
CRDS = Path(__file__).parent / "crds"
MAX_CLUSTER_NAME = 50  # CNPG webhook (§0)
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
S3_KEYS = {
    "accessKeyId": "ACCESS_KEY_ID",
    "secretAccessKey": "ACCESS_SECRET_KEY",
    "region": "REGION",
}  # credentials.REQUIRED_KEYS, as cnpg's samples name them (§2)
ARCHIVE_ONLY = ("tags", "historyTags")  # barman-cloud-backup/wal-archive options (§2)
ENDPOINT_CA_KEY = "ENDPOINT_CA"  # the endpoint's CA in the restore's credentials Secret


@dataclass(frozen=True)
class SourceCluster:
    """The cluster a drill backs up and restores from, and where its archive lives:
    `<destination_path>/<server_name>/{base,wals}` (§7).

    `style` is "in-tree" (`spec.backup.barmanObjectStore`) or "plugin" (barman-cloud plugin;
    then `object_store` names its ObjectStore). `configuration` is the
    BarmanObjectStoreConfiguration (in-tree block or ObjectStore `spec.configuration`)."""

    name: str
    namespace: str
    style: str
    destination_path: str
    server_name: str
    configuration: dict
    endpoint_url: str | None = None
    s3_credentials: dict | None = None
    wal_compression: str | None = None
    data_compression: str | None = None
    object_store: str | None = None
    image_name: str | None = None
    # only when no image could be pinned: a ClusterImageCatalog (cluster-scoped, so the
    # restore namespace can use it too) with the source's major
    image_catalog_ref: dict | None = None
    storage: dict | None = None
    # what a recovery in another namespace needs besides the bucket (restore_requirements):
    # the Cluster's serviceAccountTemplate (IAM role annotations) and the plugin's
    # ObjectStore spec.instanceSidecarConfiguration (env and resources of the sidecar and
    # the recovery Job)
    service_account_template: dict | None = None
    sidecar: dict | None = None

    @property
    def endpoint_ca(self) -> dict | None:
        """The object store's `endpointCA` (a Secret key of the source namespace)."""
        return self.configuration.get("endpointCA") or None

    @property
    def inherits_iam_role(self) -> bool:
        return bool((self.s3_credentials or {}).get("inheritFromIAMRole"))

    @property
    def archive(self) -> str:
        """`<destinationPath>/<serverName>/`, the folder barman-cloud writes under."""
        return f"{self.destination_path.rstrip('/')}/{self.server_name}/"


def _get(doc: dict, *keys: str):
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _barman_plugins(cluster_doc: dict) -> list[dict]:
    return [
        p
        for p in (_get(cluster_doc, "spec", "plugins") or [])
        if isinstance(p, dict) and p.get("name") == PLUGIN_NAME and p.get("enabled", True)
    ]


def read_source(
    cluster_doc: dict, object_store_doc: dict | None = None, *, namespace: str | None = None
) -> SourceCluster:
    """The source cluster from its `Cluster` manifest (plus its `ObjectStore` for the plugin).

    `namespace` is used when the manifest has none (applied with `-n`); it must agree with
    `metadata.namespace` otherwise. BadInput names what is missing or ambiguous."""
    if (
        not isinstance(cluster_doc, dict)
        or cluster_doc.get("kind") != "Cluster"
        or cluster_doc.get("apiVersion") != CNPG_API
    ):
        raise BadInput(
            f"the cluster manifest is not a CNPG Cluster (apiVersion {CNPG_API}, kind Cluster)",
            fix="pass the source Cluster's manifest, e.g. `kubectl get cluster NAME -n NS -o yaml`",
        )
    name = _get(cluster_doc, "metadata", "name")
    if not name:
        raise BadInput("the Cluster manifest has no metadata.name", fix="add metadata.name")
    ns = _get(cluster_doc, "metadata", "namespace")
    if ns and namespace and ns != namespace:
        raise BadInput(
            f"Cluster {name} is in namespace {ns}, not {namespace}",
            fix=f"pass --namespace {ns}, or the manifest of the cluster in {namespace}",
        )
    ns = ns or namespace
    if not ns:
        raise BadInput(
            f"Cluster {name} has no metadata.namespace and none was given",
            fix="add metadata.namespace or pass the namespace",
        )

    in_tree = _get(cluster_doc, "spec", "backup", "barmanObjectStore")
    plugins = _barman_plugins(cluster_doc)
    if in_tree and plugins:  # webhook: plugin archiver XOR barmanObjectStore (§2)
        raise BadInput(
            f"Cluster {name} has both spec.backup.barmanObjectStore and a "
            f"{PLUGIN_NAME} plugin: ambiguous (CNPG's webhook refuses it too)",
            fix="finish the migration to the plugin (drop barmanObjectStore), or "
            "remove the plugin entry",
        )
    if len(plugins) > 1:
        raise BadInput(
            f"Cluster {name} lists {len(plugins)} enabled {PLUGIN_NAME} plugins: ambiguous",
            fix="keep one barman-cloud plugin entry",
        )
    image_name, catalog = _source_image(cluster_doc, name, ns)
    common = {
        "name": name,
        "namespace": ns,
        "image_name": image_name,
        "image_catalog_ref": catalog,
        "storage": copy.deepcopy(_get(cluster_doc, "spec", "storage")),
        "service_account_template": copy.deepcopy(
            _get(cluster_doc, "spec", "serviceAccountTemplate")
        ),
    }

    if in_tree:
        configuration = copy.deepcopy(in_tree)
        # in-tree archive/backup: serverName else the Cluster name (§5)
        return _source(
            configuration,
            style="in-tree",
            where="spec.backup.barmanObjectStore",
            server_name=configuration.get("serverName") or name,
            **common,
        )
    if plugins:
        parameters = plugins[0].get("parameters") or {}
        store = parameters.get("barmanObjectName")
        if not store:
            raise BadInput(
                f"Cluster {name}: the {PLUGIN_NAME} plugin has no parameters.barmanObjectName",
                fix="name its ObjectStore there",
            )
        if object_store_doc is None:
            raise BadInput(
                f"Cluster {name} backs up through the barman-cloud plugin into "
                f"ObjectStore {store}, whose manifest was not given",
                fix=f"pass --object-store-manifest (kubectl get objectstore {store} "
                f"-n {ns} -o yaml)",
            )
        if (
            object_store_doc.get("kind") != "ObjectStore"
            or object_store_doc.get("apiVersion") != PLUGIN_API
        ):
            raise BadInput(
                f"the object store manifest is not an ObjectStore ({PLUGIN_API})",
                fix=f"pass ObjectStore {store}'s manifest",
            )
        store_name = _get(object_store_doc, "metadata", "name")
        store_ns = _get(object_store_doc, "metadata", "namespace") or ns
        if store_name != store or store_ns != ns:  # same namespace as the Cluster (§2)
            raise BadInput(
                f"the ObjectStore manifest is {store_ns}/{store_name}, Cluster {name} "
                f"uses {ns}/{store}",
                fix=f"pass ObjectStore {ns}/{store}'s manifest",
            )
        configuration = copy.deepcopy(_get(object_store_doc, "spec", "configuration") or {})
        # plugin archive/backup: parameters.serverName else the Cluster name (§5)
        return _source(
            configuration,
            style="plugin",
            where=f"ObjectStore {store} spec.configuration",
            server_name=parameters.get("serverName") or name,
            object_store=store,
            sidecar=copy.deepcopy(_get(object_store_doc, "spec", "instanceSidecarConfiguration")),
            **common,
        )
    raise BadInput(
        f"Cluster {name} has no backup configured: neither "
        f"spec.backup.barmanObjectStore nor a {PLUGIN_NAME} plugin in spec.plugins",
        fix="a drill needs backups in an object store; configure one of them",
    )


def _source(configuration: dict, *, where: str, **fields) -> SourceCluster:
    if not configuration.get("destinationPath"):
        raise BadInput(f"{where} has no destinationPath", fix="set it, e.g. s3://bucket/prefix/")
    others = [k for k in ("azureCredentials", "googleCredentials") if configuration.get(k)]
    if others or not configuration.get("s3Credentials"):
        raise BadInput(
            f"{where}: pgdrill restores from S3 (credentials Secret {SECRET_NAME}), "
            f"this object store has {', '.join(others) or 'no s3Credentials'}",
            fix="use an S3-compatible object store with s3Credentials",
        )
    return SourceCluster(
        destination_path=configuration["destinationPath"],
        configuration=configuration,
        endpoint_url=configuration.get("endpointURL"),
        s3_credentials=configuration["s3Credentials"],
        wal_compression=_get(configuration, "wal", "compression"),
        data_compression=_get(configuration, "data", "compression"),
        **fields,
    )


def check_name(name: str, what: str, *, cluster: bool = False) -> str:
    """A Cluster name: DNS-1035 label of at most 50 characters (CNPG webhook, §0); anything
    else: DNS-1123 subdomain of at most 253."""
    pattern, limit = (DNS_1035, MAX_CLUSTER_NAME) if cluster else (DNS_1123, 253)
    if len(name) > limit or not pattern.match(name):
        kind = (
            f"a DNS-1035 label (lower case letters, digits, '-', starting with a letter) "
            f"of at most {limit} characters"
            if cluster
            else f"a DNS-1123 name (lower case letters, digits, '-', '.') of at most {limit} "
            f"characters"
        )
        raise BadInput(f"{what} {name!r} is not {kind}", fix="choose a shorter or plainer name")
    return name


def backup_manifest(source: SourceCluster, name: str) -> dict:
    """The manual `Backup` of the source (§3): in-tree method `barmanObjectStore`, plugin
    method `plugin` with `pluginConfiguration.name`."""
    spec: dict = {"cluster": {"name": source.name}}
    if source.style == "plugin":
        spec |= {"method": "plugin", "pluginConfiguration": {"name": PLUGIN_NAME}}
    else:
        spec["method"] = "barmanObjectStore"
    return {
        "apiVersion": CNPG_API,
        "kind": "Backup",
        "metadata": {"name": check_name(name, "Backup name"), "namespace": source.namespace},
        "spec": spec,
    }


def _restore_configuration(source: SourceCluster, secret_name: str) -> dict:
    """The source's object-store configuration for reading: serverName explicit, archive-only
    options dropped, S3 credentials from the run's `secret_name` Secret (never values), and
    the endpoint's CA (`endpointCA`, a Secret of the source namespace) from the same Secret's
    ENDPOINT_CA key, which restore_documents fills from `s3_ca_bundle`."""
    configuration = {
        k: copy.deepcopy(v) for k, v in source.configuration.items() if k not in ARCHIVE_ONLY
    }
    if not source.inherits_iam_role:
        configuration["s3Credentials"] = {
            field: {"name": secret_name, "key": key} for field, key in S3_KEYS.items()
        }
    if source.endpoint_ca:
        configuration["endpointCA"] = {"name": secret_name, "key": ENDPOINT_CA_KEY}
    return configuration


def restore_requirements(
    source: SourceCluster, *, ca_bundle: str | None, iam_role_from_node: bool = False
) -> list[str]:
    """What a recovery in another namespace needs that the source namespace has, checked
    before any drill step: raises BadInput naming the fix, or returns what will be copied.
    - `endpointCA` is a Secret of the source namespace: the copy takes the CA from
      `s3_ca_bundle` (the PEM pgdrill's own S3 reads use), so that must be set;
    - the plugin's `instanceSidecarConfiguration` is copied into the ObjectStore copy, but an
      env var read from a Secret or ConfigMap (`valueFrom`) would not resolve there;
    - `inheritFromIAMRole` needs the role on the recovery pod: the Cluster's
      `serviceAccountTemplate` (e.g. IRSA's role-arn annotation) is copied; without one the
      role must come from the node (`restore_iam_role_from_node: true`)."""
    copied = []
    if source.endpoint_ca:
        if not ca_bundle:
            ref = source.endpoint_ca
            raise BadInput(
                f"Cluster {source.name}'s object store trusts the CA in Secret "
                f"{source.namespace}/{ref.get('name')} (key {ref.get('key')}), which a "
                f"recovery Cluster in another namespace cannot read",
                fix=f"save that CA as a PEM file and set settings.s3_ca_bundle to it (kubectl "
                f"get secret {ref.get('name')} -n {source.namespace} -o "
                f"jsonpath='{{.data.{ref.get('key')}}}' | base64 -d > ca.pem); pgdrill "
                f"copies it into restore-test and uses it for its own S3 reads",
            )
        copied.append("endpointCA (from s3_ca_bundle)")
    env = (source.sidecar or {}).get("env") or []
    indirect = [e.get("name") for e in env if isinstance(e, dict) and "valueFrom" in e]
    if indirect:
        raise BadInput(
            f"ObjectStore {source.object_store}'s instanceSidecarConfiguration reads "
            f"{', '.join(map(str, indirect))} from a Secret or ConfigMap of "
            f"{source.namespace} (valueFrom): the recovery Job in another namespace could not "
            f"resolve it",
            fix="give those variables literal values in the ObjectStore, or run the drill "
            "with restore_namespace set to a namespace that holds the same Secret",
        )
    if source.sidecar:
        copied.append("instanceSidecarConfiguration")
    if source.inherits_iam_role:
        if source.service_account_template:
            copied.append("serviceAccountTemplate (IAM role)")
        elif not iam_role_from_node:
            raise BadInput(
                f"Cluster {source.name} reads the bucket with inheritFromIAMRole but has no "
                f"spec.serviceAccountTemplate: the role reaches its pods some other way (a "
                f"node role, or an identity bound to its ServiceAccount), which a recovery "
                f"Cluster in another namespace may not get",
                fix="give the Cluster a serviceAccountTemplate with the role annotation "
                "(pgdrill copies it), or set settings.restore_iam_role_from_node: true "
                "when the nodes' own role can read the bucket",
            )
    return copied


def recovery_target(recovery: RecoveryTarget, backup_id: str | None) -> dict | None:
    """`bootstrap.recovery.recoveryTarget` (§4): one of targetTime/targetLSN/targetName, and
    `backupID` where CNPG's webhook needs it (targetName) or one was chosen."""
    target: dict = {}
    if recovery.kind == "time":
        target["targetTime"] = recovery.time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    elif recovery.kind == "lsn":
        target["targetLSN"] = recovery.lsn
    elif recovery.kind == "restore_point":
        if not backup_id:  # webhook "BackupID is missing" (§0, §4)
            raise BadInput(
                f"recovery to restore point {recovery.name!r} needs the ID of the "
                f"backup to start from (CNPG's webhook demands backupID with "
                f"targetName)",
                fix="pass the backup ID (e.g. --backup-id 20260101T000000)",
            )
        target["targetName"] = recovery.name
    if backup_id:
        target["backupID"] = backup_id
    return target or None


def _source_image(cluster_doc: dict, name: str, namespace: str) -> tuple[str | None, dict | None]:
    """The PostgreSQL image a restore of this Cluster must run (the same major, §4):
    `spec.imageName`; else, for a Cluster on an image catalog, the image its pods run
    (`status.image`, which CNPG resolves from the catalog); else a ClusterImageCatalog
    reference as it is. Without any of them the operator would pick its default image,
    perhaps another major, and the restore would fail or lie. An ImageCatalog (namespaced)
    with no status to pin from is refused: the restore namespace cannot read it."""
    image = _get(cluster_doc, "spec", "imageName")
    if image:
        return image, None
    catalog = _get(cluster_doc, "spec", "imageCatalogRef")
    running = _get(cluster_doc, "status", "image")
    if running:
        return running, None
    if not catalog:
        return None, None
    if catalog.get("kind") == "ClusterImageCatalog":
        return None, copy.deepcopy(catalog)
    raise BadInput(
        f"Cluster {name} takes its image from ImageCatalog {catalog.get('name')!r} (major "
        f"{catalog.get('major')}) of namespace {namespace}, and the manifest has no "
        "status.image to pin it from: a Cluster in another namespace cannot use that catalog",
        fix="read the live Cluster (its status.image names the image), or put the image in a "
        "ClusterImageCatalog",
    )


def restore_secret_name(restore_cluster: str) -> str:
    """The S3 credentials Secret of one restore: named after its recovery Cluster, so that
    drills of two clusters restoring into the same namespace at once (two CronJobs on the
    same schedule) never delete each other's credentials."""
    return check_name(f"{restore_cluster}-backup-s3", "restore credentials Secret name")


def restore_manifests(
    source: SourceCluster,
    recovery: RecoveryTarget,
    *,
    namespace: str = "restore-test",
    name: str | None = None,
    backup_id: str | None = None,
    secret_name: str | None = None,
) -> list[dict]:
    """The docs that restore `source` into `namespace`: for the plugin a copy of its
    ObjectStore there (the plugin reads an ObjectStore of the recovering Cluster's namespace),
    then the recovery Cluster. The credentials Secret `secret_name` (default
    restore_secret_name) is only referenced: it is created at run time from the SOPS file.

    The Cluster bootstraps from `externalClusters[origin]` = the source's destinationPath and
    explicit serverName (defaults differ per context, §5), and has no `spec.backup` and no
    `spec.plugins`: it archives nowhere, so never into the source's path (§5)."""
    name = check_name(name or f"{source.name}-restore", "restore Cluster name", cluster=True)
    check_name(namespace, "restore namespace")
    configuration = _restore_configuration(source, secret_name or restore_secret_name(name))
    docs: list[dict] = []
    if source.style == "plugin":
        store = check_name(f"{name}-origin", "ObjectStore copy name")
        # serverName is forbidden in an ObjectStore (CEL, §0); retentionPolicy dropped so the
        # copy never prunes the source's backups.
        configuration.pop("serverName", None)
        store_spec: dict = {"configuration": configuration}
        if source.sidecar:  # env/resources of the sidecar and the recovery Job
            store_spec["instanceSidecarConfiguration"] = copy.deepcopy(source.sidecar)
        docs.append(
            {
                "apiVersion": PLUGIN_API,
                "kind": "ObjectStore",
                "metadata": {"name": store, "namespace": namespace},
                "spec": store_spec,
            }
        )
    else:
        store = None
    origin = _origin(source, configuration, store)
    recovery_doc: dict = {"source": ORIGIN}
    target = recovery_target(recovery, backup_id)
    if target:
        recovery_doc["recoveryTarget"] = target
    # superuser access: CNPG creates <name>-superuser, the drill's way in for its checks
    spec: dict = {
        "instances": 1,
        "enableSuperuserAccess": True,
        "bootstrap": {"recovery": recovery_doc},
        "externalClusters": [origin],
    }
    if source.image_name:  # same PostgreSQL major as the source (§4)
        spec["imageName"] = source.image_name
    elif source.image_catalog_ref:
        spec["imageCatalogRef"] = copy.deepcopy(source.image_catalog_ref)
    if source.storage:
        spec["storage"] = copy.deepcopy(source.storage)
    if source.inherits_iam_role and source.service_account_template:
        spec["serviceAccountTemplate"] = copy.deepcopy(source.service_account_template)
    docs.append(
        {
            "apiVersion": CNPG_API,
            "kind": "Cluster",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "pgdrill"},
            },
            "spec": spec,
        }
    )
    return docs


def _origin(source: SourceCluster, configuration: dict, store: str | None) -> dict:
    """The `externalClusters` entry that reads the source's archive, serverName explicit
    (§5): the plugin through ObjectStore `store`, in-tree through `configuration`."""
    if source.style == "plugin":
        return {
            "name": ORIGIN,
            "plugin": {
                "name": PLUGIN_NAME,
                "parameters": {"barmanObjectName": store, "serverName": source.server_name},
            },
        }
    return {
        "name": ORIGIN,
        "barmanObjectStore": {
            "destinationPath": source.destination_path,
            "serverName": source.server_name,
            **{
                k: v for k, v in configuration.items() if k not in ("destinationPath", "serverName")
            },
        },
    }


SERVER_SET = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "selfLink",
)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def application_identity(bootstrap: dict) -> dict:
    """The application database, its owner and the Secret of its credentials as the Cluster
    was bootstrapped with (`initdb`, or an earlier `recovery`/`pg_basebackup`): carried into
    the rebuild's `bootstrap.recovery`, which otherwise defaults to `app`/`app` and a new
    `<cluster>-app` Secret for user app — the wrong user for a source initdb'ed with other
    names."""
    for method in ("initdb", "recovery", "pg_basebackup"):
        found = bootstrap.get(method) or {}
        identity = {
            k: copy.deepcopy(found[k]) for k in ("database", "owner", "secret") if found.get(k)
        }
        if identity:
            return identity
    return {}


def rebuild_manifest(
    source: SourceCluster, cluster_doc: dict, *, server_name: str, backup_id: str | None = None
) -> dict:
    """The Cluster that rebuilds a destroyed `source` IN PLACE: the same name, namespace and
    spec (`cluster_doc`, the Cluster as it was), bootstrapped with `bootstrap.recovery` from
    `externalClusters[origin]` = the OLD archive (its serverName explicit, §5; the source's
    own credentials and, for the plugin, its own ObjectStore), archiving into `server_name`,
    which must differ from the old one: a recovering Cluster whose archive already holds WAL
    stops at CNPG's "Expected empty archive" check (§5), and the old folder must stay as the
    destroyed cluster left it. Recovery is always into a new Cluster (§4): this is one, under
    the old name."""
    if server_name == source.server_name:
        raise BadInput(
            f"the rebuilt Cluster {source.name} must archive under a new "
            f"serverName, not {server_name!r} (the destroyed cluster's archive)",
            fix="choose a new serverName, e.g. rebuilt_server_name()",
        )
    meta = cluster_doc.get("metadata") or {}
    metadata = {
        k: copy.deepcopy(v)
        for k, v in meta.items()
        if k not in SERVER_SET and v not in (None, {}, [])
    }
    if LAST_APPLIED in (metadata.get("annotations") or {}):
        metadata["annotations"] = {
            k: v for k, v in metadata["annotations"].items() if k != LAST_APPLIED
        } or None
        if metadata["annotations"] is None:
            del metadata["annotations"]
    spec = copy.deepcopy(cluster_doc.get("spec") or {})
    recovery: dict = {"source": ORIGIN, **application_identity(spec.get("bootstrap") or {})}
    if backup_id:
        recovery["recoveryTarget"] = {"backupID": backup_id}
    spec["bootstrap"] = {"recovery": recovery}
    configuration = {
        k: copy.deepcopy(v) for k, v in source.configuration.items() if k not in ARCHIVE_ONLY
    }
    spec["externalClusters"] = [
        *[e for e in spec.get("externalClusters") or [] if e.get("name") != ORIGIN],
        _origin(source, configuration, source.object_store),
    ]
    if source.style == "plugin":
        for plugin in spec.get("plugins") or []:
            if plugin.get("name") == PLUGIN_NAME and plugin.get("enabled", True):
                plugin.setdefault("parameters", {})["serverName"] = server_name
    else:
        spec["backup"]["barmanObjectStore"]["serverName"] = server_name
    return {"apiVersion": CNPG_API, "kind": "Cluster", "metadata": metadata, "spec": spec}


REBUILT_SUFFIX = re.compile(r"^(?P<base>.+)-r(?P<n>[0-9]+)$")


def rebuilt_server_name(old: str, taken) -> str:
    """The serverName a cluster rebuilt from `old`'s archive archives under: `<base>-r<N>`
    (`base` = `old` without an earlier `-r<N>`), the first N after the old one for which
    `taken(name)` is false (its folder holds no object): never the old folder, never one
    that CNPG's empty-archive check would refuse (§5)."""
    match = REBUILT_SUFFIX.match(old)
    base, n = (match["base"], int(match["n"]) + 1) if match else (old, 1)
    while taken(f"{base}-r{n}"):
        n += 1
    return f"{base}-r{n}"


def archives_into(
    cluster_doc: dict, source: SourceCluster, object_stores: dict[str, dict] | None = None
) -> bool:
    """Whether `cluster_doc` would archive WAL or backups into the source's
    `<destinationPath>/<serverName>/` (`object_stores`: ObjectStore docs by name)."""
    name = _get(cluster_doc, "metadata", "name")
    own = _get(cluster_doc, "spec", "backup", "barmanObjectStore")
    if own and _same_archive(own.get("destinationPath"), own.get("serverName") or name, source):
        return True
    for plugin in _barman_plugins(cluster_doc):
        parameters = plugin.get("parameters") or {}
        store = (object_stores or {}).get(parameters.get("barmanObjectName"))
        path = _get(store, "spec", "configuration", "destinationPath") if store else None
        if store is None or _same_archive(path, parameters.get("serverName") or name, source):
            return True  # an unknown ObjectStore might be the source's: count it
    return False


def _same_archive(path: str | None, server_name: str | None, source: SourceCluster) -> bool:
    return (
        str(path or "").rstrip("/") == source.destination_path.rstrip("/")
        and server_name == source.server_name
    )


# --- validation -----------------------------------------------------------------------------


@cache
def _schemas() -> dict[tuple[str, str], dict]:
    """openAPIV3Schema of every served version of the shipped CRDs, by (apiVersion, kind)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schemas = {}
    for path in sorted(CRDS.glob("*/*.yaml")):
        crd = yaml.load(path.read_text(), Loader=loader)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def unknown_fields(value, schema: dict, path: str = "$"):
    """JSON paths of the fields of `value` its structural `schema` does not know: the ones
    the API server prunes on the way in. `metadata` is the API server's own (ObjectMeta),
    and a node marked x-kubernetes-preserve-unknown-fields (or with additionalProperties)
    keeps whatever it is given."""
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if path == "$" and key in ("apiVersion", "kind", "metadata", "status"):
                continue
            if props is not None and key in props:
                yield from unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from unknown_fields(item, extra, f"{path}.{key}")
            elif props is not None and extra is not True:
                yield f"{path}.{key}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{index}]")


def validate_manifest(doc: dict) -> dict:
    """Check `doc` against its CRD's openAPIV3Schema (by apiVersion/kind, served versions),
    then, for a Cluster, the admission-webhook rules a schema cannot express (§0). Returns the
    doc; BadInput names the JSON path of the first error."""
    import jsonschema

    api, kind = (doc.get("apiVersion"), doc.get("kind")) if isinstance(doc, dict) else (None, None)
    schema = _schemas().get((api, kind))
    if schema is None:
        known = ", ".join(f"{a} {k}" for a, k in sorted(_schemas()))
        raise BadInput(f"no CRD for apiVersion {api!r} kind {kind!r}", fix=f"known: {known}")
    what = f"{kind} {_get(doc, 'metadata', 'name') or '(unnamed)'}"
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(doc),
        key=lambda e: (list(map(str, e.absolute_path)), e.message),
    )
    if errors:
        first = errors[0]
        raise BadInput(
            f"{what}: {first.json_path}: {first.message}",
            fix=f"fix {first.json_path} as CNPG's {kind} CRD describes it",
        )
    unknown = sorted(unknown_fields(doc, schema))
    if unknown:
        raise BadInput(
            f"{what}: unknown field(s) {', '.join(unknown)}: a real API server "
            f"would drop them silently (structural schema pruning)",
            fix=f"remove them, or spell them as CNPG's {kind} CRD does",
        )
    if kind == "Cluster" and api == CNPG_API:
        _cluster_webhook_rules(doc, what)
    return doc


def _cluster_webhook_rules(doc: dict, what: str) -> None:
    """CNPG's Cluster webhook rules pgdrill must enforce itself (§0, §2, §4)."""
    check_name(_get(doc, "metadata", "name") or "", f"{what}: name", cluster=True)
    spec = doc.get("spec") or {}
    bootstrap = spec.get("bootstrap") or {}
    methods = [m for m in bootstrap if bootstrap.get(m)]
    if len(methods) > 1:
        raise BadInput(
            f"{what}: $.spec.bootstrap: only one bootstrap method can be specified at "
            f"a time, got {', '.join(methods)}",
            fix="keep one",
        )
    recovery = bootstrap.get("recovery") or {}
    target = recovery.get("recoveryTarget") or {}
    chosen = [
        k
        for k in ("targetXID", "targetName", "targetLSN", "targetTime", "targetImmediate")
        if target.get(k)
    ]  # targetTLI combines
    if len(chosen) > 1:
        raise BadInput(
            f"{what}: $.spec.bootstrap.recovery.recoveryTarget: recovery target "
            f"options are mutually exclusive, got {', '.join(chosen)}",
            fix="keep one",
        )
    if set(chosen) & {"targetName", "targetXID", "targetImmediate"} and not target.get("backupID"):
        raise BadInput(
            f"{what}: $.spec.bootstrap.recovery.recoveryTarget.backupID: BackupID is "
            f"missing ({chosen[0]} needs it)",
            fix="set backupID",
        )
    externals = {e.get("name"): e for e in spec.get("externalClusters") or []}
    if recovery.get("source") and recovery["source"] not in externals:
        raise BadInput(
            f"{what}: $.spec.bootstrap.recovery.source: external cluster "
            f"{recovery['source']} not found",
            fix="add it to spec.externalClusters",
        )
    for index, external in enumerate(spec.get("externalClusters") or []):
        store = external.get("barmanObjectStore")
        if store:
            blocks = [
                k
                for k in ("s3Credentials", "azureCredentials", "googleCredentials")
                if store.get(k)
            ]
            if len(blocks) != 1:
                raise BadInput(
                    f"{what}: $.spec.externalClusters[{index}].barmanObjectStore: one "
                    f"and only one of azureCredentials, s3Credentials and "
                    f"googleCredentials are required",
                    fix="keep one",
                )
    archivers = [p for p in spec.get("plugins") or [] if p.get("isWALArchiver")]
    if len(archivers) > 1:
        raise BadInput(
            f"{what}: $.spec.plugins: cannot enable more than one WAL archiver plugin",
            fix="keep one",
        )
    if archivers and _get(spec, "backup", "barmanObjectStore"):
        raise BadInput(
            f"{what}: $.spec.plugins: cannot enable a WAL archiver plugin when "
            f"barmanObjectStore is configured",
            fix="keep one of them",
        )
