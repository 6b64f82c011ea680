"""The fake CNPG operator (tests/fakekube/operator.py), through the REAL kubernetes client
against the fake API server: the objects it seeds look like CNPG's, and what it does is real
— a deleted primary pod is a real failover, a Backup a real barman-cloud backup, a recovery
Cluster a real restore of the sandbox's archive. One world (sandbox + server + operator) for
the module; every wait polls with a deadline."""

from __future__ import annotations

import base64
import dataclasses
import re
import select
import socket
import threading
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from kubernetes.client import CoreV1Api, CustomObjectsApi, V1DeleteOptions
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward, stream

from pgdrill.core.model import RecoveryTarget
from pgdrill.core.waiting import poll_until
from pgdrill.credentials.secret import secret_manifest
from pgdrill.targets.cnpg.manifests import (
    backup_manifest,
    read_source,
    restore_manifests,
    restore_secret_name,
    validate_manifest,
)
from pgdrill.targets.cnpg.status import HEALTHY, unhealthy_reasons
from tests.fakekube.world import cnpg_world

pytestmark = pytest.mark.sandbox

GROUP, VERSION, PLUGIN_GROUP = "postgresql.cnpg.io", "v1", "barmancloud.cnpg.io"
RESTORE_NS = "restore-test"
MICRO_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(scope="module")
def world():
    with cnpg_world("in-tree") as w:
        yield w


@pytest.fixture(scope="module")
def api(world):
    client = world.server.api_client()
    return CoreV1Api(client), CustomObjectsApi(client)


# -- helpers ---------------------------------------------------------------------------------
def get_cluster(world, namespace=None, name=None) -> dict:
    return CustomObjectsApi(world.server.api_client()).get_namespaced_custom_object(
        GROUP, VERSION, namespace or world.namespace, "clusters", name or world.cluster
    )


def wait_healthy(world, namespace=None, name=None, timeout=120) -> dict:
    def healthy():
        cluster = get_cluster(world, namespace, name)
        return cluster if not unhealthy_reasons(cluster) else None

    return poll_until(healthy, timeout=timeout, interval=0.2, what="the Cluster to be healthy")


def secret_values(world, namespace, name) -> dict[str, str]:
    secret = CoreV1Api(world.server.api_client()).read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def _pump(client: socket.socket, forward, port: int) -> None:
    remote = forward.socket(port)
    remote.setblocking(True)
    try:
        while True:
            readable, _, _ = select.select([client, remote], [], [])
            for src in readable:
                data = src.recv(65536)
                if not data:
                    return
                (remote if src is client else client).sendall(data)
    except OSError:
        pass
    finally:
        client.close()
        forward.close()


