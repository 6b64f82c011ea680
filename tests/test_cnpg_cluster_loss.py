"""Acceptance 4 (issue 11), cnpg: `chaos run experiments/cluster-loss.json` with the cnpg
target through the REAL kubernetes client against the fake API server, the fake operator
destroying and rebuilding the sandbox's real PostgreSQL: the Cluster and its PVCs deleted, a
new Cluster under the same name recovered from the old archive (externalClusters, old
serverName) and archiving under a new serverName; every manifest validates against the CRDs,
every API call is allowed by the RBAC pgdrill prints with the cluster-loss Role (and that Role
grants nothing unused). Production is refused with allow_production, the Cluster untouched."""

from __future__ import annotations

import json
import os

import pytest

from pgdrill.targets.cnpg import rbac
from pgdrill.targets.cnpg.manifests import validate_manifest
from tests.conftest import newest_evidence, newest_run_folder, run_chaos
from tests.fakekube.apiserver import CLUSTERS, SECRETS
from tests.fakekube.world import cnpg_world
from tests.test_cnpg_drills import drill_env
from tests.test_evidence import validate

pytestmark = pytest.mark.sandbox

EXPERIMENT = "experiments/cluster-loss.json"


@pytest.fixture(scope="module")
def world():
    with cnpg_world(style="in-tree") as w:
        yield w


def source_cluster(world) -> dict:
    return world.server.store.get(CLUSTERS, world.namespace, world.cluster)


def test_production_is_refused_even_with_allow_production_and_the_cluster_stays(world, tmp_path):
    before = source_cluster(world)["metadata"]["uid"]
    world.server.reset_calls()
    env = {**drill_env(world, tmp_path), "PGDRILL_ALLOW_PRODUCTION": "true"}
    path = tmp_path / "staging.yaml"
    path.write_text(path.read_text().replace("environment: staging", "environment: production"))
    out = run_chaos(EXPERIMENT, env, tmp_path)
    evidence = newest_evidence(tmp_path / "reports")
    assert out.returncode != 0 and evidence["verdict"] == "refused", evidence["reasons"]
    assert any("only develop and staging" in r for r in evidence["reasons"])
    assert evidence["fault"] is None
    assert not [c for c in world.server.calls if c.verb in ("delete", "create")]
    assert source_cluster(world)["metadata"]["uid"] == before


