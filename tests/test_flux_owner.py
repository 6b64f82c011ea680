"""Flux as the owner of the CNPG Cluster around the cluster-loss drill: the owner read from
the Cluster's labels, the preflight that refuses a cluster loss fighting it (unless
`flux_suspend`), the suspension's patch, the RBAC that allows it, and the report's line.
Pure: no cluster, the target is a stand-in with the `flux_owner()` interface."""

import json
from pathlib import Path

import pytest

from pgdrill.chaos.preflight import check_flux_owner, destroys_cluster, flux_owner_to_suspend
from pgdrill.core.errors import PreflightRefused, TargetError
from pgdrill.reports.recovery import failover_section
from pgdrill.targets.cnpg import flux, rbac

REPO = Path(__file__).resolve().parent.parent
CLUSTER_LOSS = json.loads((REPO / "experiments/cluster-loss.json").read_text())
PVC_LOSS = json.loads((REPO / "experiments/pvc-loss.json").read_text())

KUSTOMIZATION_LABELS = {
    "kustomize.toolkit.fluxcd.io/name": "databases",
    "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
}
HELMRELEASE_LABELS = {
    "helm.toolkit.fluxcd.io/name": "pg",
    "helm.toolkit.fluxcd.io/namespace": "staging",
    "app.kubernetes.io/managed-by": "Helm",
}


def cluster(labels: dict | None) -> dict:
    metadata = {"name": "pg", "namespace": "staging"}
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": metadata}


class StandIn:
    """A target as the preflight sees it: only the Flux owner of its Cluster."""

    def __init__(self, owner: dict | None) -> None:
        self.owner = owner

    def flux_owner(self) -> dict | None:
        return self.owner


OWNER = flux.flux_owner(cluster(KUSTOMIZATION_LABELS))


# -- the owner, from the labels -------------------------------------------------------
def test_a_kustomization_owns_the_cluster():
    assert OWNER == {
        "kind": "Kustomization",
        "group": "kustomize.toolkit.fluxcd.io",
        "version": "v1",
        "plural": "kustomizations",
        "name": "databases",
        "namespace": "flux-system",
    }


def test_a_helmrelease_owns_the_cluster():
    assert flux.flux_owner(cluster(HELMRELEASE_LABELS)) == {
        "kind": "HelmRelease",
        "group": "helm.toolkit.fluxcd.io",
        "version": "v2",
        "plural": "helmreleases",
        "name": "pg",
        "namespace": "staging",
    }


@pytest.mark.parametrize("labels", [None, {}, {"app": "pg"}], ids=["no-labels", "empty", "other"])
def test_no_flux_labels_no_owner(labels):
    assert flux.flux_owner(cluster(labels)) is None


