"""`pgdrill rbac --namespace NS`: the least-privilege RBAC of the cnpg target as manifests
(ServiceAccount, a Role and RoleBinding per namespace, a ClusterRole to read namespaces), for
`kubectl apply -f -`. The rules are those tested against every API call the target makes."""

from __future__ import annotations

import argparse

import yaml

from pgdrill.targets.cnpg.rbac import CLUSTER_LOSS_RULES, FLUX_RULES, RULES, manifests


def run(args: argparse.Namespace) -> int:
    docs = manifests(
        namespace=args.namespace,
        restore_namespace=args.restore_namespace,
        operator_namespace=args.operator_namespace,
        service_account=args.service_account,
        cluster_loss=args.cluster_loss,
        flux_namespace=args.flux_namespace,
    )
    print(f"# pgdrill cnpg target: RBAC for ServiceAccount {args.namespace}/{args.service_account}")
    for rule in (
        RULES
        + (CLUSTER_LOSS_RULES if args.cluster_loss else ())
        + (FLUX_RULES if args.flux_namespace else ())
    ):
        print(
            f"#   {rule.scope:8} {rule.group or 'core'} {','.join(rule.resources)}: "
            f"{','.join(rule.verbs)} ({rule.why})"
        )
    print(yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True), end="")
    return 0


def register(sub) -> None:
    """Add `rbac` to the `pgdrill` subcommands."""
    parser = sub.add_parser("rbac", help="print the RBAC manifests the cnpg target needs")
    parser.add_argument("--namespace", required=True, help="the source Cluster's namespace")
    parser.add_argument("--restore-namespace", default="restore-test")
    parser.add_argument("--operator-namespace", default="cnpg-system")
    parser.add_argument("--service-account", default="pgdrill")
    parser.add_argument(
        "--cluster-loss",
        action="store_true",
        help="also the Role that lets experiments/cluster-loss.json delete and "
        "recreate the Cluster (keep it out of the monthly drill's RBAC)",
    )
    parser.add_argument(
        "--flux-namespace",
        metavar="NS",
        help="also a Role in NS (the namespace of the Flux Kustomization or "
        "HelmRelease that applies the Cluster) that lets the cluster-loss "
        "drill suspend it (setting flux_suspend)",
    )
    parser.set_defaults(func=run)