@contextmanager
def port_forwarded(world, namespace: str, pod: str, port: int = 5432):
    """A local TCP port relayed to the pod's `port` through pods/portforward (one websocket
    per accepted connection, as kubectl port-forward does)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.setblocking(True)
            core = CoreV1Api(world.server.api_client())  # stream() patches its client
            forward = portforward(
                core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port)
            )
            threading.Thread(target=_pump, args=(client, forward, port), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextmanager
def connect(world, namespace: str, pod: str, secret: str, dbname: str = "app"):
    values = secret_values(world, namespace, secret)
    with port_forwarded(world, namespace, pod) as port:
        with psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=values["username"],
            password=values["password"],
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
            sslmode="disable",
        ) as conn:
            yield conn


def delete_pod(world, name: str) -> None:
    CoreV1Api(world.server.api_client()).delete_namespaced_pod(
        name, world.namespace, body=V1DeleteOptions(grace_period_seconds=1)
    )


def create_restore(world, docs: list[dict]) -> None:
    """As the cnpg target does: the credentials Secret, then the recovery manifests."""
    cluster_name = next(d["metadata"]["name"] for d in docs if d["kind"] == "Cluster")
    core, custom = CoreV1Api(world.server.api_client()), CustomObjectsApi(world.server.api_client())
    c = world.sandbox_credentials()
    secret = secret_manifest(
        {
            "ACCESS_KEY_ID": c.access_key_id,
            "ACCESS_SECRET_KEY": c.secret_access_key,
            "BUCKET": c.bucket,
            "ENDPOINT": c.endpoint,
            "REGION": c.region,
        },
        name=restore_secret_name(cluster_name),
        namespace=RESTORE_NS,
    )
    if not world.server.store.get(
        ("", "v1", "secrets"), RESTORE_NS, restore_secret_name(cluster_name)
    ):
        core.create_namespaced_secret(RESTORE_NS, secret)
    for doc in docs:
        validate_manifest(doc)
        group = PLUGIN_GROUP if doc["kind"] == "ObjectStore" else GROUP
        plural = "objectstores" if doc["kind"] == "ObjectStore" else "clusters"
        custom.create_namespaced_custom_object(group, VERSION, RESTORE_NS, plural, doc)


def remove_restore(world, name: str) -> None:
    """As the cnpg target cleans up: the Cluster, its PVCs, the Secret, the ObjectStore copy."""
    core, custom = CoreV1Api(world.server.api_client()), CustomObjectsApi(world.server.api_client())
    custom.delete_namespaced_custom_object(GROUP, VERSION, RESTORE_NS, "clusters", name)
    for pvc in core.list_namespaced_persistent_volume_claim(
        RESTORE_NS, label_selector=f"cnpg.io/cluster={name}"
    ).items:
        try:
            core.delete_namespaced_persistent_volume_claim(pvc.metadata.name, RESTORE_NS)
        except ApiException as exc:  # already gone: the Cluster's deletion released it
            if exc.status != 404:
                raise
    for store in custom.list_namespaced_custom_object(
        PLUGIN_GROUP, VERSION, RESTORE_NS, "objectstores"
    )["items"]:
        custom.delete_namespaced_custom_object(
            PLUGIN_GROUP, VERSION, RESTORE_NS, "objectstores", store["metadata"]["name"]
        )
    core.delete_namespaced_secret(restore_secret_name(name), RESTORE_NS)
    poll_until(
        lambda: (
            not core.list_namespaced_pod(RESTORE_NS).items
            and not core.list_namespaced_persistent_volume_claim(RESTORE_NS).items
            and world.sandbox.restored_instance() is None
        ),
        timeout=60,
        what="restore-test to be removed",
    )


def take_backup(world, name: str) -> dict:
    custom = CustomObjectsApi(world.server.api_client())
    source = read_source(get_cluster(world), object_store(world))
    custom.create_namespaced_custom_object(
        GROUP, VERSION, world.namespace, "backups", backup_manifest(source, name)
    )

    def finished():
        doc = custom.get_namespaced_custom_object(GROUP, VERSION, world.namespace, "backups", name)
        return doc if (doc.get("status") or {}).get("phase") in ("completed", "failed") else None

    return poll_until(finished, timeout=300, interval=0.3, what=f"Backup {name} to finish")


def object_store(world) -> dict | None:
    plugins = get_cluster(world)["spec"].get("plugins") or []
    if not plugins:
        return None
    return CustomObjectsApi(world.server.api_client()).get_namespaced_custom_object(
        PLUGIN_GROUP,
        VERSION,
        world.namespace,
        "objectstores",
        plugins[0]["parameters"]["barmanObjectName"],
    )


def condition(cluster: dict, kind: str) -> dict:
    return next(c for c in cluster["status"]["conditions"] if c["type"] == kind)


# -- seeded objects --------------------------------------------------------------------------
def test_the_seeded_objects_look_like_cnpgs(world, api):
    core, custom = api
    state = world.sandbox.layout.read()
    cluster = get_cluster(world)
    validate_manifest(cluster)  # status included
    spec, status = cluster["spec"], cluster["status"]
    store = spec["backup"]["barmanObjectStore"]
    assert spec["instances"] == 2 and spec["enableSuperuserAccess"] is True
    assert (spec["failoverDelay"], spec["switchoverDelay"]) == (0, 3600)
    assert store["destinationPath"] == f"s3://{state.bucket}/"
    assert store["serverName"] == state.cluster != world.cluster
    assert store["endpointURL"] == state.endpoint_url
    assert status["phase"] == HEALTHY and status["readyInstances"] == 2
    assert status["currentPrimary"] == status["targetPrimary"]
    assert MICRO_TS.match(status["currentPrimaryTimestamp"])
    assert MICRO_TS.match(status["targetPrimaryTimestamp"])
    assert condition(cluster, "Ready")["status"] == "True"
    assert condition(cluster, "ContinuousArchiving")["status"] == "True"
    assert status["timelineID"] >= 1 and status["lastSuccessfulBackup"]
    assert status["firstRecoverabilityPoint"]

    pods = core.list_namespaced_pod(
        world.namespace,
        label_selector=(f"cnpg.io/cluster={world.cluster},cnpg.io/podRole=instance"),
    ).items
    assert sorted(p.metadata.name for p in pods) == [f"{world.cluster}-1", f"{world.cluster}-2"]
    assert sorted(world.operator.pods.values()) == sorted(state.instances)
    primaries = [
        p.metadata.name for p in pods if p.metadata.labels["cnpg.io/instanceRole"] == "primary"
    ]
    assert primaries == [status["currentPrimary"]]
    assert world.operator.pods[primaries[0]] == state.primary_name
    for pod in pods:
        assert pod.metadata.labels["role"] == pod.metadata.labels["cnpg.io/instanceRole"]
        assert pod.metadata.labels["cnpg.io/instanceName"] == pod.metadata.name
        assert [c.name for c in pod.spec.containers] == ["postgres"]
        assert pod.status.phase == "Running" and pod.status.pod_ip
        assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    for pvc in core.list_namespaced_persistent_volume_claim(world.namespace).items:
        assert "kubernetes.io/pvc-protection" in pvc.metadata.finalizers
        assert pvc.metadata.labels["cnpg.io/pvcRole"] == "PG_DATA"
        assert pvc.metadata.owner_references[0].kind == "Cluster"

    for user in ("superuser", "app"):
        values = secret_values(world, world.namespace, f"{world.cluster}-{user}")
        assert {"username", "password", "dbname", "host", "port", "uri"} <= set(values)
    assert {"ACCESS_KEY_ID", "ACCESS_SECRET_KEY", "REGION"} <= set(
        secret_values(world, world.namespace, "cnpg-backup-s3")
    )
    services = {s.metadata.name for s in core.list_namespaced_service(world.namespace).items}
    assert services >= {f"{world.cluster}-{s}" for s in ("rw", "ro", "r")}
    scheduled = custom.get_namespaced_custom_object(
        GROUP, VERSION, world.namespace, "scheduledbackups", f"{world.cluster}-daily"
    )
    validate_manifest(scheduled)
    assert scheduled["spec"]["schedule"] == "0 0 0 * * *"
    assert scheduled["status"]["lastScheduleTime"].endswith("T00:00:00Z")

    operator = core.list_namespaced_pod(
        "cnpg-system", label_selector="app.kubernetes.io/name=cloudnative-pg"
    )
    [operator_pod] = operator.items
    # raw bytes: the client would json-decode a log that is one JSON line
    log = core.read_namespaced_pod_log(
        operator_pod.metadata.name, "cnpg-system", _preload_content=False
    ).data.decode()
    assert '"msg": "seeded Cluster' in log
    log = core.read_namespaced_pod_log(
        primaries[0], world.namespace, timestamps=True, _preload_content=False
    ).data.decode()
    assert log and all(re.match(r"^\d{4}-\d\d-\d\dT\S+Z ", line) for line in log.splitlines())


def test_exec_runs_in_the_instance_with_its_pgdata(world, api):
    core, _ = api
    out = stream(
        core.connect_get_namespaced_pod_exec,
        f"{world.cluster}-2",
        world.namespace,
        container="postgres",
        command=["sh", "-c", 'cat "$PGDATA/PG_VERSION"'],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert out.strip().isdigit()


# -- backups -----------------------------------------------------------------------------------
def test_a_backup_is_a_real_barman_cloud_backup(world):
    before = get_cluster(world)["status"]["lastSuccessfulBackup"]
    doc = take_backup(world, f"manual-{uuid.uuid4().hex[:6]}")
    status = doc["status"]
    assert status["phase"] == "completed", status
    assert status["backupId"] in [b.id for b in world.sandbox.list_backups()]
    for field in ("beginLSN", "endLSN", "beginWal", "endWal", "startedAt", "stoppedAt"):
        assert status[field], field
    state = world.sandbox.layout.read()
    assert status["serverName"] == state.cluster  # in-tree backups say where they are
    assert status["destinationPath"] == f"s3://{state.bucket}/"
    assert status["instanceID"]["podName"] == get_cluster(world)["status"]["currentPrimary"]
    cluster = get_cluster(world)
    assert condition(cluster, "LastBackupSucceeded")["status"] == "True"
    assert cluster["status"]["lastSuccessfulBackup"] >= before


def test_fail_backups_ends_the_next_backup_failed_without_barman(world):
    ids = {b.id for b in world.sandbox.list_backups()}
    world.operator.fail_backups = "barman-cloud-backup: connection refused"
    try:
        doc = take_backup(world, f"doomed-{uuid.uuid4().hex[:6]}")
    finally:
        world.operator.fail_backups = None
    assert doc["status"]["phase"] == "failed"
    assert doc["status"]["error"] == "barman-cloud-backup: connection refused"
    assert {b.id for b in world.sandbox.list_backups()} == ids
    assert condition(get_cluster(world), "LastBackupSucceeded")["status"] == "False"


# -- recovery ----------------------------------------------------------------------------------
def test_a_recovery_cluster_restores_the_real_archive(world):
    marker = f"fake-operator-{uuid.uuid4().hex[:8]}"
    primary = world.sandbox.primary()
    with world.sandbox.connect(primary, "app") as conn:  # written after the last backup
        conn.execute("INSERT INTO pgdrill_sentinel VALUES (%s, 'archived')", (marker,))
    world.sandbox._cluster().wait_archiving(primary.name)
    docs = restore_manifests(read_source(get_cluster(world)), RecoveryTarget())
    name = docs[-1]["metadata"]["name"]
    create_restore(world, docs)
    try:
        cluster = wait_healthy(world, RESTORE_NS, name, timeout=300)
        assert cluster["status"]["currentPrimary"] == f"{name}-1"
        job = world.server.store.get(("batch", "v1", "jobs"), RESTORE_NS, f"{name}-1-full-recovery")
        assert job["metadata"]["labels"]["cnpg.io/jobRole"] == "full-recovery"
        assert job["status"]["succeeded"] == 1
        with connect(world, RESTORE_NS, f"{name}-1", f"{name}-superuser") as conn:
            assert conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0] == 100000
            assert (
                conn.execute("SELECT value FROM pgdrill_sentinel WHERE key = 'drill'").fetchone()[0]
                == "ok"
            )
            assert (
                conn.execute(
                    "SELECT value FROM pgdrill_sentinel WHERE key = %s", (marker,)
                ).fetchone()[0]
                == "archived"
            )
            assert conn.execute("SHOW archive_mode").fetchone()[0] == "off"
    finally:
        remove_restore(world, name)


def test_a_recovery_cluster_with_a_wrong_server_name_stays_setting_up_primary(world):
    source = dataclasses.replace(read_source(get_cluster(world)), server_name="not-the-server")
    docs = restore_manifests(source, RecoveryTarget(), name=f"{world.cluster}-wrong")
    name = docs[-1]["metadata"]["name"]
    create_restore(world, docs)
    try:

        def stuck():
            status = get_cluster(world, RESTORE_NS, name).get("status") or {}
            return status if "not-the-server" in (status.get("phaseReason") or "") else None

        status = poll_until(stuck, timeout=30, interval=0.2, what="the phaseReason")
        assert status["phase"] == "Setting up primary"
        assert "no target backup found" in status["phaseReason"]
        assert world.server.store.list(("batch", "v1", "jobs"), RESTORE_NS) == []
        assert any(
            e["level"] == "error" and "not-the-server" in e["msg"] for e in world.operator.events
        )
        assert world.sandbox.restored_instance() is None
    finally:
        remove_restore(world, name)


def test_a_recovery_from_a_missing_backup_is_unrecoverable(world):
    docs = restore_manifests(
        read_source(get_cluster(world)),
        RecoveryTarget(),
        name=f"{world.cluster}-missing",
        backup_id="20000101T000000",
    )
    name = docs[-1]["metadata"]["name"]
    create_restore(world, docs)
    try:

        def given_up():
            status = get_cluster(world, RESTORE_NS, name).get("status") or {}
            return (
                status
                if status.get("phase") == "Cluster is unrecoverable and needs manual intervention"
                else None
            )

        status = poll_until(given_up, timeout=60, interval=0.2, what="the recovery to fail")
        assert status["phaseReason"] == (
            f"Instance creation failed for the following jobs: {name}-1-full-recovery"
        )
        job = world.server.store.get(("batch", "v1", "jobs"), RESTORE_NS, f"{name}-1-full-recovery")
        assert job["status"]["failed"] == 1
        assert (
            "no backup found with ID 20000101T000000" in job["status"]["conditions"][0]["message"]
        )
    finally:
        remove_restore(world, name)


# -- failures --------------------------------------------------------------------------------
def test_deleting_the_primary_pod_is_a_real_failover(world):
    before = wait_healthy(world)["status"]
    old = before["currentPrimary"]
    delete_pod(world, old)

    def promoted():
        status = get_cluster(world)["status"]
        return status if status["currentPrimary"] not in (old, None) else None

    status = poll_until(promoted, timeout=60, interval=0.1, what="a new currentPrimary")
    new = status["currentPrimary"]
    assert status["targetPrimary"] == new
    assert status["currentPrimaryTimestamp"] >= status["targetPrimaryTimestamp"]
    assert status["timelineID"] > before["timelineID"]
    assert world.operator.pods[new] == world.sandbox.layout.read().primary_name
    with connect(world, world.namespace, new, f"{world.cluster}-superuser") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS after_failover (id int)")
        conn.execute("INSERT INTO after_failover VALUES (1)")
        assert conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0] is True
    wait_healthy(world)  # the old pod is back under its own name, as a replica
    pod = world.server.store.get(("", "v1", "pods"), world.namespace, old)
    assert pod["metadata"]["labels"]["cnpg.io/instanceRole"] == "replica"


def test_destroying_an_instance_wipes_and_reclones_it(world):
    status = wait_healthy(world)["status"]
    replica = next(p for p in world.operator.pods if p != status["currentPrimary"])
    core = CoreV1Api(world.server.api_client())
    old_uid = core.read_namespaced_persistent_volume_claim(replica, world.namespace).metadata.uid
    core.delete_namespaced_persistent_volume_claim(replica, world.namespace)
    assert core.read_namespaced_persistent_volume_claim(  # pvc-protection: Terminating
        replica, world.namespace
    ).metadata.deletion_timestamp
    delete_pod(world, replica)
    phases = set()

    def recreated():
        cluster = get_cluster(world)
        phases.add(cluster["status"]["phase"])
        pvc = world.server.store.get(("", "v1", "persistentvolumeclaims"), world.namespace, replica)
        return pvc and pvc["metadata"]["uid"] != old_uid and not unhealthy_reasons(cluster)

    poll_until(recreated, timeout=120, interval=0.1, what="the instance to be re-cloned")
    assert "Creating a new replica" in phases
    assert any(
        e.get("event") == "reclone" and e.get("instance") == world.operator.pods[replica]
        for e in world.sandbox.layout.events()
    )


def test_stuck_failover_keeps_current_primary_behind_target(world):
    old = wait_healthy(world)["status"]["currentPrimary"]
    world.operator.stuck_failover = True
    try:
        delete_pod(world, old)
        poll_until(
            lambda: (
                world.operator.pod_of(world.sandbox.layout.read().primary_name) not in (old, None)
            ),
            timeout=60,
            what="the sandbox supervisor to promote",
        )

        def elected():
            status = get_cluster(world)["status"]
            return status if status["targetPrimary"] not in (old, "pending") else None

        status = poll_until(elected, timeout=30, interval=0.1, what="targetPrimary")
        status = get_cluster(world)["status"]
        assert status["currentPrimary"] == old != status["targetPrimary"]
        assert status["phase"] == "Failing over"
        assert "is not the currentPrimary" in " ".join(unhealthy_reasons(get_cluster(world)))
    finally:
        world.operator.unstick()
    wait_healthy(world)


# -- the plugin style ----------------------------------------------------------------------------
def test_the_plugin_style_backs_up_and_restores_through_object_stores(world):
    with cnpg_world("plugin", sandbox=world.sandbox, namespace="staging-plugin") as plugin:
        cluster = get_cluster(plugin)
        validate_manifest(cluster)
        [entry] = cluster["spec"]["plugins"]
        assert entry["parameters"]["serverName"] == world.sandbox.layout.read().cluster
        store = object_store(plugin)
        validate_manifest(store)
        assert "serverName" not in store["spec"]["configuration"]
        status = take_backup(plugin, "plugin-backup")["status"]
        assert status["phase"] == "completed" and status["method"] == "plugin"
        assert "destinationPath" not in status and "serverName" not in status  # cnpg.md §3
        assert status["backupId"] in [b.id for b in world.sandbox.list_backups()]
        window = object_store(plugin)["status"]["serverRecoveryWindow"]
        assert window[entry["parameters"]["serverName"]]["lastSuccessfulBackupTime"]

        docs = restore_manifests(
            read_source(cluster, store), RecoveryTarget(), backup_id=status["backupId"]
        )
        assert [d["kind"] for d in docs] == ["ObjectStore", "Cluster"]
        name = docs[-1]["metadata"]["name"]
        create_restore(plugin, docs)
        try:
            wait_healthy(plugin, RESTORE_NS, name, timeout=300)
            with connect(plugin, RESTORE_NS, f"{name}-1", f"{name}-superuser") as conn:
                assert (
                    conn.execute(
                        "SELECT value FROM pgdrill_sentinel WHERE key = 'drill'"
                    ).fetchone()[0]
                    == "ok"
                )
        finally:
            remove_restore(plugin, name)
        kinds = {d["kind"] for d in plugin.operator.created_documents()}
        assert kinds == {"Backup", "ObjectStore", "Cluster"}
