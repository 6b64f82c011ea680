"""What a platform team's cluster has before pgdrill runs, made on the lab (issue 18):
an S3 server reachable from pods, the `cnpg-backup-s3` credentials as a SOPS/age file (the
file Flux would decrypt), that Secret in the cluster, and the source CNPG Cluster archiving
to the bucket. Run with the project's venv:

    .venv/bin/python lab/seed.py s3       STATE_DIR   # moto on the node address, bucket, SOPS file
    .venv/bin/python lab/seed.py secret   STATE_DIR   # the decrypted Secret into the namespace
    .venv/bin/python lab/seed.py cluster  STATE_DIR   # the Cluster; waits for "healthy"
    .venv/bin/python lab/seed.py data     STATE_DIR   # the application's tables, owned by app
    .venv/bin/python lab/seed.py backup   STATE_DIR   # a ScheduledBackup; its first Backup
    .venv/bin/python lab/seed.py deploy   STATE_DIR   # the overlay of deploy/ for the lab,
                                                      # Secret sops-age, the evidence bucket

Idempotent: each step keeps what is already there. Never prints a credential value.
The S3 server is moto (not AWS): the only imitation in the lab, the same one the sandbox uses;
the operator, the API server, the kubelet and PostgreSQL are the real ones."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pgdrill.core.procs import pid_alive, spawn_detached  # noqa: E402
from pgdrill.credentials.secret import load_s3_credentials, write_encrypted_secret  # noqa: E402
from pgdrill.targets.sandbox import s3  # noqa: E402

NODE_ADDRESS = os.environ.get("PGDRILL_LAB_ADDRESS", "10.250.0.1")
S3_PORT = int(os.environ.get("PGDRILL_LAB_S3_PORT", "9000"))
ENDPOINT = f"http://{NODE_ADDRESS}:{S3_PORT}"
BUCKET = "pgdrill-lab"
EVIDENCE_BUCKET = "pgdrill-lab-evidence"  # never inside the source's backup path
NAMESPACE = "staging"
CLUSTER = "pg-main"
SECRET = "cnpg-backup-s3"
IMAGE = os.environ.get("PGDRILL_LAB_PG_IMAGE", "pgdrill.local/postgresql:18-lab")


def log(message: str) -> None:
    print(
        f"[{time.strftime('%H:%M:%S', time.gmtime())}] seed: {message}", file=sys.stderr, flush=True
    )


def credentials_file(state: Path) -> Path:
    return state / "cnpg-backup-s3.enc.yaml"


def age_key_file(state: Path) -> Path:
    return state / "age" / "keys.txt"


def credentials(state: Path):
    return load_s3_credentials(credentials_file(state), [str(age_key_file(state))])


def ensure_credentials(state: Path) -> None:
    if credentials_file(state).is_file() and age_key_file(state).is_file():
        return
    from pgdrill.credentials import sops

    secret_key, recipient = sops.new_identity()
    key = age_key_file(state)
    key.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(key.parent, 0o700)
    key.write_text(f"# pgdrill lab identity\n# public key: {recipient}\n{secret_key}\n")
    os.chmod(key, 0o600)
    write_encrypted_secret(
        credentials_file(state),
        s3.new_sandbox_credentials(ENDPOINT, BUCKET),
        [recipient],
        namespace=NAMESPACE,
    )
    log(f"S3 credentials: SOPS/age-encrypted in {credentials_file(state)} (identity {key})")


def step_s3(state: Path) -> None:
    ensure_credentials(state)
    creds = credentials(state)
    pid_file = state / "run" / "s3.pid"
    pid = int(pid_file.read_text()) if pid_file.is_file() else 0
    if pid and pid_alive(pid):
        log(f"S3 server already running (pid {pid}) on {ENDPOINT}")
    else:
        log(f"starting the S3 server (moto) on {ENDPOINT}")
        (state / "log").mkdir(parents=True, exist_ok=True)
        pid = spawn_detached(
            [sys.executable, "-m", "moto.server", "-H", NODE_ADDRESS, "-p", str(S3_PORT)],
            state / "log" / "s3.log",
        )
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(str(pid))
    s3.wait_and_create_bucket(ENDPOINT, BUCKET, pid, creds)
    log(f"bucket s3://{BUCKET} ready")


def _api(state: Path):
    from kubernetes import client, config

    config.load_kube_config(str(state / "kubeconfig"))
    return client


def step_secret(state: Path) -> None:
    """Apply the decrypted Secret, as Flux's kustomize-controller would."""
    from pgdrill.credentials import sops

    client = _api(state)
    core = client.CoreV1Api()
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    document = sops.decrypt_file(credentials_file(state), [str(age_key_file(state))])
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
        "stringData": document.get("stringData") or {},
        "data": document.get("data") or {},
    }
    try:
        core.create_namespaced_secret(NAMESPACE, body)
        log(f"Secret {NAMESPACE}/{SECRET} created from the SOPS file")
    except client.ApiException as exc:
        if exc.status != 409:
            raise SystemExit(
                f"seed: could not create Secret {NAMESPACE}/{SECRET}: "
                f"HTTP {exc.status} {exc.reason}"
            ) from None
        core.replace_namespaced_secret(SECRET, NAMESPACE, body)
        log(f"Secret {NAMESPACE}/{SECRET} updated from the SOPS file")


