"""The fake Kubernetes API server (tests/fakekube) driven through the REAL `kubernetes` client,
`kubernetes.watch`, `kubernetes.stream` and chaosk8s: what the cnpg target's tests rely on."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import urllib3
import websocket
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward, stream

from tests.fakekube.apiserver import (
    CLUSTERS,
    JOBS,
    NAMESPACES,
    PODS,
    PVCS,
    SECRETS,
    Call,
    FakeKubeServer,
    Store,
)

CNPG = ("postgresql.cnpg.io", "v1")


def pod(name: str, labels: dict | None = None, **status) -> dict:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "postgres", "image": "postgres:16"}]},
    }
    if status:
        doc["status"] = status
    return doc


def cluster(name: str, **spec) -> dict:
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {"instances": 3, **spec},
    }


def error_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


@pytest.fixture
def server():
    with FakeKubeServer() as srv:
        srv.store.create(NAMESPACES, {"metadata": {"name": "staging"}})
        yield srv


@pytest.fixture
def core(server):
    return client.CoreV1Api(server.api_client())


@pytest.fixture
def custom(server):
    return client.CustomObjectsApi(server.api_client())


def test_create_answers_201_with_server_set_metadata(server, core, custom):
    created, status, _ = core.create_namespaced_pod_with_http_info("staging", pod("p1"))
    assert status == 201
    meta = created.metadata
    assert re.fullmatch(r"[0-9a-f-]{36}", meta.uid) and meta.generation == 1
    assert int(meta.resource_version) == server.store.version
    raw = server.store.get(PODS, "staging", "p1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", raw["metadata"]["creationTimestamp"])
    assert created.status.phase == "Pending"  # status in a create is the server's, not ours

    # custom objects: the client only reads a body on 201, so this must not be None
    doc = custom.create_namespaced_custom_object(*CNPG, "staging", "clusters", cluster("pg"))
    assert doc["kind"] == "Cluster" and doc["metadata"]["uid"] and doc["spec"]["instances"] == 3

    generated = core.create_namespaced_config_map(
        "staging", {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    )
    assert re.fullmatch(r"cfg-[a-z0-9]{5}", generated.metadata.name)

    widget = custom.create_namespaced_custom_object(
        "example.com", "v1", "staging", "widgets", {"metadata": {"name": "w"}, "spec": {}}
    )
    assert widget["kind"] == "Widget" and widget["apiVersion"] == "example.com/v1"
    listed = custom.list_namespaced_custom_object("example.com", "v1", "staging", "widgets")
    assert listed["kind"] == "WidgetList" and [w["metadata"]["name"] for w in listed["items"]] == [
        "w"
    ]
    assert client.VersionApi(server.api_client()).get_code().git_version == "v1.31.0-fake"


def test_errors_are_real_status_objects(server, core, custom):
    core.create_namespaced_pod("staging", pod("p1"))
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_pod("staging", pod("p1"))
    assert exists.value.status == 409
    body = error_of(exists.value)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["reason"] == "AlreadyExists" and body["message"] == 'pods "p1" already exists'
    assert body["details"] == {"name": "p1", "kind": "pods"}

    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(*CNPG, "staging", "clusters", "nope")
    assert missing.value.status == 404
    assert error_of(missing.value)["reason"] == "NotFound"
    assert error_of(missing.value)["message"] == 'clusters.postgresql.cnpg.io "nope" not found'
    with pytest.raises(ApiException) as gone:
        core.delete_namespaced_pod("nope", "staging")
    assert gone.value.status == 404

    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_pod("nowhere", pod("p1"))
    assert no_namespace.value.status == 404
    assert error_of(no_namespace.value)["message"] == 'namespaces "nowhere" not found'
    assert core.list_namespaced_pod("nowhere").items == []  # a list is never a 404
    assert core.list_namespaced_secret("staging").items == []

    with pytest.raises(ApiException) as bad:
        core.list_namespaced_pod("staging", label_selector="a in (x")
    assert bad.value.status == 400 and error_of(bad.value)["reason"] == "BadRequest"
    with pytest.raises(ApiException) as unsupported:
        core.list_namespaced_pod("staging", field_selector="spec.containers=x")
    assert unsupported.value.status == 400

    with pytest.raises(ApiException) as stale:  # optimistic concurrency
        old = core.read_namespaced_pod("p1", "staging")
        core.patch_namespaced_pod("p1", "staging", {"metadata": {"labels": {"x": "1"}}})
        core.replace_namespaced_pod("p1", "staging", old)
    assert stale.value.status == 409 and error_of(stale.value)["reason"] == "Conflict"

    with pytest.raises(ApiException) as method:
        server.api_client().call_api(
            "/api/v1/namespaces/staging/pods/p1", "POST", body={}, response_types_map={}
        )
    assert method.value.status == 405
    assert error_of(method.value)["reason"] == "MethodNotAllowed"


def test_label_and_field_selectors(server, core):
    store = server.store
    store.create(NAMESPACES, {"metadata": {"name": "prod"}})
    store.create(
        PODS,
        {
            **pod("a1", {"role": "primary", "app": "pg"}, phase="Running"),
            "metadata": {
                "name": "a1",
                "namespace": "staging",
                "labels": {"role": "primary", "app": "pg"},
            },
        },
    )
    store.create(
        PODS,
        {
            **pod("a2", phase="Running"),
            "metadata": {
                "name": "a2",
                "namespace": "staging",
                "labels": {"role": "replica", "app": "pg"},
            },
        },
    )
    store.create(
        PODS,
        {
            **pod("a3", phase="Failed"),
            "metadata": {"name": "a3", "namespace": "staging", "labels": {"role": "replica"}},
        },
    )
    store.create(
        PODS,
        {
            **pod("b1"),
            "metadata": {"name": "b1", "namespace": "prod", "labels": {"role": "primary"}},
        },
    )

    def names(**kw):
        return [p.metadata.name for p in core.list_namespaced_pod("staging", **kw).items]

    assert names() == ["a1", "a2", "a3"]
    assert names(label_selector="role=primary") == ["a1"]
    assert names(label_selector="role==replica") == ["a2", "a3"]
    assert names(label_selector="role!=primary") == ["a2", "a3"]
    assert names(label_selector="role in (primary, replica),app") == ["a1", "a2"]
    assert names(label_selector="role notin (primary)") == ["a2", "a3"]
    assert names(label_selector="!app") == ["a3"]
    assert names(label_selector="app,role=replica") == ["a2"]
    assert names(field_selector="metadata.name=a2") == ["a2"]
    assert names(field_selector="status.phase=Running") == ["a1", "a2"]
    assert names(field_selector="status.phase!=Running,metadata.namespace=staging") == ["a3"]
    everywhere = core.list_pod_for_all_namespaces(label_selector="role=primary")
    assert [(p.metadata.namespace, p.metadata.name) for p in everywhere.items] == [
        ("prod", "b1"),
        ("staging", "a1"),
    ]
    assert (
        store.list(PODS, label_selector="role=primary", field_selector="metadata.name=b1")[0][
            "metadata"
        ]["namespace"]
        == "prod"
    )


def test_merge_and_json_patches(server, core, custom):
    core.create_namespaced_pod("staging", pod("p1", {"keep": "1", "drop": "1"}))
    # a dict body goes out as a strategic merge patch: treated as a JSON merge patch
    patched = core.patch_namespaced_pod(
        "p1", "staging", {"metadata": {"labels": {"drop": None, "new": "2"}}}
    )
    assert patched.metadata.labels == {"keep": "1", "new": "2"}
    assert patched.metadata.generation == 1  # no spec change
    # a list body goes out as a JSON patch
    patched = core.patch_namespaced_pod(
        "p1",
        "staging",
        [
            {"op": "test", "path": "/metadata/labels/keep", "value": "1"},
            {"op": "replace", "path": "/metadata/labels/keep", "value": "3"},
            {"op": "remove", "path": "/metadata/labels/new"},
            {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c"}},
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "side", "image": "x"}},
        ],
    )
    assert patched.metadata.labels == {"keep": "3"}
    assert patched.metadata.annotations == {"a/b": "c"}
    assert [c.name for c in patched.spec.containers] == ["postgres", "side"]
    assert patched.metadata.generation == 2  # spec changed
    with pytest.raises(ApiException) as failed:
        core.patch_namespaced_pod(
            "p1", "staging", [{"op": "test", "path": "/metadata/labels/keep", "value": "nope"}]
        )
    assert failed.value.status == 422
    assert core.read_namespaced_pod("p1", "staging").metadata.labels == {"keep": "3"}

    custom.create_namespaced_custom_object(*CNPG, "staging", "clusters", cluster("pg"))
    doc = custom.patch_namespaced_custom_object(
        *CNPG, "staging", "clusters", "pg", {"spec": {"instances": 2, "new": {"x": 1}}}
    )
    assert doc["spec"] == {"instances": 2, "new": {"x": 1}} and doc["metadata"]["generation"] == 2
    doc = custom.patch_namespaced_custom_object(
        *CNPG,
        "staging",
        "clusters",
        "pg",
        [{"op": "remove", "path": "/spec/new"}],
        _content_type="application/json-patch+json",
    )
    assert doc["spec"] == {"instances": 2}
    before = server.store.version
    again = custom.patch_namespaced_custom_object(
        *CNPG, "staging", "clusters", "pg", {"spec": {"instances": 2}}
    )
    assert again["metadata"]["resourceVersion"] == str(before) == str(server.store.version)


def test_status_is_a_subresource(server, core, custom):
    created = custom.create_namespaced_custom_object(
        *CNPG, "staging", "clusters", {**cluster("pg"), "status": {"phase": "made up"}}
    )
    assert "status" not in created  # a create does not set status
    server.store.patch(CLUSTERS, "staging", "pg", {"status": {"currentPrimary": "pg-1"}})

    # writes to the main resource ignore status
    doc = custom.patch_namespaced_custom_object(
        *CNPG,
        "staging",
        "clusters",
        "pg",
        {"spec": {"instances": 1}, "status": {"currentPrimary": "hacked"}},
    )
    assert doc["spec"]["instances"] == 1 and doc["status"] == {"currentPrimary": "pg-1"}
    whole = custom.get_namespaced_custom_object(*CNPG, "staging", "clusters", "pg")
    whole["status"] = {"currentPrimary": "hacked"}
    whole["spec"]["instances"] = 5
    doc = custom.replace_namespaced_custom_object(*CNPG, "staging", "clusters", "pg", whole)
    assert doc["spec"]["instances"] == 5 and doc["status"] == {"currentPrimary": "pg-1"}

    # writes to /status change only status
    doc = custom.patch_namespaced_custom_object_status(
        *CNPG,
        "staging",
        "clusters",
        "pg",
        {"spec": {"instances": 9}, "status": {"currentPrimary": "pg-2"}},
    )
    assert doc["spec"]["instances"] == 5 and doc["status"] == {"currentPrimary": "pg-2"}
    generation = doc["metadata"]["generation"]
    assert custom.get_namespaced_custom_object_status(*CNPG, "staging", "clusters", "pg")[
        "status"
    ] == {"currentPrimary": "pg-2"}

    core.create_namespaced_pod("staging", pod("p1"))
    current = core.read_namespaced_pod("p1", "staging")
    current.status.phase = "Running"
    current.spec.containers[0].image = "evil"
    replaced = core.replace_namespaced_pod_status("p1", "staging", current)
    assert replaced.status.phase == "Running" and replaced.spec.containers[0].image == "postgres:16"
    assert (
        core.patch_namespaced_pod("p1", "staging", {"status": {"phase": "Failed"}}).status.phase
        == "Running"
    )
    assert server.store.get(CLUSTERS, "staging", "pg")["metadata"]["generation"] == generation


def test_finalizers_and_garbage_collection(server, core, custom):
    owner = custom.create_namespaced_custom_object(
        *CNPG,
        "staging",
        "clusters",
        {**cluster("pg"), "metadata": {"name": "pg", "finalizers": ["cnpg.io/cleanup"]}},
    )
    ref = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "name": "pg",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    instance = core.create_namespaced_pod(
        "staging", {**pod("pg-1"), "metadata": {"name": "pg-1", "ownerReferences": [ref]}}
    )
    core.create_namespaced_persistent_volume_claim(
        "staging",
        {
            "metadata": {
                "name": "pg-1-data",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": "pg-1",
                        "uid": instance.metadata.uid,
                    }
                ],
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    core.create_namespaced_pod("staging", pod("unrelated"))

    deleted = custom.delete_namespaced_custom_object(*CNPG, "staging", "clusters", "pg")
    assert deleted["metadata"]["deletionTimestamp"]
    kept = custom.get_namespaced_custom_object(*CNPG, "staging", "clusters", "pg")
    assert kept["metadata"]["deletionTimestamp"]  # held by its finalizer, dependents too
    assert core.read_namespaced_pod("pg-1", "staging")

    custom.patch_namespaced_custom_object(
        *CNPG, "staging", "clusters", "pg", {"metadata": {"finalizers": None}}
    )
    assert server.store.get(CLUSTERS, "staging", "pg") is None
    assert server.store.get(PODS, "staging", "pg-1") is None  # owned by the cluster
    assert server.store.get(PVCS, "staging", "pg-1-data") is None  # owned by the pod
    assert [p.metadata.name for p in core.list_namespaced_pod("staging").items] == ["unrelated"]

    # propagationPolicy=Orphan keeps dependents and drops the reference
    job = client.BatchV1Api(server.api_client()).create_namespaced_job(
        "staging",
        {
            "metadata": {"name": "j"},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "c", "image": "x"}], "restartPolicy": "Never"}
                }
            },
        },
    )
    server.store.create(
        PODS,
        {
            **pod("j-1"),
            "metadata": {
                "name": "j-1",
                "namespace": "staging",
                "ownerReferences": [{"kind": "Job", "name": "j", "uid": job.metadata.uid}],
            },
        },
    )
    client.BatchV1Api(server.api_client()).delete_namespaced_job(
        "j", "staging", propagation_policy="Orphan"
    )
    assert server.store.get(JOBS, "staging", "j") is None
    assert server.store.get(PODS, "staging", "j-1")["metadata"]["ownerReferences"] == []


def test_secret_string_data_is_folded_into_data(server, core):
    core.create_namespaced_secret(
        "staging",
        {
            "metadata": {"name": "creds"},
            "stringData": {"password": "s3cret"},
            "data": {"user": base64.b64encode(b"app").decode()},
        },
    )
    raw = server.store.get(SECRETS, "staging", "creds")
    assert "stringData" not in raw and raw["type"] == "Opaque"
    assert {k: base64.b64decode(v) for k, v in raw["data"].items()} == {
        "password": b"s3cret",
        "user": b"app",
    }
    read = core.read_namespaced_secret("creds", "staging")
    assert base64.b64decode(read.data["password"]) == b"s3cret" and read.string_data is None


def test_delete_options_and_deletecollection(server, core):
    for name, role in (("p1", "primary"), ("p2", "replica"), ("p3", "replica")):
        core.create_namespaced_pod("staging", pod(name, {"role": role}))
    gone = core.delete_namespaced_pod(
        "p1", "staging", body=client.V1DeleteOptions(grace_period_seconds=1)
    )
    assert gone.metadata.name == "p1"  # the API returns the object
    assert server.last_delete_options[(PODS, "staging", "p1")]["gracePeriodSeconds"] == 1
    core.delete_collection_namespaced_pod("staging", label_selector="role=replica")
    assert server.store.list(PODS, "staging") == []


def test_watch_streams_changes_and_ends_after_its_timeout(server, core):
    store = server.store
    store.create(
        PODS,
        {**pod("p1"), "metadata": {"name": "p1", "namespace": "staging", "labels": {"app": "pg"}}},
    )
    store.create(PODS, {**pod("other"), "metadata": {"name": "other", "namespace": "staging"}})
    seen = []
    start = time.monotonic()
    for event in watch.Watch().stream(
        core.list_namespaced_pod, "staging", label_selector="app=pg", timeout_seconds=1
    ):
        seen.append((event["type"], event["object"].metadata.name))
        step = len(seen)
        if step == 1:  # the existing p1, then react to each event with the next change
            store.create(
                PODS,
                {
                    **pod("p2"),
                    "metadata": {"name": "p2", "namespace": "staging", "labels": {"app": "pg"}},
                },
            )
        elif step == 2:
            store.patch(PODS, "staging", "p2", {"metadata": {"labels": {"app": None}}})
        elif step == 3:
            store.patch(PODS, "staging", "p1", {"status": {"phase": "Running"}})
        elif step == 4:
            store.patch(PODS, "staging", "other", {"status": {"phase": "Running"}})
            store.delete(PODS, "staging", "p1")
    elapsed = time.monotonic() - start
    assert seen == [
        ("ADDED", "p1"),
        ("ADDED", "p2"),
        ("DELETED", "p2"),
        ("MODIFIED", "p1"),
        ("DELETED", "p1"),
    ]
    assert 0.9 < elapsed < 3

    # resume from a resourceVersion: only what came after it
    listed = core.list_namespaced_pod("staging")
    core.create_namespaced_pod("staging", pod("p3"))
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            core.list_namespaced_pod,
            "staging",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=0.2,
        )
    ]
    assert events == [("ADDED", "p3")]

    custom = client.CustomObjectsApi(server.api_client())  # custom objects arrive as dicts
    custom.create_namespaced_custom_object(*CNPG, "staging", "clusters", cluster("pg"))
    events = [
        (e["type"], e["object"]["metadata"]["name"])
        for e in watch.Watch().stream(
            custom.list_namespaced_custom_object, *CNPG, "staging", "clusters", timeout_seconds=0.1
        )
    ]
    assert events == [("ADDED", "pg")]

    with FakeKubeServer(Store(history=2)) as small:  # history gone: 410 Expired
        small.store.create(NAMESPACES, {"metadata": {"name": "n"}})
        for i in range(3):
            small.store.create(PODS, {"metadata": {"name": f"p{i}", "namespace": "n"}})
        api = client.CoreV1Api(small.api_client())
        with pytest.raises(ApiException) as expired:
            list(
                watch.Watch().stream(
                    api.list_namespaced_pod, "n", resource_version="1", timeout_seconds=1
                )
            )
        assert expired.value.status == 410


def test_store_wait_changed(server):
    version = server.store.version
    assert server.store.wait_changed(version, timeout=0.05) == version
    threading.Timer(
        0.05, server.store.create, (NAMESPACES, {"metadata": {"name": "later"}})
    ).start()
    assert server.store.wait_changed(version, timeout=5) == version + 1


def test_pod_logs(server, core):
    now = datetime.now(UTC)

    def stamp(seconds_ago: int) -> str:
        return (now - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")

    lines = [
        f"{stamp(3600)} old line",
        f"{stamp(30)} recent one",
        f"{stamp(5)} recent two",
        f"{stamp(1)} newest",
    ]
    asked = []
    server.log_source = lambda ns, name, container: (
        asked.append((ns, name, container)) or ("\n".join(lines) + "\n")
    )
    core.create_namespaced_pod("staging", pod("p1"))

    def log(name="p1", **kwargs) -> str:
        # kubernetes 36 returns str(bytes) from a preloaded read_namespaced_pod_log; read raw
        response = core.read_namespaced_pod_log(name, "staging", _preload_content=False, **kwargs)
        return response.data.decode()

    assert log() == "old line\nrecent one\nrecent two\nnewest\n"
    assert log(tail_lines=2, container="postgres") == "recent two\nnewest\n"
    assert asked[-1] == ("staging", "p1", "postgres")
    since = (now - timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # the python client has no since_time parameter; other clients (kubectl) send sinceTime
    raw = server.api_client().call_api(
        "/api/v1/namespaces/staging/pods/p1/log",
        "GET",
        _preload_content=False,
        query_params=[("sinceTime", since), ("timestamps", "true")],
        response_types_map={},
    )
    assert raw.data.decode().splitlines() == lines[1:]
    assert log(since_seconds=10, tail_lines=1) == "newest\n"
    assert log(limit_bytes=3) == "old"
    with pytest.raises(ApiException) as missing:
        log("nope")
    assert missing.value.status == 404
    with pytest.raises(ApiException) as container:
        log(container="nope")
    assert container.value.status == 400
    server.log_source = None
    assert log() == ""


def test_exec_over_websocket(server, core):
    core.create_namespaced_pod("staging", pod("p1"))
    runs = []

    def handler(namespace, pod_name, container, command, stdin):
        runs.append((namespace, pod_name, container, command, stdin))
        if command[0] == "cat":
            return stdin.upper(), b"", 0
        return b"out: " + " ".join(command).encode() + b"\n", b"warning\n", 3

    server.exec_handler = handler
    ws = stream(
        core.connect_get_namespaced_pod_exec,
        "p1",
        "staging",
        container="postgres",
        command=["psql", "-c", "select 1"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    ws.run_forever(timeout=5)
    assert (ws.read_stdout(), ws.read_stderr(), ws.returncode) == (
        "out: psql -c select 1\n",
        "warning\n",
        3,
    )
    ws.close()
    assert runs[-1] == ("staging", "p1", "postgres", ["psql", "-c", "select 1"], None)

    combined = stream(
        core.connect_get_namespaced_pod_exec,
        "p1",
        "staging",
        command=["true"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
    )
    assert combined == "out: true\nwarning\n"

    server.exec_handler = lambda *args: (b"fine\n", b"", 0)
    ws = stream(
        core.connect_get_namespaced_pod_exec,
        "p1",
        "staging",
        command=["ok"],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
        _preload_content=False,
    )
    ws.run_forever(timeout=5)
    assert ws.read_stdout() == "fine\n" and ws.returncode == 0
    ws.close()

    server.exec_handler = handler  # stdin, ended by closing channel 0 (v5 protocol)
    ws = stream(
        core.connect_get_namespaced_pod_exec,
        "p1",
        "staging",
        command=["cat"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    assert ws.subprotocol == "v5.channel.k8s.io"
    ws.write_stdin("select 2;\n")
    ws.close_channel(0)
    ws.run_forever(timeout=5)
    assert ws.read_stdout() == "SELECT 2;\n" and ws.returncode == 0
    ws.close()
    assert runs[-1][4] == b"select 2;\n"

    # refused upgrades: a missing pod is 404, an unknown container 400 (kubernetes 36 turns
    # either into an AttributeError inside ApiClient, so check the handshake directly)
    for name, container, code in (("nope", "postgres", 404), ("p1", "nope", 400)):
        url = (
            f"{server.url.replace('http', 'ws')}/api/v1/namespaces/staging/pods/{name}/exec"
            f"?command=true&container={container}&stdout=true"
        )
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, header=["sec-websocket-protocol: v4.channel.k8s.io"])
        assert refused.value.status_code == code


@pytest.fixture
def echo_server():
    """A TCP echo server (the "pod port"); answers each connection on its own thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()
    stop.set()
    thread.join()
    listener.close()


