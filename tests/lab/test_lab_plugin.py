"""The barman-cloud plugin style on the lab (lab/plugin.py): plugin-barman-cloud v0.15.0 from
its own manifest beside the real CloudNativePG operator, Cluster pg-plugin archiving and
backing up through it (ObjectStore pg-plugin-store), and the restore drills passing on it
through `chaos run` as the ServiceAccount `pgdrill rbac` generates — with the plugin style,
i.e. a restore-test Cluster reading the archive through an ObjectStore copy, removed after."""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager

import pytest

from tests.conftest import REPO
from tests.lab.conftest import LAB, NAMESPACE, RESTORE_NS, drill_env, kubectl, kubectl_bin
from tests.lab.test_lab_drills import chaos_run, lab_secret_values

PLUGIN_ENV_FILE = REPO / "environments" / "lab-plugin.yaml"
PLUGIN_CLUSTER, STORE = "pg-plugin", "pg-plugin-store"
PLUGIN_NAME = "barman-cloud.cloudnative-pg.io"
OPERATOR_NS, PLUGIN_DEPLOYMENT = "cnpg-system", "barman-cloud"
PLUGIN_IMAGE = "pgdrill.local/plugin-barman-cloud:v0.15.0"
SIDECAR_IMAGE = "pgdrill.local/plugin-barman-cloud-sidecar:v0.15.0"
SIDECAR = "plugin-barman-cloud"  # the container the plugin injects into instance pods
SIDECAR_ENV = "PGDRILL_LAB_SIDECAR"  # the env var of lab/plugin.py's ObjectStore sidecar config


@pytest.fixture(scope="module", autouse=True)
def plugin_lab():
    """Skip the module unless lab/plugin.py ran on this lab (its ObjectStore exists)."""
    if LAB is None:
        pytest.skip("the lab suite: run `make test-lab` (PGDRILL_LAB unset)")
    found = kubectl(
        "-n", NAMESPACE, "get", "objectstores.barmancloud.cnpg.io", STORE, "-o", "name", check=False
    )
    if found.returncode != 0:
        pytest.skip(
            f"lab/plugin.py was never run on this lab (no ObjectStore {NAMESPACE}/"
            f"{STORE}): .venv/bin/python lab/plugin.py {LAB}"
        )


def get_json(*args: str) -> dict:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def test_the_plugin_runs_and_pg_plugin_archives_through_it():
    deployment = get_json("-n", OPERATOR_NS, "get", "deployment", PLUGIN_DEPLOYMENT)
    available = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
    assert available["Available"] == "True"
    assert [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]] == [
        PLUGIN_IMAGE
    ]
    # the operator found the plugin by its Service (label + TLS/port annotations) and took it in
    service = get_json("-n", OPERATOR_NS, "get", "service", PLUGIN_DEPLOYMENT)
    assert service["metadata"]["labels"]["cnpg.io/pluginName"] == PLUGIN_NAME
    assert "cnpg.io/cleanupPlugin" in service["metadata"].get("finalizers", [])

    cluster = get_json("-n", NAMESPACE, "get", "cluster", PLUGIN_CLUSTER)
    spec, status = cluster["spec"], cluster["status"]
    assert status["phase"] == "Cluster in healthy state"
    assert {c["type"]: c["status"] for c in status["conditions"]}["ContinuousArchiving"] == "True"
    assert "barmanObjectStore" not in (spec.get("backup") or {})
    archivers = [p for p in spec.get("plugins", []) if p.get("isWALArchiver")]
    assert [(p["name"], p["parameters"]["barmanObjectName"]) for p in archivers] == [
        (PLUGIN_NAME, STORE)
    ]
    assert PLUGIN_NAME in [p["name"] for p in status.get("pluginStatus", [])]

    pods = get_json(
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-l",
        f"cnpg.io/cluster={PLUGIN_CLUSTER},cnpg.io/instanceRole=primary",
    )["items"]
    assert len(pods) == 1
    pod = pods[0]["spec"]
    injected = [
        c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == SIDECAR
    ]
    assert [c["image"] for c in injected] == [SIDECAR_IMAGE], [
        c["name"] for c in pod.get("initContainers", []) + pod["containers"]
    ]

    # the plugin's backups: method plugin, completed, and recorded in the ObjectStore's status
    backups = [
        b
        for b in get_json("-n", NAMESPACE, "get", "backups")["items"]
        if b["spec"]["cluster"]["name"] == PLUGIN_CLUSTER
    ]
    assert any(
        b["spec"].get("method") == "plugin" and b["status"].get("phase") == "completed"
        for b in backups
    ), [(b["metadata"]["name"], b.get("status")) for b in backups]
    store = get_json("-n", NAMESPACE, "get", "objectstores.barmancloud.cnpg.io", STORE)
    window = (store.get("status") or {}).get("serverRecoveryWindow", {}).get(PLUGIN_CLUSTER)
    assert window and window.get("firstRecoverabilityPoint"), store.get("status")


