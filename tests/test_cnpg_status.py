"""Reading CNPG state: which pod is primary, when a Cluster is healthy, what the operator
recorded about a failover, and the object store's Backup objects (pure functions).
The object-store catalog runs against real S3 in the cnpg drills."""

from __future__ import annotations

from pgdrill.targets.cnpg import catalog
from pgdrill.targets.cnpg.status import (
    HEALTHY,
    operator_failover,
    pod_ready,
    primary_pod,
    unhealthy_reasons,
)


def pod(name, role, *, ready=True, deleting=False):
    meta = {"name": name, "labels": {"cnpg.io/cluster": "app-db", "cnpg.io/instanceRole": role}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {
        "metadata": meta,
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def cluster(**status):
    base = {
        "phase": HEALTHY,
        "instances": 2,
        "readyInstances": 2,
        "currentPrimary": "app-db-1",
        "targetPrimary": "app-db-1",
        "conditions": [{"type": "Ready", "status": "True", "reason": "ClusterIsReady"}],
    }
    return {"spec": {"instances": 2}, "status": {**base, **status}}


def test_the_primary_is_the_labelled_pod_cnpg_names_current():
    pods = [pod("app-db-1", "primary"), pod("app-db-2", "replica")]
    assert primary_pod(cluster(), pods)["metadata"]["name"] == "app-db-1"


def test_no_primary_while_the_labelled_one_is_being_deleted_or_mid_failover():
    assert (
        primary_pod(
            cluster(), [pod("app-db-1", "primary", deleting=True), pod("app-db-2", "replica")]
        )
        is None
    )
    # CNPG moved currentPrimary but the labels still show the old one
    assert (
        primary_pod(
            cluster(currentPrimary="app-db-2"),
            [pod("app-db-1", "primary"), pod("app-db-2", "replica")],
        )
        is None
    )


def test_a_healthy_cluster_has_no_reasons_and_a_stuck_failover_names_both_primaries():
    assert unhealthy_reasons(cluster()) == []
    stuck = unhealthy_reasons(
        cluster(phase="Failing over", targetPrimary="app-db-2", readyInstances=1)
    )
    assert "phase 'Failing over'" in stuck
    assert "1/2 instances ready" in stuck
    assert "targetPrimary app-db-2 is not the currentPrimary app-db-1" in stuck


def test_ready_condition_false_is_a_reason():
    reasons = unhealthy_reasons(
        cluster(
            conditions=[
                {"type": "Ready", "status": "False", "reason": "ClusterIsNotReady", "message": "m"}
            ]
        )
    )
    assert reasons == ["condition Ready is False (ClusterIsNotReady: m)"]


def test_pod_ready_needs_running_and_the_ready_condition():
    assert pod_ready(pod("a", "replica"))
    assert not pod_ready(pod("a", "replica", ready=False))
    assert not pod_ready(pod("a", "replica", deleting=True))


def test_operator_failover_seconds_from_the_two_timestamps():
    fo = operator_failover(
        cluster(
            targetPrimaryTimestamp="2026-12-01T10:00:00.250000Z",
            currentPrimaryTimestamp="2026-12-01T10:00:02.000000Z",
        )
    )
    assert fo["seconds"] == 1.75
    assert operator_failover(cluster())["seconds"] is None


def test_backup_object_phase_maps_to_the_neutral_phase():
    doc = {"metadata": {"name": "b1"}, "status": {"phase": "failed", "error": "boom"}}
    assert catalog.from_backup_object(doc).phase == "failed"
    doc["status"] = {
        "phase": "completed",
        "backupId": "20261201T000000",
        "beginLSN": "0/1",
        "stoppedAt": "2026-12-01T00:00:05Z",
    }
    backup = catalog.from_backup_object(doc)
    assert backup.completed and backup.id == "20261201T000000" and backup.end_time.year == 2026


def test_the_operator_version_is_read_from_tags_and_digest_pinned_images():
    from pgdrill.targets.cnpg.target import image_version

    assert image_version("ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0") == "1.30.0"
    assert image_version("ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0@sha256:ab12") == "1.30.0"
    assert image_version("ghcr.io/cloudnative-pg/cloudnative-pg@sha256:ab12") == "@sha256:ab12"
    assert image_version("registry:5000/cloudnative-pg") is None


def test_logs_are_read_from_every_container_init_containers_included():
    from pgdrill.targets.cnpg.target import pod_containers

    pod = {
        "spec": {
            "initContainers": [
                {"name": "bootstrap-controller"},
                {"name": "plugin-barman-cloud", "restartPolicy": "Always"},
            ],
            "containers": [{"name": "postgres"}],
        }
    }
    assert pod_containers(pod) == ["bootstrap-controller", "plugin-barman-cloud", "postgres"]


def test_a_status_still_healthy_is_not_health_when_an_instance_pod_is_gone_or_not_ready():
    """The operator's status may predate the fault: the live pods decide too."""
    from pgdrill.targets.cnpg.status import pod_shortfall

    both = [pod("app-db-1", "primary"), pod("app-db-2", "replica")]
    assert unhealthy_reasons(cluster()) == [] and pod_shortfall(cluster(), both) == []
    assert pod_shortfall(cluster(), both[:1]) == ["1 live instance pods, spec.instances 2"]
    assert pod_shortfall(cluster(), [both[0], pod("app-db-2", "replica", ready=False)]) == [
        "1 instance pods not ready: app-db-2"
    ]
