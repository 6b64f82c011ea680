"""The RBAC a drill's service account needs on a CNPG cluster: least privilege, one Role per
namespace the target touches. The rules are checked in tests against every API call the
target makes in the cnpg drills (the fake API server records verb, resource and namespace), so
a new call without a rule fails the suite rather than a drill in staging.

`pgdrill rbac` prints them as manifests (ServiceAccount, Roles, RoleBindings, and a ClusterRole
for reading namespaces)."""

from __future__ import annotations

from dataclasses import dataclass

SOURCE, RESTORE, OPERATOR, CLUSTER = "source", "restore", "operator", "cluster"
FLUX = "flux"


@dataclass(frozen=True)
class Rule:
    scope: str  # which namespace: the source's, restore-test, the operator's, cluster
    # (or the Flux owner's, FLUX_RULES)
    group: str  # API group, "" for core
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str


RULES = (
    Rule(
        SOURCE,
        "postgresql.cnpg.io",
        ("clusters",),
        ("get",),
        "instances, roles, health, the backup configuration",
    ),
    Rule(
        SOURCE,
        "postgresql.cnpg.io",
        ("backups",),
        ("create", "get", "list"),
        "the drill's Backup, and Backup objects for backups_healthy",
    ),
    Rule(SOURCE, "postgresql.cnpg.io", ("scheduledbackups",), ("list",), "backups_healthy"),
    Rule(
        SOURCE,
        "barmancloud.cnpg.io",
        ("objectstores",),
        ("get",),
        "the plugin's object store configuration",
    ),
    Rule(
        SOURCE,
        "",
        ("pods",),
        ("list", "delete"),
        "instances and roles; delete_primary_pod and drop_pvc",
    ),
    Rule(SOURCE, "", ("pods/exec",), ("create", "get"), "physical corruption (dd)"),
    Rule(SOURCE, "", ("pods/portforward",), ("create", "get"), "port-forward connections"),
    Rule(SOURCE, "", ("pods/log",), ("get",), "instance logs into the run folder"),
    Rule(SOURCE, "", ("persistentvolumeclaims",), ("list", "delete"), "drop_pvc"),
    Rule(SOURCE, "", ("secrets",), ("get",), "<cluster>-superuser and <cluster>-app"),
    Rule(
        RESTORE,
        "postgresql.cnpg.io",
        ("clusters",),
        ("create", "get", "delete"),
        "the recovery Cluster",
    ),
    Rule(
        RESTORE,
        "barmancloud.cnpg.io",
        ("objectstores",),
        ("create", "delete"),
        "the plugin's ObjectStore copy",
    ),
    Rule(
        RESTORE,
        "",
        ("secrets",),
        ("create", "get", "delete"),
        "<restore>-backup-s3 from the SOPS file; <restore>-superuser",
    ),
    Rule(RESTORE, "", ("pods",), ("list",), "the restored instance"),
    Rule(RESTORE, "", ("persistentvolumeclaims",), ("list", "delete"), "cleanup"),
    Rule(RESTORE, "", ("pods/portforward",), ("create", "get"), "port-forward connections"),
    Rule(RESTORE, "", ("pods/log",), ("get",), "recovery logs into the run folder"),
    Rule(OPERATOR, "", ("pods",), ("list",), "the operator's version and pods"),
    Rule(OPERATOR, "", ("pods/log",), ("get",), "the operator's log into the run folder"),
    Rule(CLUSTER, "", ("namespaces",), ("get",), "restore-test exists"),
)


# Destroying the whole Cluster and rebuilding it (the cluster-loss drill): a Role of its own,
# granted only where that drill runs (develop, staging), never to the monthly restore drill.
CLUSTER_LOSS_RULES = (
    Rule(
        SOURCE,
        "postgresql.cnpg.io",
        ("clusters",),
        ("create", "delete"),
        "cluster-loss: the Cluster deleted, then rebuilt from the bucket under its name",
    ),
)


# Suspending the Flux Kustomization or HelmRelease that applies the Cluster before the
# cluster-loss drill destroys it (setting flux_suspend; pgdrill.targets.cnpg.flux): a Role in
# the Flux object's namespace, granted only when asked (`pgdrill rbac --flux-namespace NS`).
FLUX_RULES = (
    Rule(
        FLUX,
        "kustomize.toolkit.fluxcd.io",
        ("kustomizations",),
        ("get", "patch"),
        "cluster-loss with flux_suspend: spec.suspend: true on the Cluster's Kustomization",
    ),
    Rule(
        FLUX,
        "helm.toolkit.fluxcd.io",
        ("helmreleases",),
        ("get", "patch"),
        "cluster-loss with flux_suspend: spec.suspend: true on the Cluster's HelmRelease",
    ),
)


def scope_of(namespace: str | None, *, source: str, restore: str, operator: str) -> str:
    if namespace == source:
        return SOURCE
    if namespace == restore:
        return RESTORE
    if namespace == operator:
        return OPERATOR
    return CLUSTER


def allows(scope: str, group: str, resource: str, verb: str, *, cluster_loss: bool = False) -> bool:
    rules = RULES + CLUSTER_LOSS_RULES if cluster_loss else RULES
    return any(
        r.scope == scope and r.group == group and resource in r.resources and verb in r.verbs
        for r in rules
    )


def _rules(scope: str, rules=RULES) -> list[dict]:
    return [
        {"apiGroups": [r.group], "resources": list(r.resources), "verbs": list(r.verbs)}
        for r in rules
        if r.scope == scope
    ]


def manifests(
    *,
    namespace: str,
    restore_namespace: str = "restore-test",
    operator_namespace: str = "cnpg-system",
    service_account: str = "pgdrill",
    account_namespace: str | None = None,
    cluster_loss: bool = False,
    flux_namespace: str | None = None,
) -> list[dict]:
    """ServiceAccount, a Role + RoleBinding in each namespace, a ClusterRole + binding for
    reading namespaces; with `cluster_loss`, also the Role + RoleBinding that lets the
    cluster-loss drill delete and recreate the Cluster in the source namespace; with
    `flux_namespace`, also the Role + RoleBinding there that lets it suspend the Cluster's
    Flux Kustomization or HelmRelease."""
    account_ns = account_namespace or namespace
    subject = [{"kind": "ServiceAccount", "name": service_account, "namespace": account_ns}]
    docs: list[dict] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": service_account, "namespace": account_ns},
        }
    ]
    for scope, ns in (
        (SOURCE, namespace),
        (RESTORE, restore_namespace),
        (OPERATOR, operator_namespace),
    ):
        name = f"pgdrill-{scope}"
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": ns},
                "rules": _rules(scope),
            }
        )
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subject,
            }
        )
    extra = (
        [("pgdrill-cluster-loss", namespace, _rules(SOURCE, CLUSTER_LOSS_RULES))]
        if cluster_loss
        else []
    )
    if flux_namespace:
        extra.append(("pgdrill-flux-suspend", flux_namespace, _rules(FLUX, FLUX_RULES)))
    for name, ns, rules in extra:
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": ns},
                "rules": rules,
            }
        )
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subject,
            }
        )
    docs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "pgdrill-read-namespaces"},
            "rules": _rules(CLUSTER),
        }
    )
    docs.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"pgdrill-read-namespaces-{account_ns}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "pgdrill-read-namespaces",
            },
            "subjects": subject,
        }
    )
    return docs