def test_cluster_loss_rebuilds_the_cluster_from_the_bucket_through_the_kubernetes_api(
    world, tmp_path
):
    old = source_cluster(world)
    old_server = old["spec"]["backup"]["barmanObjectStore"]["serverName"]
    world.server.reset_calls()
    out = run_chaos(EXPERIMENT, drill_env(world, tmp_path), tmp_path)
    evidence = newest_evidence(tmp_path / "reports")
    assert out.returncode == 0 and evidence["verdict"] == "passed", (
        evidence.get("reasons"),
        out.stdout[-4000:],
        out.stderr[-3000:],
    )
    validate(evidence)
    assert evidence["target"] == "cnpg" and evidence["environment"] == "staging"
    fault, restore, rpo = evidence["fault"], evidence["restore"], evidence["rpo"]
    assert fault["kind"] == "destroy_cluster" and fault["instance"] == world.cluster
    assert sorted(fault["instances"]) == [f"{world.cluster}-1", f"{world.cluster}-2"]
    calls = {(c.verb, c.resource, c.namespace) for c in world.server.calls}
    assert {
        ("delete", "clusters", world.namespace),
        ("create", "clusters", world.namespace),
        ("delete", "persistentvolumeclaims", world.namespace),
    } <= calls
    # a NEW Cluster under the same name, recovered from the old archive, archiving elsewhere
    new = source_cluster(world)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert new["status"]["phase"] == "Cluster in healthy state"
    assert new["spec"]["bootstrap"]["recovery"]["source"] == "origin"
    [origin] = [e for e in new["spec"]["externalClusters"] if e["name"] == "origin"]
    assert origin["barmanObjectStore"]["serverName"] == old_server
    assert new["spec"]["backup"]["barmanObjectStore"]["serverName"] == f"{old_server}-r1"
    rebuild = restore["rebuild"]
    assert (rebuild["server_name_before"], rebuild["server_name_after"]) == (
        old_server,
        f"{old_server}-r1",
    )
    assert rebuild["old_archive_untouched"] is True and rebuild["new_archive_objects"] > 0
    assert world.sandbox.layout.read().server_name == f"{old_server}-r1"
    assert restore["position_ok"] is True and evidence["backup"]["validated"] is True
    assert rpo["lost_before_archived_end"] == 0 and rpo["acknowledged_writes"] > 0
    assert evidence["fingerprints"]["match"] is True
    assert all(v["passed"] for v in evidence["validation"])
    assert evidence["target_facts"]["server_name"] == old_server  # facts: at the start
    # every manifest the target created validates against the CRDs and webhook rules
    for doc in world.operator.created_documents():
        if doc.get("apiVersion", "").startswith(("postgresql.cnpg.io", "barmancloud.cnpg.io")):
            validate_manifest({k: v for k, v in doc.items() if k != "status"})
    # RBAC: every call allowed with the cluster-loss Role, which is needed and grants no more
    scopes = {
        (
            rbac.CLUSTER
            if c.resource == "namespaces"
            else rbac.scope_of(
                c.namespace, source=world.namespace, restore="restore-test", operator="cnpg-system"
            ),
            c.group,
            c.resource + (f"/{c.subresource}" if c.subresource else ""),
            c.verb,
        )
        for c in world.server.calls
    }
    assert sorted(s for s in scopes if not rbac.allows(*s, cluster_loss=True)) == []
    extra = {
        (r.scope, r.group, res, verb)
        for r in rbac.CLUSTER_LOSS_RULES
        for res in r.resources
        for verb in r.verbs
    }
    assert extra <= scopes
    assert {s for s in scopes if not rbac.allows(*s)} == extra
    # no credential value in the run folder
    folder = newest_run_folder(tmp_path / "reports")
    written = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    for value in world.sandbox_credentials().secret_values():
        assert value.encode() not in written
    assert world.server.store.list(SECRETS, "restore-test") == []
    assert json.loads((folder / "journal.json").read_text())["status"] == "completed"
    assert os.path.isdir(folder / "logs")


def test_the_plugin_style_rebuilds_through_its_own_object_store(world, tmp_path):
    """A second world would need a second sandbox: the plugin world reuses this one's (run
    after the in-tree drill, it archives under that drill's new serverName)."""
    from tests.test_cnpg_drills import PLUGIN_NAMESPACE

    with cnpg_world(style="plugin", sandbox=world.sandbox, namespace=PLUGIN_NAMESPACE) as plugin:
        old = source_cluster(plugin)
        [own] = old["spec"]["plugins"]
        old_server = own["parameters"]["serverName"]
        plugin.server.reset_calls()
        out = run_chaos(EXPERIMENT, drill_env(plugin, tmp_path), tmp_path)
        evidence = newest_evidence(tmp_path / "reports")
        assert out.returncode == 0 and evidence["verdict"] == "passed", (
            evidence.get("reasons"),
            out.stdout[-4000:],
            out.stderr[-3000:],
        )
        new = source_cluster(plugin)
        [origin] = [e for e in new["spec"]["externalClusters"] if e["name"] == "origin"]
        assert origin["plugin"]["parameters"] == {
            "barmanObjectName": own["parameters"]["barmanObjectName"],
            "serverName": old_server,
        }
        assert (
            new["spec"]["plugins"][0]["parameters"]["serverName"]
            == evidence["restore"]["rebuild"]["server_name_after"]
            != old_server
        )
        assert "backup" not in new["spec"]
        assert evidence["rpo"]["lost_before_archived_end"] == 0
        assert evidence["restore"]["rebuild"]["old_archive_untouched"] is True
        for doc in plugin.operator.created_documents():
            if doc.get("apiVersion", "").startswith("postgresql.cnpg.io"):
                validate_manifest({k: v for k, v in doc.items() if k != "status"})
        for call in plugin.server.calls:
            scope = (
                rbac.CLUSTER
                if call.resource == "namespaces"
                else rbac.scope_of(
                    world.namespace if call.namespace == PLUGIN_NAMESPACE else call.namespace,
                    source=world.namespace,
                    restore="restore-test",
                    operator="cnpg-system",
                )
            )
            resource = call.resource + (f"/{call.subresource}" if call.subresource else "")
            assert rbac.allows(scope, call.group, resource, call.verb, cluster_loss=True), call