def restore_test_left(restore_cluster: str) -> list[str]:
    """What of `restore_cluster` is still in restore-test (Cluster, PVCs, ObjectStore copy).
    Only its own objects: the lab is shared, a drill of pg-main may be restoring there now."""
    names = kubectl(
        "-n", RESTORE_NS, "get", "clusters,pvc,objectstores.barmancloud.cnpg.io", "-o", "name"
    ).stdout.split()
    return [n for n in names if n.split("/", 1)[1].startswith(restore_cluster)]


@contextmanager
def watching(resource: str, jsonpath: str):
    """`kubectl get -w` on `resource` in restore-test while the body runs (as cluster
    admin): yields a list that holds, afterwards, one line per event (the jsonpath)."""
    seen: list[str] = []
    proc = subprocess.Popen(
        [
            kubectl_bin(),
            "--kubeconfig",
            str(LAB / "kubeconfig"),
            "-n",
            RESTORE_NS,
            "get",
            resource,
            "--watch",
            "-o",
            f'jsonpath={jsonpath}{{"\\n"}}',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield seen
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        seen.extend(line for line in out.splitlines() if line.strip())


@pytest.mark.parametrize("experiment", ["backup-restore", "pitr-restore-point"])
def test_the_restore_drills_pass_on_the_plugin_style(experiment, tmp_path, drill_kubeconfig):
    env = drill_env(
        drill_kubeconfig, tmp_path / "reports", PGDRILL_ENVIRONMENT_FILE=str(PLUGIN_ENV_FILE)
    )
    origin = f"{PLUGIN_CLUSTER}-restore-origin"  # the target's ObjectStore copy
    with (
        watching(
            "objectstores.barmancloud.cnpg.io",
            "{.metadata.name} {.spec.configuration.destinationPath} "
            "{.spec.instanceSidecarConfiguration.env[*].name}",
        ) as stores,
        watching(
            "pods",
            "{.metadata.name} {.spec.initContainers[*].env[*].name} "
            "{.spec.containers[*].env[*].name}",
        ) as pods,
        watching(
            "clusters.postgresql.cnpg.io",
            "{.metadata.name} {.spec.externalClusters[0].plugin.name} "
            "{.spec.externalClusters[0].plugin.parameters.barmanObjectName}",
        ) as clusters,
    ):
        out, evidence = chaos_run(experiment, env, tmp_path)
    assert out.returncode == 0 and evidence["verdict"] == "passed", (
        evidence.get("reasons"),
        out.stdout[-4000:],
        out.stderr[-2000:],
    )
    assert evidence["target"] == "cnpg"
    facts = evidence["target_facts"]
    # the plugin style: read from pg-plugin's spec.plugins and its ObjectStore
    assert facts["cluster"] == PLUGIN_CLUSTER and facts["backup_style"] == "plugin", facts
    assert facts["archive"] == f"s3://pgdrill-lab/{PLUGIN_CLUSTER}/", facts
    assert "1.30.0" in json.dumps(facts), "the evidence names the operator's version"
    restore = evidence.get("restore") or {}
    assert restore.get("position_ok") is True, restore
    assert evidence["validation"] and all(v["passed"] for v in evidence["validation"]), evidence[
        "validation"
    ]
    # the restore read the archive through a copy of the ObjectStore in restore-test
    assert f"{origin} s3://pgdrill-lab/ {SIDECAR_ENV}" in stores, stores
    # ... with the source ObjectStore's instanceSidecarConfiguration, which the real plugin
    # put into the recovery Job's pod
    recovery = [p for p in pods if p.startswith(f"{PLUGIN_CLUSTER}-restore-1-full-recovery")]
    assert recovery and any(SIDECAR_ENV in p.split() for p in recovery), pods
    assert f"{PLUGIN_CLUSTER}-restore {PLUGIN_NAME} {origin}" in clusters, clusters
    # the plugin's sidecar archived during the drill: its log is in the run folder
    assert any(
        log.startswith(f"logs/{NAMESPACE}.{PLUGIN_CLUSTER}-") and log.endswith(f".{SIDECAR}.log")
        for log in evidence["logs"]
    ), evidence["logs"]
    if experiment == "backup-restore":  # its manual Backup went through the plugin
        name = evidence["manual_backup"]["name"]
        backup = get_json("-n", NAMESPACE, "get", "backup", name)
        assert backup["spec"]["method"] == "plugin", backup["spec"]
        assert backup["spec"]["pluginConfiguration"]["name"] == PLUGIN_NAME
        assert backup["status"]["phase"] == "completed"
    # no credential value of the lab's S3 in the run folder
    folder = max((p for p in (tmp_path / "reports").iterdir() if p.is_dir()), key=lambda p: p.name)
    written = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    for value in lab_secret_values():
        assert value.encode() not in written
    # nothing left in restore-test: the Cluster, its PVCs and the ObjectStore copy are gone
    restore_cluster = evidence["restore"]["instance"]["name"].rsplit("-", 1)[0]
    assert restore_cluster == f"{PLUGIN_CLUSTER}-restore"
    assert restore_test_left(restore_cluster) == []