def recv_exactly(sock, size: int, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_portforward_relays_bytes_both_ways_per_session(server, core, echo_server):
    core.create_namespaced_pod("staging", pod("pg-1"))
    resolved = []
    server.portforward_resolver = lambda ns, name, port: (
        resolved.append((ns, name, port)) or (echo_server)
    )
    sessions = [
        portforward(core.connect_get_namespaced_pod_portforward, "pg-1", "staging", ports="5432")
        for _ in range(8)
    ]
    sockets = [pf.socket(5432) for pf in sessions]
    try:
        for round_ in range(5):  # interleaved traffic on concurrent sessions never mixes
            for i, sock in enumerate(sockets):
                sock.sendall(f"s{i}r{round_};".encode())
        for i, sock in enumerate(sockets):
            expected = b"".join(f"s{i}r{r};".encode() for r in range(5))
            assert recv_exactly(sock, len(expected)) == expected
        big = bytes(range(256)) * 8192  # 2 MiB, sent while the echo comes back (full duplex)
        sender = threading.Thread(target=sockets[0].sendall, args=(big,))
        sender.start()
        assert recv_exactly(sockets[0], len(big), timeout=20) == big
        sender.join()
    finally:
        for pf in sessions:
            pf.close()
    assert resolved == [("staging", "pg-1", 5432)] * 8

    def refuse(ns, name, port):
        raise ConnectionRefusedError("nothing listens there")

    server.portforward_resolver = refuse
    failed = portforward(
        core.connect_get_namespaced_pod_portforward, "pg-1", "staging", ports="5432"
    )
    assert recv_exactly(failed.socket(5432), 1) == b""  # closed
    assert "nothing listens there" in failed.error(5432)
    failed.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            f"{server.url.replace('http', 'ws')}/api/v1/namespaces/staging/pods/nope/portforward"
            "?ports=5432",
            header=["sec-websocket-protocol: v4.channel.k8s.io"],
        )
    assert refused.value.status_code == 404


