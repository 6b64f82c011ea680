"""Every cnpg drill on the lab (real API server + RBAC, real CNPG operator and instance
manager, real PostgreSQL in pods): through `chaos run`, as the ServiceAccount `pgdrill rbac`
generates, and passing for the right reason."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.conftest import (
    CHAOS,
    PGDRILL,
    REPO,
    assert_failover_hole_closed,
    newest_evidence,
    newest_run_folder,
)
from tests.lab.conftest import (
    CLUSTER,
    LAB,
    NAMESPACE,
    RESTORE_NS,
    drill_env,
    kubectl,
    pgdrill_rbac,
    service_account_kubeconfig,
)


def chaos_run(experiment: str, env: dict, tmp_path) -> tuple[subprocess.CompletedProcess, dict]:
    out = subprocess.run(
        [
            CHAOS,
            "--no-version-check",
            "--no-log-file",
            "run",
            "--journal-path",
            str(tmp_path / "journal.json"),
            f"experiments/{experiment}.json",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return out, newest_evidence(tmp_path / "reports")


def app_secret() -> dict:
    """The source Cluster's `<cluster>-app` Secret: its uid and password (lab only)."""
    import base64

    doc = json.loads(
        kubectl("-n", NAMESPACE, "get", "secret", f"{CLUSTER}-app", "-o", "json").stdout
    )
    return {
        "uid": doc["metadata"]["uid"],
        "password": base64.b64decode(doc["data"]["password"]).decode(),
    }


def lab_secret_values() -> list[str]:
    from pgdrill.credentials.secret import load_s3_credentials

    creds = load_s3_credentials(LAB / "cnpg-backup-s3.enc.yaml", [str(LAB / "age" / "keys.txt")])
    return [creds.access_key_id, creds.secret_access_key]


def operator_version() -> str:
    pods = json.loads(
        kubectl(
            "-n",
            "cnpg-system",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=cloudnative-pg",
            "-o",
            "json",
        ).stdout
    )
    return pods["items"][0]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]


def test_the_source_cluster_is_healthy_and_archives_to_the_bucket():
    cluster = json.loads(kubectl("-n", NAMESPACE, "get", "cluster", CLUSTER, "-o", "json").stdout)
    status = cluster["status"]
    assert status["phase"] == "Cluster in healthy state"
    assert status["readyInstances"] == cluster["spec"]["instances"] >= 2
    archiving = {c["type"]: c["status"] for c in status["conditions"]}
    assert archiving["ContinuousArchiving"] == "True"
    assert operator_version() == "1.30.0"


