"""Acceptance for the cnpg target: every experiment runs with `chaos run` and
`pgdrill_target: cnpg` through the REAL kubernetes client against the fake API server
(tests/fakekube), with a thread playing the CNPG operator on the sandbox's real PostgreSQL,
S3 and barman-cloud. Real data, real restores, real lost-write counts; every manifest the
target creates validates against the CNPG CRDs; the API calls it makes are recorded (the RBAC
in README is checked against them). A stuck failover and a failed Backup fail loudly.

What this cannot prove (the fake's limits): RBAC enforcement, admission webhooks, CRD
defaulting, grace periods, scheduling, CNPG's real reconciliation: only a run against a real
cluster (kind/k3d elsewhere) checks those, and that opt-in suite is not written yet."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from pgdrill.restore.position import lsn_to_int
from pgdrill.targets.cnpg import rbac
from pgdrill.targets.cnpg.manifests import validate_manifest
from tests.conftest import (
    PGDRILL,
    assert_failover_hole_closed,
    newest_evidence,
    newest_run_folder,
    run_chaos,
)
from tests.fakekube.apiserver import CLUSTERS, OBJECT_STORES, SECRETS
from tests.fakekube.world import cnpg_world

pytestmark = pytest.mark.sandbox

PLUGIN_NAMESPACE = "staging-plugin"  # the plugin-style source, in a world of its own
EXPERIMENTS = [
    "backup-restore",
    "primary-pod-loss",
    "pvc-loss",
    "table-corruption",
    "pitr-restore-point",
]


@pytest.fixture(scope="module")
def world():
    with cnpg_world(style="in-tree") as w:
        w.calls_seen = []  # every API call of this module's drills, for the RBAC check
        yield w


def environment_file(world, tmp_path: Path, **settings) -> Path:
    path = tmp_path / "staging.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "environment": "staging",
                "target": "cnpg",
                "cluster": world.cluster,
                "namespace": world.namespace,
                "credentials": str(world.credentials_file),
                "age_identity": str(world.age_key_file),
                "settings": {"cnpg_connection": "port-forward", **settings},
            }
        )
    )
    return path


def drill_env(world, tmp_path: Path, **settings) -> dict:
    env = {
        **os.environ,
        **world.env,
        "PGDRILL_ENVIRONMENT_FILE": str(environment_file(world, tmp_path, **settings)),
        "PGDRILL_REPORTS": str(tmp_path / "reports"),
    }
    env.pop("PGDRILL_TARGET", None)
    return env


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_each_experiment_passes_through_the_kubernetes_api(world, tmp_path, experiment):
    world.server.reset_calls()
    out = run_chaos(f"experiments/{experiment}.json", drill_env(world, tmp_path), tmp_path)
    world.calls_seen.extend(world.server.calls)
    evidence = newest_evidence(tmp_path / "reports")
    assert out.returncode == 0 and evidence["verdict"] == "passed", (
        evidence.get("reasons"),
        out.stdout[-3000:],
        out.stderr[-3000:],
    )
    assert evidence["target"] == "cnpg" and evidence["environment"] == "staging"
    facts = evidence["target_facts"]
    assert facts["backup_style"] == "in-tree" and facts["server_name"] != world.cluster
    assert facts["failover_delay_seconds"] == 0
    restore = evidence["restore"]
    assert restore["position_ok"] is True and restore["rto_seconds"] > 0
    assert set(restore["phases"]) >= {"restore", "ready", "validate"}
    assert all(v["passed"] for v in evidence["validation"])
    assert evidence["backup"]["validated"] is True
    if experiment in ("primary-pod-loss", "pvc-loss"):
        failover = evidence["failover"]
        # every acknowledged write survived on the healed primary: the verdict judges the
        # count against failover_lost_writes_objective (default 0), so a pass means none lost
        assert failover["seconds"] > 0 and failover["acknowledged_writes"] > 0
        assert failover["lost_writes_objective"] == {
            "objective_lost_writes": 0,
            "measured_lost_writes": failover["lost_writes"],
            "met": True,
        }
        assert failover["lost_writes"] == 0 and failover["holes"] == 0
        assert evidence["objectives"]["rpo"]["met"] is True
        assert failover["target"]["operator"]["seconds"] is not None
        # the load saw the outage too: last acknowledged write before, first after
        assert failover["client_write_outage"]["seconds"] > 0
    if experiment == "table-corruption":
        assert evidence["fingerprints"]["match"] is True
    if experiment == "backup-restore":
        # no backup without restore, on CNPG too: the ledger marks the restored backup verified
        listed = subprocess.run(
            [PGDRILL, "backups", "--json", "--require-verified"],
            env=drill_env(world, tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
        rows = {r["id"]: r for r in json.loads(listed.stdout)["backups"]}
        assert rows[evidence["backup"]["id"]]["verified"] is True
    # the drill went through the API: faults, Backup, recovery Cluster, cleanup
    calls = {(c.verb, c.resource, c.namespace) for c in world.server.calls}
    assert ("create", "clusters", "restore-test") in calls
    assert ("delete", "clusters", "restore-test") in calls
    if experiment == "primary-pod-loss":
        assert ("delete", "pods", world.namespace) in calls
    if experiment == "pvc-loss":
        assert ("delete", "persistentvolumeclaims", world.namespace) in calls
        assert_failover_hole_closed(evidence)
    # nothing left behind, no credential value in the run folder
    assert world.server.store.list(CLUSTERS, "restore-test") == []
    assert world.server.store.list(SECRETS, "restore-test") == []
    folder = newest_run_folder(tmp_path / "reports")
    written = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    for value in world.sandbox_credentials().secret_values():
        assert value.encode() not in written
    assert evidence["logs"], "the operator's and instances' logs are saved"


def test_physical_corruption_goes_through_exec_in_the_primary_pod(world, tmp_path):
    """corrupt_table mode physical on CNPG: bytes of one page overwritten by `dd` through
    pods/exec in the primary's postgres container; checksums catch it, PITR to the restore
    point undoes it, and the repair puts every row back."""
    world.server.reset_calls()
    env = {**drill_env(world, tmp_path), "PGDRILL_CORRUPTION_MODE": "physical"}
    out = run_chaos("experiments/table-corruption.json", env, tmp_path)
    world.calls_seen.extend(world.server.calls)
    evidence = newest_evidence(tmp_path / "reports")
    assert out.returncode == 0 and evidence["verdict"] == "passed", (
        evidence.get("reasons"),
        out.stdout[-3000:],
        out.stderr[-3000:],
    )
    fault = evidence["fault"]
    assert fault["mode"] == "physical" and fault["detected"] is True
    assert fault["detected_by"] == "data checksums"
    assert any(c.subresource == "exec" and c.name == fault["instance"] for c in world.server.calls)
    assert evidence["fingerprints"]["match"] is True
    assert evidence["repair"]["performed"] is True and evidence["repair"]["rows"] == 100000


def test_restore_points_are_looked_up_in_the_primarys_wal_by_exec(world, monkeypatch):
    """Before restoring to a restore point not marked in the run, the target reads the
    primary's pg_wal with pg_waldump by exec in its pod: found, or None for a name that
    is not there (the restore is then refused before restore-test is touched)."""
    from pgdrill.targets.cnpg.target import CnpgTarget

    monkeypatch.setenv("KUBECONFIG", "/nonexistent")  # the secrets' KUBERNETES_HOST, as chaosk8s
    target = CnpgTarget.from_configuration(
        {
            "cluster": world.cluster,
            "namespace": world.namespace,
            "s3_credentials_file": str(world.credentials_file),
            "age_identity_file": str(world.age_key_file),
            "cnpg_connection": "port-forward",
        },
        {"kubernetes": {"KUBERNETES_HOST": world.server.url}},
    )
    try:
        target.check_ready()
        backup = target.backup(timeout=300)
        with target.connect(target.primary(), "postgres") as conn:
            end = str(conn.execute("SELECT pg_create_restore_point('cnpg-walscan')").fetchone()[0])
            conn.execute("SELECT pg_switch_wal()")  # flushed, as mark_restore_point does
        world.server.reset_calls()
        assert backup.begin_lsn and backup.timeline, backup  # from the object store's catalog
        found = target.find_restore_point("cnpg-walscan", backup.begin_lsn)
        assert 0 < lsn_to_int(end) - lsn_to_int(found) <= 128
        assert target.find_restore_point("no-such-point", backup.begin_lsn) is None
        assert any(c.subresource == "exec" for c in world.server.calls)
    finally:
        world.calls_seen.extend(world.server.calls)
        target.close()


def test_backups_healthy_reads_the_schedule_and_fails_when_it_is_suspended(
    world, tmp_path, monkeypatch
):
    """Step 1 of the safe workflow on CNPG, as a probe: healthy with the seeded daily
    ScheduledBackup, recent backups and archiving on; a suspended schedule fails it, named."""
    from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext
    from probes.backup import backups_healthy
    from tests.fakekube.apiserver import SCHEDULED_BACKUPS

    monkeypatch.setenv("KUBERNETES_HOST", world.server.url)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")
    cfg = {
        "pgdrill_target": "cnpg",
        "cluster": world.cluster,
        "namespace": world.namespace,
        "s3_credentials_file": str(world.credentials_file),
        "age_identity_file": str(world.age_key_file),
        RUN_DIR_KEY: str(tmp_path),
    }
    world.server.reset_calls()
    assert backups_healthy(configuration=cfg) is True, RunContext(tmp_path).read()
    world.calls_seen.extend(world.server.calls)
    [schedule] = world.server.store.list(SCHEDULED_BACKUPS, world.namespace)
    name = schedule["metadata"]["name"]
    world.server.store.patch(SCHEDULED_BACKUPS, world.namespace, name, {"spec": {"suspend": True}})
    try:
        assert backups_healthy(configuration=cfg) is False
        health = RunContext(tmp_path).read()["backup_health"]
        assert any("suspended" in problem for problem in health["problems"])
    finally:
        world.server.store.patch(
            SCHEDULED_BACKUPS, world.namespace, name, {"spec": {"suspend": False}}
        )


def test_a_backup_that_ends_failed_fails_the_drill_naming_its_error(world, tmp_path):
    world.operator.fail_backups = "barman-cloud-backup: connection refused by the object store"
    world.server.reset_calls()
    try:
        out = run_chaos("experiments/backup-restore.json", drill_env(world, tmp_path), tmp_path)
    finally:
        world.operator.fail_backups = None
        world.calls_seen.extend(world.server.calls)
    evidence = newest_evidence(tmp_path / "reports")
    assert out.returncode != 0 and evidence["verdict"] == "failed"
    text = json.dumps(evidence) + out.stdout + out.stderr
    assert "ended failed: barman-cloud-backup: connection refused by the object store" in text


def test_a_stuck_failover_fails_the_drill_with_phase_and_conditions(world, tmp_path):
    world.operator.stuck_failover = True
    world.server.reset_calls()
    try:
        out = run_chaos(
            "experiments/primary-pod-loss.json",
            drill_env(world, tmp_path, heal_timeout_seconds=15),
            tmp_path,
        )
    finally:
        world.operator.stuck_failover = False
        world.operator.unstick()
        world.calls_seen.extend(world.server.calls)
    evidence = newest_evidence(tmp_path / "reports")
    assert out.returncode != 0 and evidence["verdict"] == "failed"
    text = json.dumps(evidence) + out.stdout + out.stderr
    assert "did not heal within 15s" in text and "Failing over" in text
    assert "is not the currentPrimary" in text and "conditions:" in text


def test_the_plugin_style_restores_through_an_objectstore_copy(tmp_path, world):
    """A second world would need a second sandbox: the plugin world reuses this one's."""
    with cnpg_world(style="plugin", sandbox=world.sandbox, namespace=PLUGIN_NAMESPACE) as plugin:
        plugin.server.reset_calls()
        out = run_chaos("experiments/backup-restore.json", drill_env(plugin, tmp_path), tmp_path)
        evidence = newest_evidence(tmp_path / "reports")
        assert out.returncode == 0 and evidence["verdict"] == "passed", (
            evidence.get("reasons"),
            out.stdout[-3000:],
        )
        assert evidence["target_facts"]["backup_style"] == "plugin"
        created = [c for c in plugin.server.calls if c.verb == "create"]
        assert any(c.resource == "objectstores" and c.namespace == "restore-test" for c in created)
        assert plugin.server.store.list(OBJECT_STORES, "restore-test") == []
        world.calls_seen.extend(plugin.server.calls)