def cluster_manifest(instances: int = 2) -> dict:
    keys = {
        "accessKeyId": "ACCESS_KEY_ID",
        "secretAccessKey": "ACCESS_SECRET_KEY",
        "region": "REGION",
    }
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": CLUSTER, "namespace": NAMESPACE},
        "spec": {
            "instances": instances,
            "imageName": IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "enableSuperuserAccess": True,
            "storage": {"size": "1Gi", "storageClass": "local-path"},
            # synchronous replication as a team that accepts no lost acknowledged write runs
            # it: `preferred` keeps the primary writable while its one standby is re-cloned
            "postgresql": {
                "parameters": {"archive_timeout": "30s"},
                "synchronous": {"method": "any", "number": 1, "dataDurability": "preferred"},
            },
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            "backup": {
                "retentionPolicy": "30d",
                "barmanObjectStore": {
                    "destinationPath": f"s3://{BUCKET}/",
                    "endpointURL": ENDPOINT,
                    "s3Credentials": {f: {"name": SECRET, "key": k} for f, k in keys.items()},
                    "wal": {"compression": "gzip"},
                    # a backup then checkpoints at once instead of spreading it (a standby under
                    # load otherwise waits for a ~4.5 min restartpoint): CNPG's default is false
                    "data": {"compression": "gzip", "immediateCheckpoint": True},
                },
            },
        },
    }


def step_cluster(state: Path, timeout: float = 600) -> None:
    client = _api(state)
    custom = client.CustomObjectsApi()
    group, version, plural = "postgresql.cnpg.io", "v1", "clusters"
    try:
        custom.create_namespaced_custom_object(
            group, version, NAMESPACE, plural, cluster_manifest()
        )
        log(f"Cluster {NAMESPACE}/{CLUSTER} created")
    except client.ApiException as exc:
        if exc.status != 409:
            raise SystemExit(
                f"seed: the API server refused Cluster {CLUSTER}: HTTP "
                f"{exc.status}: {_message(exc)}"
            ) from None
        log(f"Cluster {NAMESPACE}/{CLUSTER} exists")
    deadline = time.monotonic() + timeout
    last = None
    while True:
        obj = custom.get_namespaced_custom_object(group, version, NAMESPACE, plural, CLUSTER)
        phase = (obj.get("status") or {}).get("phase")
        if phase != last:
            log(f"Cluster {CLUSTER}: {phase}")
            last = phase
        if phase == "Cluster in healthy state" and _archiving(obj):
            log(f"Cluster {CLUSTER} is healthy and archives WAL to s3://{BUCKET}/")
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"seed: Cluster {CLUSTER} not healthy after {timeout:.0f}s "
                f"(phase {phase!r}); see kubectl -n {NAMESPACE} describe cluster "
                f"{CLUSTER} and the operator's log"
            )
        time.sleep(2)