@pytest.mark.parametrize(
    "labels",
    [
        {"kustomize.toolkit.fluxcd.io/name": "databases"},
        {"kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
        {"helm.toolkit.fluxcd.io/name": "pg"},
        {"helm.toolkit.fluxcd.io/namespace": "staging", "kustomize.toolkit.fluxcd.io/name": "x"},
    ],
    ids=["kustomize-name", "kustomize-namespace", "helm-name", "mixed-halves"],
)
def test_half_a_label_pair_is_no_owner(labels):
    assert flux.flux_owner(cluster(labels)) is None


def test_flux_commands_name_the_owner():
    helm = flux.flux_owner(cluster(HELMRELEASE_LABELS))
    assert (
        flux.flux_command("suspend", OWNER) == "flux suspend kustomization databases -n flux-system"
    )
    assert flux.flux_command("resume", helm) == "flux resume helmrelease pg -n staging"
    assert flux.suspend_patch() == {"spec": {"suspend": True}}


def test_the_note_says_it_stays_suspended_and_what_to_do():
    note = flux.stays_suspended_note(OWNER, "pg", "pg-r1")
    assert note == (
        "Kustomization flux-system/databases stays suspended: the rebuilt Cluster "
        "archives under serverName pg-r1 while git still has serverName pg; change "
        "the Cluster in git (serverName, bootstrap) and then `flux resume "
        "kustomization databases -n flux-system`"
    )
    assert "rebuild" in flux.stays_suspended_note(OWNER, "pg")  # before the rebuild named it


# -- the preflight ----------------------------------------------------------------------
def test_the_experiments_are_told_apart():
    assert destroys_cluster(CLUSTER_LOSS)
    assert not destroys_cluster(PVC_LOSS)


def test_cluster_loss_on_a_flux_owned_cluster_is_refused_without_the_setting():
    with pytest.raises(PreflightRefused) as refused:
        check_flux_owner(CLUSTER_LOSS, {"cluster": "pg"}, StandIn(OWNER))
    assert "Kustomization flux-system/databases" in refused.value.message
    assert "Cluster pg" in refused.value.message
    assert "serverName" in refused.value.message
    assert "flux_suspend" in refused.value.fix
    assert "flux suspend kustomization databases -n flux-system" in refused.value.fix
    assert "--flux-namespace flux-system" in refused.value.fix


@pytest.mark.parametrize("value", ["false", "no", "0", "", False, None])
def test_a_false_setting_does_not_allow_it(value):
    with pytest.raises(PreflightRefused):
        check_flux_owner(CLUSTER_LOSS, {"flux_suspend": value}, StandIn(OWNER))


@pytest.mark.parametrize("value", [True, "true", "1", "yes", "True"])
def test_the_setting_allows_it_and_names_the_owner_to_suspend(value):
    assert check_flux_owner(CLUSTER_LOSS, {"flux_suspend": value}, StandIn(OWNER)) == OWNER


def test_an_experiment_without_destroy_cluster_passes():
    assert check_flux_owner(PVC_LOSS, {}, StandIn(OWNER)) is None


def test_a_cluster_without_flux_passes():
    assert check_flux_owner(CLUSTER_LOSS, {}, StandIn(None)) is None


def test_a_target_without_flux_passes():
    """The sandbox has no flux_owner(): nothing changes there."""
    assert check_flux_owner(CLUSTER_LOSS, {}, object()) is None
    assert flux_owner_to_suspend({}, object()) is None


# -- the suspension through the target ------------------------------------------------
class Kube:
    def __init__(self, suspended: bool = True) -> None:
        self.calls = []
        self.suspended = suspended

    def patch_custom(self, group, version, namespace, plural, name, body):
        self.calls.append((group, version, namespace, plural, name, body))
        return {"spec": {"suspend": self.suspended}}


class Target(flux.CnpgFlux):
    def __init__(self, kube: Kube, doc: dict) -> None:
        self.kube, self.doc = kube, doc

    def _cluster(self) -> dict:
        return self.doc


def test_the_target_reads_and_suspends_its_owner():
    kube = Kube()
    target = Target(kube, cluster(KUSTOMIZATION_LABELS))
    owner = target.flux_owner()
    target.suspend_flux(owner)
    assert kube.calls == [
        (
            "kustomize.toolkit.fluxcd.io",
            "v1",
            "flux-system",
            "kustomizations",
            "databases",
            {"spec": {"suspend": True}},
        )
    ]


def test_a_patch_that_did_not_suspend_fails():
    with pytest.raises(TargetError):
        Target(Kube(suspended=False), cluster(KUSTOMIZATION_LABELS)).suspend_flux(OWNER)


def test_the_run_context_record():
    record = flux.suspended_record(OWNER, "note")
    assert {
        k: record[k] for k in ("kind", "name", "namespace", "suspended", "resumed", "note")
    } == {
        "kind": "Kustomization",
        "name": "databases",
        "namespace": "flux-system",
        "suspended": True,
        "resumed": False,
        "note": "note",
    }
    assert record["suspended_at"]


# -- RBAC -------------------------------------------------------------------------------
def _flux_roles(docs):
    return [d for d in docs if d["metadata"]["name"] == "pgdrill-flux-suspend"]


def test_rbac_with_a_flux_namespace_lets_the_drill_patch_both_owners():
    docs = rbac.manifests(namespace="staging", flux_namespace="flux-system", cluster_loss=True)
    role, binding = _flux_roles(docs)
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == "flux-system"
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    for group, resource in (
        ("kustomize.toolkit.fluxcd.io", "kustomizations"),
        ("helm.toolkit.fluxcd.io", "helmreleases"),
    ):
        assert (group, resource, "patch") in granted
        assert (group, resource, "get") in granted
    assert {v for _, _, v in granted} == {"get", "patch"}
    assert binding["kind"] == "RoleBinding"
    assert binding["roleRef"]["name"] == "pgdrill-flux-suspend"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "pgdrill", "namespace": "staging"}
    ]


def test_rbac_has_no_flux_role_by_default():
    for docs in (
        rbac.manifests(namespace="staging"),
        rbac.manifests(namespace="staging", cluster_loss=True),
    ):
        assert not _flux_roles(docs)
        assert not any(
            "fluxcd" in g for d in docs for rule in d.get("rules") or [] for g in rule["apiGroups"]
        )
    plain = rbac.manifests(namespace="staging", cluster_loss=True)
    with_flux = rbac.manifests(namespace="staging", cluster_loss=True, flux_namespace="fs")
    assert [d for d in with_flux if d not in _flux_roles(with_flux)] == plain


# -- the report ---------------------------------------------------------------------------
def test_the_report_says_it_stays_suspended():
    note = flux.stays_suspended_note(OWNER, "pg", "pg-r1")
    evidence = {
        "fault": {
            "kind": "destroy_cluster",
            "instance": "pg",
            "role": "cluster",
            "at": "2025-01-01T00:00:00+00:00",
        },
        "flux": flux.suspended_record(OWNER, note),
    }
    lines = failover_section(evidence).lines
    line = next(line for line in lines if isinstance(line, tuple) and "Flux" in str(line[0]))
    text = "".join(getattr(part, "text", part) for part in line)
    assert "suspended Kustomization flux-system/databases" in text
    assert "stays suspended" in text and "pg-r1" in text
    assert "flux resume kustomization databases -n flux-system" in text
    assert not any("Flux" in str(line) for line in failover_section({}).lines)


def test_the_evidence_schema_takes_the_record_or_null():
    import jsonschema

    schema = json.loads((REPO / "pgdrill/evidence/schema.json").read_text())
    prop = schema["properties"]["flux"]
    jsonschema.validate(flux.suspended_record(OWNER, "note"), prop)
    jsonschema.validate(None, prop)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "Kustomization"}, prop)