def test_every_manifest_the_target_creates_validates_against_the_crds(world, tmp_path):
    """Run alone, it drills once first: the check must see the documents a drill creates."""
    if not world.operator.created_documents():
        out = run_chaos("experiments/backup-restore.json", drill_env(world, tmp_path), tmp_path)
        assert out.returncode == 0, out.stdout[-3000:]
    cnpg = [
        doc
        for doc in world.operator.created_documents()
        if doc.get("apiVersion", "").startswith(("postgresql.cnpg.io", "barmancloud.cnpg.io"))
    ]
    kinds = {doc.get("kind") for doc in cnpg}
    assert {"Backup", "Cluster"} <= kinds, f"a drill creates a Backup and a Cluster: {kinds}"
    for doc in cnpg:
        validate_manifest({k: v for k, v in doc.items() if k != "status"})


def test_every_api_call_of_the_drills_is_allowed_by_the_rbac_pgdrill_prints(world, tmp_path):
    """Every call the drills of this module made (verb, resource, namespace) is covered by
    pgdrill.targets.cnpg.rbac.RULES, which `pgdrill rbac` prints, and every rule is needed by
    some call: the Role grants neither less nor more. It runs last, after every drill here;
    run alone, it drills once (and then only checks that the calls are allowed)."""
    alone = not world.calls_seen
    if alone:
        world.server.reset_calls()
        run_chaos("experiments/pvc-loss.json", drill_env(world, tmp_path), tmp_path)
        world.calls_seen.extend(world.server.calls)

    def scope(call) -> str:
        if call.resource == "namespaces":  # a Namespace's own name is its call's namespace
            return rbac.CLUSTER
        namespace = world.namespace if call.namespace == PLUGIN_NAMESPACE else call.namespace
        return rbac.scope_of(
            namespace, source=world.namespace, restore="restore-test", operator="cnpg-system"
        )

    seen = {
        (scope(c), c.group, c.resource + (f"/{c.subresource}" if c.subresource else ""), c.verb)
        for c in world.calls_seen
    }
    assert {
        ("source", "", "pods", "delete"),
        ("restore", "postgresql.cnpg.io", "clusters", "create"),
    } <= seen
    assert sorted(call for call in seen if not rbac.allows(*call)) == []
    # and nothing more: every rule is used by some drill (the websocket subresources need
    # get as well as create for the Python client, so get is implied there)
    implied = {(sc, g, r, "get") for sc, g, r, v in seen if r.endswith(("/exec", "/portforward"))}
    granted = {
        (rule.scope, rule.group, resource, verb)
        for rule in rbac.RULES
        for resource in rule.resources
        for verb in rule.verbs
    }
    if not alone:
        assert sorted(granted - seen - implied) == []


def test_health_after_a_fault_is_seen_live_not_read_from_a_status_written_before_it(
    world, tmp_path, monkeypatch
):
    """A fault that took an instance down counts as healed only once the cluster was seen
    lost since: a Cluster whose status and pods stayed healthy throughout (the fault never
    reached it, or the status predates it) fails loudly instead of passing at once."""
    import time

    from pgdrill.core.errors import TargetError
    from pgdrill.credentials.environments import environment_configuration
    from pgdrill.targets import get_target

    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    target = get_target(environment_configuration(str(environment_file(world, tmp_path))))
    assert target.wait_ready(timeout=120).primary  # healthy, and no fault claimed
    with pytest.raises(TargetError) as refused:
        target.wait_ready(timeout=4, since=time.monotonic(), disturbed=True)
    assert "never left 'healthy'" in refused.value.message
    target.close()
