"""The second backup style of the lab: the barman-cloud plugin (CNPG-i), next to pg-main's
in-tree `spec.backup.barmanObjectStore`. Run with the project's venv, after `seed.py deploy`:

    .venv/bin/python lab/plugin.py STATE_DIR

1. deploys plugin-barman-cloud v0.15.0 into cnpg-system from its own release manifest
   (manifest.yaml of the pinned Go module) with three changes only, because the lab has no
   cert-manager and pulls no image:
   - the cert-manager.io documents (two Certificates, a selfSigned Issuer) are dropped and
     the two Secrets they would write (barman-cloud-client-tls, barman-cloud-server-tls) are
     made here, the same self-signed certificates (`cryptography`);
   - the Deployment's image is pgdrill.local/plugin-barman-cloud:v0.15.0;
   - the SIDECAR_IMAGE Secret value is pgdrill.local/plugin-barman-cloud-sidecar:v0.15.0;
   then waits until its Deployment is available and the CNPG operator took the plugin's
   Service in (its cleanup finalizer);
2. in namespace staging: ObjectStore pg-plugin-store (the bucket and the Secret of pg-main),
   Cluster pg-plugin archiving WAL through the plugin (waits for "healthy" and
   ContinuousArchiving), the application's data (as `seed.py data` does for pg-main), a
   ScheduledBackup pg-plugin-daily (method plugin, immediate) and its first Backup completed.

Idempotent: each step keeps what is already there (the certificates are made again only when
missing, unreadable or within cert-manager's renewBefore of their end). Never prints a
credential value."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "lab"))

import seed  # noqa: E402  (lab/seed.py: the lab's constants, API client and data SQL)
from seed import BUCKET, DATA_SQL, ENDPOINT, IMAGE, NAMESPACE, SECRET  # noqa: E402

PLUGIN_VERSION = os.environ.get("PGDRILL_LAB_PLUGIN_VERSION", "v0.15.0")
CACHE_ROOT = Path(os.environ.get("PGDRILL_LAB_CACHE", Path.home() / ".cache" / "pgdrill-lab"))
PLUGIN_SOURCE = (
    CACHE_ROOT
    / "go"
    / "mod"
    / "github.com"
    / "cloudnative-pg"
    / f"plugin-barman-cloud@{PLUGIN_VERSION}"
)
PLUGIN_IMAGE = f"pgdrill.local/plugin-barman-cloud:{PLUGIN_VERSION}"
SIDECAR_IMAGE = f"pgdrill.local/plugin-barman-cloud-sidecar:{PLUGIN_VERSION}"
OPERATOR_NAMESPACE = "cnpg-system"
DEPLOYMENT = "barman-cloud"  # Deployment and Service of the manifest
SERVICE = "barman-cloud"
PLUGIN_NAME = "barman-cloud.cloudnative-pg.io"
PLUGIN_FINALIZER = "cnpg.io/cleanupPlugin"  # CNPG's utils.PluginFinalizerName
CLIENT_TLS, SERVER_TLS = "barman-cloud-client-tls", "barman-cloud-server-tls"
CERT_DURATION = datetime.timedelta(hours=2160)  # the manifest's Certificates
CERT_RENEW_BEFORE = datetime.timedelta(hours=360)
TLS_HASH_ANNOTATION = "pgdrill.lab/tls-sha256"  # rolls the plugin when its certificates change

STORE = "pg-plugin-store"
CLUSTER = "pg-plugin"
SCHEDULED_BACKUP = f"{CLUSTER}-daily"
CNPG_GROUP, CNPG_VERSION = "postgresql.cnpg.io", "v1"
PLUGIN_GROUP, PLUGIN_API_VERSION = "barmancloud.cnpg.io", "v1"


def log(message: str) -> None:
    print(
        f"[{time.strftime('%H:%M:%S', time.gmtime())}] plugin: {message}",
        file=sys.stderr,
        flush=True,
    )


def kubectl_bin() -> str:
    out = subprocess.run(
        ["sh", str(REPO / "lab" / "build.sh"), "--print-bin"],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"{out.stdout.strip()}/kubectl"


def kubectl(
    state: Path, *args: str, input: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """kubectl as the lab's admin; its output is never echoed (it may hold Secret data)."""
    return subprocess.run(
        [kubectl_bin(), "--kubeconfig", str(state / "kubeconfig"), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(what: str, check, timeout: float, interval: float = 2.0):
    """Poll `check()` until it returns something truthy (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"plugin: {what}: not done after {timeout:.0f}s")
        time.sleep(interval)


def create_or_keep(
    state: Path, plural: str, body: dict, *, group: str = CNPG_GROUP, version: str = CNPG_VERSION
) -> bool:
    """Create a namespaced custom object; keep it when it exists. True when created."""
    client = seed._api(state)
    custom = client.CustomObjectsApi()
    meta = body["metadata"]
    try:
        custom.create_namespaced_custom_object(group, version, meta["namespace"], plural, body)
        log(f"{body['kind']} {meta['namespace']}/{meta['name']} created")
        return True
    except client.ApiException as exc:
        if exc.status != 409:
            raise SystemExit(
                f"plugin: the API server refused {body['kind']} {meta['name']}: "
                f"HTTP {exc.status}: {seed._message(exc)}"
            ) from None
        log(f"{body['kind']} {meta['namespace']}/{meta['name']} exists")
        return False


# -- 1. the plugin ------------------------------------------------------------------------
def self_signed_certificate(common_name: str, *, server: bool) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) as cert-manager's selfSigned Issuer makes the manifest's
    Certificates: RSA 2048, signed by its own key, isCA false, 2160h; the server's with
    DNS SANs and serverAuth, the client's with clientAuth."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + CERT_DURATION)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        dns = [
            SERVICE,
            f"{SERVICE}.{OPERATOR_NAMESPACE}.svc",
            f"{SERVICE}.{OPERATOR_NAMESPACE}.svc.cluster.local",
        ]
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )


def _certificate_current(secret) -> bool:
    """The Secret holds a readable kubernetes.io/tls pair not yet due for renewal."""
    from cryptography import x509

    data = (secret.data or {}) if secret is not None else {}
    if (
        secret is None
        or secret.type != "kubernetes.io/tls"
        or not all(data.get(k) for k in ("tls.crt", "tls.key", "ca.crt"))
    ):
        return False
    try:
        cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
    except ValueError:
        return False
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return left > CERT_RENEW_BEFORE


def ensure_tls_secret(state: Path, name: str, common_name: str, *, server: bool) -> bytes:
    """The Secret cert-manager would write for one of the manifest's Certificates:
    kubernetes.io/tls with tls.crt, tls.key and ca.crt (= tls.crt, self-signed). Returns the
    certificate PEM (kept when current, else made again)."""
    client = seed._api(state)
    core = client.CoreV1Api()
    try:
        secret = core.read_namespaced_secret(name, OPERATOR_NAMESPACE)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        secret = None
    if _certificate_current(secret):
        log(f"Secret {OPERATOR_NAMESPACE}/{name} exists (certificate current)")
        return base64.b64decode(secret.data["tls.crt"])
    cert, key = self_signed_certificate(common_name, server=server)
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": OPERATOR_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "pgdrill-lab"},
        },
        "data": {
            k: base64.b64encode(v).decode()
            for k, v in (("tls.crt", cert), ("tls.key", key), ("ca.crt", cert))
        },
    }
    if secret is None:
        core.create_namespaced_secret(OPERATOR_NAMESPACE, body)
    else:
        core.replace_namespaced_secret(name, OPERATOR_NAMESPACE, body)
    log(
        f"Secret {OPERATOR_NAMESPACE}/{name}: self-signed certificate CN={common_name} "
        f"({'serverAuth' if server else 'clientAuth'}, {CERT_DURATION.days} days)"
    )
    return cert


def plugin_manifest(tls_hash: str) -> list[dict]:
    """The plugin's release manifest with the lab's changes: no cert-manager.io documents,
    the lab's plugin and sidecar images, and the certificates' hash on the pod template."""
    import yaml

    manifest = PLUGIN_SOURCE / "manifest.yaml"
    if not manifest.is_file():
        raise SystemExit(f"plugin: no {manifest}: run sh lab/build.sh (the plugin's module)")
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    docs = [d for d in docs if not d.get("apiVersion", "").startswith("cert-manager.io/")]
    sidecar_secrets = [
        d for d in docs if d["kind"] == "Secret" and "SIDECAR_IMAGE" in (d.get("data") or {})
    ]
    deployments = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == DEPLOYMENT
    ]
    if len(sidecar_secrets) != 1 or len(deployments) != 1:
        raise SystemExit(
            f"plugin: {manifest} is not the expected manifest (one Deployment "
            f"{DEPLOYMENT}, one Secret with SIDECAR_IMAGE)"
        )
    sidecar_secrets[0]["data"]["SIDECAR_IMAGE"] = base64.b64encode(SIDECAR_IMAGE.encode()).decode()
    template = deployments[0]["spec"]["template"]
    template["metadata"].setdefault("annotations", {})[TLS_HASH_ANNOTATION] = tls_hash
    for container in template["spec"]["containers"]:
        container["image"] = PLUGIN_IMAGE  # a tag, not :latest: pulled only if not present
    return docs


def apply_documents(state: Path, docs: list[dict]) -> None:
    import yaml

    out = kubectl(
        state,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input=yaml.safe_dump_all(docs, sort_keys=False),
    )
    if out.returncode != 0:
        raise SystemExit(
            f"plugin: kubectl apply of the plugin's manifest failed: {out.stderr.strip()}"
        )


def wait_deployment_available(state: Path, timeout: float = 300) -> None:
    out = kubectl(
        state,
        "-n",
        OPERATOR_NAMESPACE,
        "rollout",
        "status",
        f"deployment/{DEPLOYMENT}",
        f"--timeout={int(timeout)}s",
        timeout=timeout + 30,
    )
    if out.returncode != 0:
        pods = kubectl(
            state, "-n", OPERATOR_NAMESPACE, "get", "pods", "-l", f"app={DEPLOYMENT}", "-o", "wide"
        ).stdout
        raise SystemExit(
            f"plugin: Deployment {OPERATOR_NAMESPACE}/{DEPLOYMENT} not available "
            f"after {timeout:.0f}s: {out.stderr.strip()}\n{pods}"
        )
    log(f"Deployment {OPERATOR_NAMESPACE}/{DEPLOYMENT} available ({PLUGIN_IMAGE})")


def wait_operator_sees_plugin(state: Path, timeout: float = 120) -> None:
    """CNPG's plugin controller puts its cleanup finalizer on the plugin's Service before it
    registers the plugin (internal/controller/plugin_controller.go)."""
    core = seed._api(state).CoreV1Api()

    def seen() -> bool:
        service = core.read_namespaced_service(SERVICE, OPERATOR_NAMESPACE)
        return PLUGIN_FINALIZER in (service.metadata.finalizers or [])

    wait_for(f"the CNPG operator to take in Service {OPERATOR_NAMESPACE}/{SERVICE}", seen, timeout)
    log(f"the CNPG operator took in plugin {PLUGIN_NAME} (Service {SERVICE})")


def step_plugin(state: Path) -> None:
    """Deploy plugin-barman-cloud from its manifest; wait until it serves."""
    client_cert = ensure_tls_secret(state, CLIENT_TLS, "barman-cloud-client", server=False)
    server_cert = ensure_tls_secret(state, SERVER_TLS, SERVICE, server=True)
    tls_hash = hashlib.sha256(client_cert + server_cert).hexdigest()[:16]
    log(f"applying plugin-barman-cloud {PLUGIN_VERSION} from {PLUGIN_SOURCE / 'manifest.yaml'}")
    apply_documents(state, plugin_manifest(tls_hash))
    wait_deployment_available(state)
    wait_operator_sees_plugin(state)


# -- 2. the Cluster that archives through it ----------------------------------------------
SIDECAR_ENV = "PGDRILL_LAB_SIDECAR"


def object_store_manifest() -> dict:
    """pg-main's bucket, endpoint, Secret and compression, as an ObjectStore."""
    keys = {
        "accessKeyId": "ACCESS_KEY_ID",
        "secretAccessKey": "ACCESS_SECRET_KEY",
        "region": "REGION",
    }
    return {
        "apiVersion": f"{PLUGIN_GROUP}/{PLUGIN_API_VERSION}",
        "kind": "ObjectStore",
        "metadata": {"name": STORE, "namespace": NAMESPACE},
        "spec": {
            "configuration": {
                "destinationPath": f"s3://{BUCKET}/",
                "endpointURL": ENDPOINT,
                "s3Credentials": {f: {"name": SECRET, "key": k} for f, k in keys.items()},
                "wal": {"compression": "gzip"},
                "data": {"compression": "gzip", "immediateCheckpoint": True},
            },
            # a literal env var, as a user sets proxies or AWS_* options: a restore's
            # ObjectStore copy must carry it into the recovery Job (tests/lab)
            "instanceSidecarConfiguration": {"env": [{"name": SIDECAR_ENV, "value": "lab"}]},
        },
    }


def cluster_manifest() -> dict:
    """One instance (the lab has 2 cores), the plugin as its WAL archiver."""
    return {
        "apiVersion": f"{CNPG_GROUP}/{CNPG_VERSION}",
        "kind": "Cluster",
        "metadata": {"name": CLUSTER, "namespace": NAMESPACE},
        "spec": {
            "instances": 1,
            "imageName": IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "enableSuperuserAccess": True,
            "storage": {"size": "1Gi", "storageClass": "local-path"},
            "postgresql": {"parameters": {"archive_timeout": "30s"}},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            "plugins": [
                {
                    "name": PLUGIN_NAME,
                    "isWALArchiver": True,
                    "parameters": {"barmanObjectName": STORE},
                }
            ],
        },
    }


def step_object_store(state: Path) -> None:
    create_or_keep(
        state,
        "objectstores",
        object_store_manifest(),
        group=PLUGIN_GROUP,
        version=PLUGIN_API_VERSION,
    )


def step_cluster(state: Path, timeout: float = 600) -> None:
    """Create pg-plugin; wait for "Cluster in healthy state" with ContinuousArchiving True."""
    create_or_keep(state, "clusters", cluster_manifest())
    custom = seed._api(state).CustomObjectsApi()
    last = {"phase": None}

    def healthy() -> bool:
        obj = custom.get_namespaced_custom_object(
            CNPG_GROUP, CNPG_VERSION, NAMESPACE, "clusters", CLUSTER
        )
        status = obj.get("status") or {}
        phase = status.get("phase")
        if phase != last["phase"]:
            reason = status.get("phaseReason")
            log(f"Cluster {CLUSTER}: {phase}" + (f" ({reason})" if reason else ""))
            last["phase"] = phase
        return phase == "Cluster in healthy state" and seed._archiving(obj)

    wait_for(
        f"Cluster {NAMESPACE}/{CLUSTER} healthy and archiving (see kubectl -n "
        f"{NAMESPACE} describe cluster {CLUSTER}, the operator's and the plugin's logs)",
        healthy,
        timeout,
    )
    log(
        f"Cluster {CLUSTER} is healthy and archives WAL through {PLUGIN_NAME} into "
        f"s3://{BUCKET}/{CLUSTER}/"
    )


def _primary_pod(state: Path) -> str:
    pods = (
        seed._api(state)
        .CoreV1Api()
        .list_namespaced_pod(
            NAMESPACE, label_selector=f"cnpg.io/cluster={CLUSTER},cnpg.io/instanceRole=primary"
        )
    )
    if len(pods.items) != 1:
        raise SystemExit(f"plugin: expected one primary pod of {CLUSTER}, found {len(pods.items)}")
    return pods.items[0].metadata.name


def step_data(state: Path) -> None:
    """What `seed.py data` makes in pg-main (pgbench scale 1, the sentinel row, owner app),
    in pg-plugin's database app (seed.step_data names pg-main itself)."""
    primary = _primary_pod(state)
    exec_ = ["-n", NAMESPACE, "exec", "-i", primary, "-c", "postgres", "--"]
    have = kubectl(
        state,
        *exec_,
        "psql",
        "-h",
        "/controller/run",
        "-At",
        "-d",
        "app",
        "-c",
        "SELECT to_regclass('pgdrill_sentinel') IS NOT NULL",
        timeout=120,
    )
    if have.returncode == 0 and have.stdout.strip() == "t":
        log(f"database app of {CLUSTER} already holds the application's data")
        return
    log(f"seeding database app on {primary} (pgbench scale 1, sentinel row; owner app)")
    for argv, stdin in (
        (["pgbench", "-i", "-s", "1", "-q", "-h", "/controller/run", "app"], None),
        (["psql", "-h", "/controller/run", "-v", "ON_ERROR_STOP=1", "-d", "app"], DATA_SQL),
    ):
        out = kubectl(state, *exec_, *argv, input=stdin, timeout=300)
        if out.returncode != 0:
            raise SystemExit(f"plugin: seeding failed on {primary}: {out.stderr.strip()}")


def scheduled_backup_manifest() -> dict:
    return {
        "apiVersion": f"{CNPG_GROUP}/{CNPG_VERSION}",
        "kind": "ScheduledBackup",
        "metadata": {"name": SCHEDULED_BACKUP, "namespace": NAMESPACE},
        "spec": {
            "schedule": "0 0 0 * * *",
            "immediate": True,
            "backupOwnerReference": "self",
            "cluster": {"name": CLUSTER},
            "method": "plugin",
            "pluginConfiguration": {"name": PLUGIN_NAME},
        },
    }


def step_backup(state: Path, timeout: float = 600) -> None:
    """ScheduledBackup pg-plugin-daily (immediate) and a completed Backup of pg-plugin."""
    create_or_keep(state, "scheduledbackups", scheduled_backup_manifest())
    custom = seed._api(state).CustomObjectsApi()

    def completed() -> bool:
        items = custom.list_namespaced_custom_object(
            CNPG_GROUP, CNPG_VERSION, NAMESPACE, "backups"
        )["items"]
        phases = [
            (b.get("status") or {}).get("phase")
            for b in items
            if ((b.get("spec") or {}).get("cluster") or {}).get("name") == CLUSTER
        ]
        if "completed" in phases:
            return True
        if "failed" in phases and not {"running", "started", None} & set(phases):
            raise SystemExit(
                f"plugin: the first Backup of {CLUSTER} failed: see kubectl -n "
                f"{NAMESPACE} describe backups and the plugin's log"
            )
        return False

    wait_for(
        f"a completed Backup of {CLUSTER} (phases in kubectl -n {NAMESPACE} get backups)",
        completed,
        timeout,
    )
    log(f"a completed base backup of {CLUSTER} is in s3://{BUCKET}/{CLUSTER}/ (plugin)")


STEPS = (step_plugin, step_object_store, step_cluster, step_data, step_backup)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(f"usage: {argv[0]} STATE_DIR")
    state = Path(argv[1]).resolve()
    t0 = time.monotonic()
    for step in STEPS:
        step(state)
    log(
        f"ready in {time.monotonic() - t0:.0f}s: Cluster {NAMESPACE}/{CLUSTER} backs up "
        f"through {PLUGIN_NAME} (ObjectStore {STORE})"
    )


if __name__ == "__main__":
    main(sys.argv)
