"""Flux as the GitOps owner of the source Cluster, around the cluster-loss drill.

Flux labels what it applies: a Kustomization with `kustomize.toolkit.fluxcd.io/name` and
`/namespace`, a HelmRelease with `helm.toolkit.fluxcd.io/name` and `/namespace`. A Flux-owned
Cluster that the drill deletes is re-created by Flux from git during the drill (a fresh
initdb cluster under the old name, archiving into the old folder); after the drill Flux
reverts the rebuilt Cluster to git's spec, i.e. the old serverName, whose folder is not empty,
so WAL archiving fails. The preflight refuses such a drill unless `flux_suspend` is set; then
pgdrill suspends the owner (`flux suspend`'s merge patch) right before the destruction and
leaves it suspended: resuming it before git has the new serverName would break archiving.

Pure except CnpgFlux, which is mixed into CnpgTarget (pgdrill.targets.cnpg.target)."""

from __future__ import annotations

from datetime import UTC, datetime

from pgdrill.core.console import say
from pgdrill.core.errors import TargetError

# kind, API group, version, plural, the `flux` CLI's word for it
OWNERS = (
    ("Kustomization", "kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "kustomization"),
    ("HelmRelease", "helm.toolkit.fluxcd.io", "v2", "helmreleases", "helmrelease"),
)


def flux_owner(cluster_doc: dict) -> dict | None:
    """The Flux object that applies this Cluster, from its labels ({kind, group, version,
    plural, name, namespace}); None without both labels of a pair. A Kustomization's labels
    are looked at first."""
    labels = (cluster_doc.get("metadata") or {}).get("labels") or {}
    for kind, group, version, plural, _ in OWNERS:
        name, namespace = labels.get(f"{group}/name"), labels.get(f"{group}/namespace")
        if name and namespace:
            return {
                "kind": kind,
                "group": group,
                "version": version,
                "plural": plural,
                "name": str(name),
                "namespace": str(namespace),
            }
    return None


def describe(owner: dict) -> str:
    """`Kustomization flux-system/apps`."""
    return f"{owner['kind']} {owner['namespace']}/{owner['name']}"


def flux_command(verb: str, owner: dict) -> str:
    """`flux suspend kustomization apps -n flux-system` (verb: suspend, resume)."""
    word = next(o[4] for o in OWNERS if o[0] == owner["kind"])
    return f"flux {verb} {word} {owner['name']} -n {owner['namespace']}"


def refusal_message(owner: dict, cluster: str | None = None) -> str:
    what = f"Cluster {cluster}" if cluster else "the Cluster"
    return (
        f"{what} is applied by Flux {describe(owner)} (its {owner['group']} labels): "
        f"during the cluster-loss drill Flux would re-create the deleted Cluster from git "
        f"(a fresh initdb cluster under the old name, archiving into the old folder), and "
        f"after the drill revert the rebuilt Cluster to git's old serverName, whose folder "
        f"is not empty, so WAL archiving would fail"
    )


def refusal_fix(owner: dict) -> str:
    return (
        f"set `settings.flux_suspend: true` in the environment file: pgdrill then "
        f"suspends {describe(owner)} right before it destroys the Cluster and leaves it "
        f"suspended (RBAC: pgdrill rbac --flux-namespace {owner['namespace']}); or run "
        f"`{flux_command('suspend', owner)}` yourself before the drill and set "
        f"flux_suspend too (pgdrill goes by the labels, it cannot see the suspension)"
    )


def suspend_patch() -> dict:
    """The JSON merge patch that `flux suspend` sets."""
    return {"spec": {"suspend": True}}


def stays_suspended_note(
    owner: dict, old_server_name: str | None, new_server_name: str | None = None
) -> str:
    """Why pgdrill does not resume the owner, and what the user does instead."""
    new = (
        f"serverName {new_server_name}"
        if new_server_name
        else "a new serverName (restore.rebuild.server_name_after in the evidence)"
    )
    old = f"serverName {old_server_name}" if old_server_name else "the old serverName"
    return (
        f"{describe(owner)} stays suspended: the rebuilt Cluster archives under {new} "
        f"while git still has {old}; change the Cluster in git (serverName, bootstrap) "
        f"and then `{flux_command('resume', owner)}`"
    )


def suspended_record(owner: dict, note: str) -> dict:
    """The run context's `flux` entry once the owner is suspended."""
    return {
        "kind": owner["kind"],
        "name": owner["name"],
        "namespace": owner["namespace"],
        "suspended": True,
        "suspended_at": datetime.now(UTC).isoformat(),
        "resumed": False,
        "note": note,
    }


class CnpgFlux:
    """Mixed into CnpgTarget, whose `kube` and `_cluster()` it uses."""

    def flux_owner(self) -> dict | None:
        """The Flux object that applies the live source Cluster, from its labels."""
        return flux_owner(self._cluster())

    def suspend_flux(self, owner: dict) -> dict:
        """Suspend it (spec.suspend: true, as `flux suspend`); returns the patched object."""
        doc = self.kube.patch_custom(
            owner["group"],
            owner["version"],
            owner["namespace"],
            owner["plural"],
            owner["name"],
            suspend_patch(),
        )
        if not ((doc or {}).get("spec") or {}).get("suspend"):
            raise TargetError(
                f"Flux {describe(owner)} is not suspended after the patch",
                fix=f"run `{flux_command('suspend', owner)}` and retry",
            )
        say(f"suspended Flux {describe(owner)} (spec.suspend: true)")
        return doc