DATA_SQL = """
CREATE TABLE IF NOT EXISTS pgdrill_sentinel (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO pgdrill_sentinel VALUES ('drill', 'ok') ON CONFLICT (key) DO NOTHING;
ALTER TABLE pgdrill_sentinel OWNER TO app;
ALTER TABLE pgbench_accounts OWNER TO app;
ALTER TABLE pgbench_branches OWNER TO app;
ALTER TABLE pgbench_tellers OWNER TO app;
ALTER TABLE pgbench_history OWNER TO app;
"""


def step_data(state: Path) -> None:
    """The application's data in database `app`, owned by the `app` role as an application's
    would be: pgbench's tables (scale 1) and the sentinel row the checklist reads. Made in
    the primary pod (pgbench and psql of the PostgreSQL image, over its local socket)."""
    import subprocess

    client = _api(state)
    pods = client.CoreV1Api().list_namespaced_pod(
        NAMESPACE, label_selector=f"cnpg.io/cluster={CLUSTER},cnpg.io/instanceRole=primary"
    )
    if len(pods.items) != 1:
        raise SystemExit(f"seed: expected one primary pod of {CLUSTER}, found {len(pods.items)}")
    primary = pods.items[0].metadata.name
    bin_dir = subprocess.run(
        ["sh", str(REPO / "lab" / "build.sh"), "--print-bin"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    exec_ = [
        f"{bin_dir}/kubectl",
        "--kubeconfig",
        str(state / "kubeconfig"),
        "-n",
        NAMESPACE,
        "exec",
        "-i",
        primary,
        "-c",
        "postgres",
        "--",
    ]
    have = subprocess.run(
        [
            *exec_,
            "psql",
            "-h",
            "/controller/run",
            "-At",
            "-d",
            "app",
            "-c",
            "SELECT to_regclass('pgdrill_sentinel') IS NOT NULL",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if have.returncode == 0 and have.stdout.strip() == "t":
        log(f"database app of {CLUSTER} already holds the application's data")
        return
    log(f"seeding database app on {primary} (pgbench scale 1, sentinel row; owner app)")
    for argv, stdin in (
        ([*exec_, "pgbench", "-i", "-s", "1", "-q", "-h", "/controller/run", "app"], None),
        ([*exec_, "psql", "-h", "/controller/run", "-v", "ON_ERROR_STOP=1", "-d", "app"], DATA_SQL),
    ):
        out = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise SystemExit(f"seed: seeding failed on {primary}: {out.stderr.strip()}")


def step_backup(state: Path, timeout: float = 600) -> None:
    """A daily ScheduledBackup with `immediate: true` (what a team's GitOps repo has), and
    its first Backup completed: drills start from a recent backup, as they would in staging."""
    client = _api(state)
    custom = client.CustomObjectsApi()
    group, version = "postgresql.cnpg.io", "v1"
    body = {
        "apiVersion": f"{group}/{version}",
        "kind": "ScheduledBackup",
        "metadata": {"name": f"{CLUSTER}-daily", "namespace": NAMESPACE},
        "spec": {
            "schedule": "0 0 0 * * *",
            "immediate": True,
            "backupOwnerReference": "self",
            "cluster": {"name": CLUSTER},
            "method": "barmanObjectStore",
        },
    }
    try:
        custom.create_namespaced_custom_object(group, version, NAMESPACE, "scheduledbackups", body)
        log(f"ScheduledBackup {CLUSTER}-daily created (immediate)")
    except client.ApiException as exc:
        if exc.status != 409:
            raise SystemExit(
                f"seed: the API server refused the ScheduledBackup: HTTP "
                f"{exc.status}: {_message(exc)}"
            ) from None
    deadline = time.monotonic() + timeout
    while True:
        backups = custom.list_namespaced_custom_object(group, version, NAMESPACE, "backups")
        phases = [(b.get("status") or {}).get("phase") for b in backups["items"]]
        if "completed" in phases:
            log(f"a completed base backup of {CLUSTER} is in s3://{BUCKET}/")
            return
        if "failed" in phases and "running" not in phases and "started" not in phases:
            raise SystemExit(
                f"seed: the first Backup of {CLUSTER} failed: see kubectl -n "
                f"{NAMESPACE} describe backups"
            )
        if time.monotonic() > deadline:
            raise SystemExit(
                f"seed: no completed Backup of {CLUSTER} after {timeout:.0f}s (phases {phases})"
            )
        time.sleep(2)


def _archiving(obj: dict) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ContinuousArchiving":
            return condition.get("status") == "True"
    return False


def _message(exc) -> str:
    try:
        return json.loads(exc.body).get("message", exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)


def deploy_overlay(state: Path) -> Path:
    return state / "deploy"


def step_deploy(state: Path) -> None:
    """What a team adds to run deploy/ (the monthly staging drill) in its cluster: an overlay
    with its image, environment file and SOPS file; Secret sops-age (Flux's age key Secret)
    in the drill's namespace; a bucket for the evidence sink. Applying it stays the user's
    (and the lab suite's) step: `kubectl apply -k STATE_DIR/deploy`."""
    import yaml

    overlay = deploy_overlay(state)
    overlay.mkdir(parents=True, exist_ok=True)
    base = os.path.relpath(REPO / "deploy" / "base", overlay)
    (overlay / "kustomization.yaml").write_text(
        "# made by `make lab` (lab/seed.py deploy): deploy/base with the lab's image,\n"
        "# environment file and SOPS file. kubectl apply -k .pgdrill/lab/deploy\n"
        + yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [base],
                "images": [
                    {
                        "name": "ghcr.io/example/pgdrill",
                        "newName": "pgdrill.local/pgdrill",
                        "newTag": "0.1.0",
                    }
                ],
                "configMapGenerator": [
                    {
                        "name": "pgdrill-environment",
                        "namespace": NAMESPACE,
                        "behavior": "merge",
                        "files": ["staging.yaml", "cnpg-backup-s3.enc.yaml"],
                        "options": {"disableNameSuffixHash": True},
                    }
                ],
            },
            sort_keys=False,
        )
    )
    (overlay / "staging.yaml").write_text(
        "# the lab's environment file for the CronJob's pod (deploy/base/staging.yaml's form)\n"
        + yaml.safe_dump(
            {
                "environment": "staging",
                "target": "cnpg",
                "cluster": CLUSTER,
                "namespace": NAMESPACE,
                "credentials": "/etc/pgdrill/sops/cnpg-backup-s3.enc.yaml",
                "settings": {
                    "cnpg_connection": "service",
                    "evidence_sink": f"s3://{EVIDENCE_BUCKET}/staging/",
                },
            },
            sort_keys=False,
        )
    )
    # still encrypted: the pod decrypts it with the age key of Secret sops-age
    (overlay / "cnpg-backup-s3.enc.yaml").write_bytes(credentials_file(state).read_bytes())
    client = _api(state)
    core = client.CoreV1Api()
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sops-age", "namespace": NAMESPACE},
        "stringData": {"age.agekey": age_key_file(state).read_text()},
    }
    try:
        core.create_namespaced_secret(NAMESPACE, body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise SystemExit(
                f"seed: could not create Secret {NAMESPACE}/sops-age: "
                f"HTTP {exc.status} {exc.reason}"
            ) from None
        core.replace_namespaced_secret("sops-age", NAMESPACE, body)
    pid = int((state / "run" / "s3.pid").read_text())
    s3.wait_and_create_bucket(ENDPOINT, EVIDENCE_BUCKET, pid, credentials(state))
    log(
        f"deploy/ overlay for the lab in {overlay}; Secret {NAMESPACE}/sops-age; evidence "
        f"bucket s3://{EVIDENCE_BUCKET}"
    )


STEPS = {
    "s3": step_s3,
    "secret": step_secret,
    "cluster": step_cluster,
    "data": step_data,
    "backup": step_backup,
    "deploy": step_deploy,
}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in STEPS:
        raise SystemExit(f"usage: {sys.argv[0]} {{{'|'.join(STEPS)}}} STATE_DIR")
    STEPS[sys.argv[1]](Path(sys.argv[2]).resolve())