def test_chaosk8s_terminate_pods_deletes_exactly_the_labelled_pod(server, core, monkeypatch):
    from chaosk8s.pod.actions import terminate_pods

    monkeypatch.setenv("KUBECONFIG", "/nonexistent")
    for var in ("HTTP_PROXY", "NO_PROXY", "CHAOSTOOLKIT_IN_POD"):
        monkeypatch.delenv(var, raising=False)
    core.create_namespaced_pod("staging", pod("pg-1", {"cnpg.io/instanceRole": "replica"}))
    core.create_namespaced_pod("staging", pod("pg-2", {"cnpg.io/instanceRole": "primary"}))
    core.create_namespaced_pod("staging", pod("pg-3", {"cnpg.io/instanceRole": "replica"}))

    deleted = terminate_pods(
        label_selector="cnpg.io/instanceRole=primary",
        ns="staging",
        grace_period=1,
        secrets={"KUBERNETES_HOST": server.url},
    )
    assert deleted == ["pg-2"]
    assert [p["metadata"]["name"] for p in server.store.list(PODS, "staging")] == ["pg-1", "pg-3"]
    assert server.last_delete_options[(PODS, "staging", "pg-2")]["gracePeriodSeconds"] == 1


def test_calls_are_recorded_and_become_rbac_rules(server, core, custom, echo_server):
    core.create_namespaced_pod("staging", pod("p1"))
    custom.create_namespaced_custom_object(*CNPG, "staging", "clusters", cluster("pg"))
    server.exec_handler = lambda *args: (b"", b"", 0)
    server.portforward_resolver = lambda *args: echo_server
    server.reset_calls()

    core.read_namespace("staging")
    core.list_namespaced_pod("staging", label_selector="a=b")
    list(watch.Watch().stream(core.list_namespaced_pod, "staging", timeout_seconds=0.1))
    core.read_namespaced_pod_log("p1", "staging")
    stream(
        core.connect_get_namespaced_pod_exec,
        "p1",
        "staging",
        command=["true"],
        stdin=False,
        stdout=True,
        stderr=True,
        tty=False,
    )
    pf = portforward(core.connect_get_namespaced_pod_portforward, "p1", "staging", ports="5432")
    pf.close()
    custom.patch_namespaced_custom_object_status(
        *CNPG, "staging", "clusters", "pg", {"status": {"phase": "x"}}
    )
    custom.list_cluster_custom_object(*CNPG, "backups")
    core.delete_namespaced_pod("p1", "staging")
    server.store.create(PODS, {"metadata": {"name": "in-process", "namespace": "staging"}})

    assert server.calls == [
        Call("get", "", "namespaces", None, "staging", "staging"),
        Call("list", "", "pods", None, "staging", None),
        Call("watch", "", "pods", None, "staging", None),
        Call("get", "", "pods", "log", "staging", "p1"),
        Call("create", "", "pods", "exec", "staging", "p1"),
        Call("create", "", "pods", "portforward", "staging", "p1"),
        Call("patch", "postgresql.cnpg.io", "clusters", "status", "staging", "pg"),
        Call("list", "postgresql.cnpg.io", "backups", None, None, None),
        Call("delete", "", "pods", None, "staging", "p1"),
    ]
    assert server.rbac_rules() == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create", "get"]},
        {"apiGroups": ["postgresql.cnpg.io"], "resources": ["backups"], "verbs": ["list"]},
        {"apiGroups": ["postgresql.cnpg.io"], "resources": ["clusters/status"], "verbs": ["patch"]},
    ]
    assert [r["resources"] for r in server.rbac_rules(exclude_namespaces=("staging",))] == [
        ["backups"]
    ]
    server.reset_calls()
    assert server.calls == [] and server.rbac_rules() == []


def test_stop_is_quick_with_open_watches_and_sessions(core, echo_server):
    srv = FakeKubeServer().start()
    srv.store.create(NAMESPACES, {"metadata": {"name": "n"}})
    srv.store.create(PODS, {"metadata": {"name": "p", "namespace": "n"}})
    srv.portforward_resolver = lambda *args: echo_server
    api = client.CoreV1Api(srv.api_client())
    watching = api.list_namespaced_pod("n", watch=True, _preload_content=False)
    assert json.loads(watching.readline())["type"] == "ADDED"  # the stream is open
    pf = portforward(api.connect_get_namespaced_pod_portforward, "p", "n", ports="5432")
    pf.socket(5432).sendall(b"x")
    assert recv_exactly(pf.socket(5432), 1) == b"x"

    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 2
    assert recv_exactly(pf.socket(5432), 1) == b""  # the session was closed
    assert watching.read() == b""  # and so was the watch
    watching.release_conn()
    pf.close()
    with pytest.raises(urllib3.exceptions.HTTPError):  # nothing listens any more
        api.list_namespaced_pod("n", _request_timeout=1)