def test_a_missing_rbac_rule_is_refused_by_the_real_authorizer_with_a_403(tmp_path):
    """The same RBAC less one rule (listing Backups): the real API server's authorizer answers
    403 and the drill is refused at preflight, before anything is touched."""
    documents = list(yaml.safe_load_all(pgdrill_rbac("--service-account", "pgdrill-norule")))
    cut = 0
    for doc in (d for d in documents if d):
        # Roles and bindings of their own, so that pgdrill's real Roles stay untouched
        if doc["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
            doc["metadata"]["name"] += "-norule"
        if doc["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            doc["roleRef"]["name"] += "-norule"
        if doc["kind"] == "Role" and doc["metadata"]["name"] == "pgdrill-source-norule":
            for rule in doc["rules"]:
                if "backups" in rule.get("resources", []):
                    rule["resources"].remove("backups")
                    cut += 1
            doc["rules"] = [r for r in doc["rules"] if r.get("resources")]
    assert cut, "the generated Role lists backups"
    rbac_yaml = yaml.safe_dump_all(documents)
    kubeconfig = service_account_kubeconfig(tmp_path, "pgdrill-norule", rbac_yaml)
    try:
        out, evidence = chaos_run(
            "backup-restore", drill_env(kubeconfig, tmp_path / "reports"), tmp_path
        )
    finally:
        kubectl("delete", "--ignore-not-found", "-f", "-", input=rbac_yaml)
    # the API server's 403 is in the verdict's reasons, with the fix
    assert out.returncode != 0 and evidence["verdict"] in ("refused", "failed")
    reasons = json.dumps(evidence["reasons"])
    assert "HTTP 403" in reasons and "backups" in reasons, reasons
    assert "grant the drill's service account" in reasons


def test_every_manifest_pgdrill_creates_is_admitted_and_nothing_is_pruned(
    tmp_path, drill_kubeconfig
):
    """`pgdrill plan` prints the manifests a restore would create; the real API server with
    CNPG's webhooks admits them (server-side dry run) and stores every field that was sent."""
    plan = subprocess.run(
        [
            PGDRILL,
            "plan",
            "experiments/backup-restore.json",
            "--target",
            "cnpg",
            "--cluster",
            CLUSTER,
            "--namespace",
            NAMESPACE,
        ],
        cwd=REPO,
        env=drill_env(drill_kubeconfig, tmp_path / "reports"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plan.returncode == 0, plan.stderr
    sent = [d for d in yaml.safe_load_all(plan.stdout) if d]
    assert any(d["kind"] == "Cluster" for d in sent)
    for document in sent:
        stored = json.loads(
            kubectl(
                "apply", "--dry-run=server", "-o", "json", "-f", "-", input=yaml.safe_dump(document)
            ).stdout
        )
        assert not pruned(document, stored), (document["kind"], pruned(document, stored))


def pruned(sent, stored, path="") -> list[str]:
    """Paths present in what was sent and absent from what the API server stored."""
    if isinstance(sent, dict):
        if not isinstance(stored, dict):
            return [path or "/"]
        return [
            p
            for key, value in sent.items()
            for p in (
                [f"{path}/{key}"]
                if key not in stored
                else pruned(value, stored[key], f"{path}/{key}")
            )
        ]
    if isinstance(sent, list) and isinstance(stored, list) and len(sent) == len(stored):
        return [
            p for i, (a, b) in enumerate(zip(sent, stored)) for p in pruned(a, b, f"{path}[{i}]")
        ]
    return []


# cluster-loss last: it destroys and rebuilds the source
EXPERIMENTS = [
    "backup-restore",
    "pitr-restore-point",
    "table-corruption",
    "table-corruption-physical",
    "primary-pod-loss",
    "pvc-loss",
    "cluster-loss",
]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_passes_on_the_real_operator(experiment, tmp_path, drill_kubeconfig):
    extra = {}
    name = experiment
    if experiment == "table-corruption-physical":
        name, extra = "table-corruption", {"PGDRILL_CORRUPTION_MODE": "physical"}
    app_before = app_secret() if experiment == "cluster-loss" else None
    out, evidence = chaos_run(
        name, drill_env(drill_kubeconfig, tmp_path / "reports", **extra), tmp_path
    )
    assert out.returncode == 0 and evidence["verdict"] == "passed", (
        evidence.get("reasons"),
        out.stdout[-4000:],
        out.stderr[-2000:],
    )
    assert evidence["target"] == "cnpg"
    facts = json.dumps(evidence["target_facts"])
    assert "1.30.0" in facts, "the evidence names the operator's version"
    restore = evidence.get("restore") or {}
    if restore:
        assert restore["position_ok"] is True
        assert all(v["passed"] for v in evidence["validation"])
    if experiment in ("primary-pod-loss", "pvc-loss"):
        failover = evidence["failover"]
        assert failover["lost_writes"] == 0 and failover["holes"] == 0
        # the lab's Cluster runs spec.postgresql.synchronous: CNPG made its standby a
        # quorum standby, which is why no acknowledged write may be lost
        assert evidence["fault"]["replication"]["synchronous"] is True, evidence["fault"]
        assert failover["target"]["operator"]["seconds"] is not None
    if experiment == "cluster-loss":
        # the rebuilt Cluster is a new object: CNPG made a new <cluster>-app Secret, and the
        # application role logs in with ITS password (scram over TCP, as the load does)
        app_after = app_secret()
        assert app_after["uid"] != app_before["uid"]
        assert app_after["password"] != app_before["password"]
        primary = kubectl(
            "-n", NAMESPACE, "get", "cluster", CLUSTER, "-o", "jsonpath={.status.currentPrimary}"
        ).stdout
        login = kubectl(
            "-n",
            NAMESPACE,
            "exec",
            "-i",
            primary,
            "-c",
            "postgres",
            "--",
            "sh",
            "-c",
            "read -r PGPASSWORD; export PGPASSWORD; psql -h 127.0.0.1 -U "
            "app -d app -Atc 'SELECT current_user'",
            input=app_after["password"],
        )
        assert login.stdout.strip() == "app", login.stderr
        stale = kubectl(
            "-n",
            NAMESPACE,
            "exec",
            "-i",
            primary,
            "-c",
            "postgres",
            "--",
            "sh",
            "-c",
            "read -r PGPASSWORD; export PGPASSWORD; psql -h 127.0.0.1 -U "
            "app -d app -Atc 'SELECT 1'",
            input=app_before["password"],
            check=False,
        )
        assert stale.returncode != 0 and "password authentication failed" in stale.stderr
    if experiment == "pvc-loss":
        # the real operator's promoted replica never archives what it streamed: the drill
        # found the hole the lost primary left and had PostgreSQL archive it
        assert_failover_hole_closed(evidence)
    # no credential value of the lab's S3 in the run folder
    folder = newest_run_folder(tmp_path / "reports")
    written = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    for value in lab_secret_values():
        assert value.encode() not in written
    # nothing left in restore-test
    left = kubectl("-n", RESTORE_NS, "get", "clusters,pvc", "-o", "name").stdout.strip()
    assert left == ""
