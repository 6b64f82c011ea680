"""`pgdrill plan EXPERIMENT --target cnpg ...`: print every Kubernetes manifest a drill would
create on a CloudNativePG cluster, as multi-document YAML, each validated against CNPG's CRDs
and webhook rules, without creating anything.

The source is read from files (`--cluster-manifest`, and `--object-store-manifest` for the
barman-cloud plugin; then no cluster is contacted), or else from the cluster itself (the
kubeconfig context `--kube-context`, read-only: get the Cluster and its ObjectStore): the
manual Backup for each `actions.backup.trigger_backup`, and the
restore into `restore-test` for each `actions.restore.restore_latest_backup` (`${...}` in its
arguments from the experiment's configuration defaults). The credentials Secret is only
referenced: it is created at run time from the SOPS file and never printed."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from pgdrill.core.errors import BadInput
from pgdrill.core.yamlerrors import yaml_error_where
from pgdrill.credentials.secret import REQUIRED_KEYS


def configuration_defaults(experiment: dict) -> dict:
    """The experiment's configuration with each `{"type": "env", ...}` entry at its default
    (the plan does not depend on this shell's environment)."""
    values = {}
    for key, value in (experiment.get("configuration") or {}).items():
        if isinstance(value, dict) and value.get("type") == "env":
            value = value.get("default")
        values[key] = value
    return values


def activities(experiment: dict, module: str, func: str) -> list[dict]:
    """Method and rollback activities calling `module.func`, in order."""
    found = []
    for group in ("method", "rollbacks"):
        for activity in experiment.get(group) or []:
            provider = activity.get("provider") if isinstance(activity, dict) else None
            if (
                isinstance(provider, dict)
                and provider.get("module") == module
                and provider.get("func") == func
            ):
                found.append(activity)
    return found


def load_documents(path: str, what: str) -> list[dict]:
    """Every object of a YAML file as users keep them: multi-document (`---`), a kubectl
    `List` flattened, empty documents skipped."""
    try:
        raw = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
    except OSError as exc:
        raise BadInput(
            f"{path}: cannot read the {what} manifest: {exc.strerror}",
            fix="pass the path of a YAML manifest",
        ) from None
    except yaml.YAMLError as exc:
        where = yaml_error_where(exc)
        raise BadInput(
            f"{path}{where}: the {what} manifest is not valid YAML",
            fix="fix the YAML (or export it again with kubectl get -o yaml)",
        ) from None
    docs: list[dict] = []
    for number, doc in enumerate(raw, 1):
        if not isinstance(doc, dict):
            raise BadInput(
                f"{path}: document {number} is not a Kubernetes object (a {type(doc).__name__})",
                fix="each YAML document must be a mapping with apiVersion and kind",
            )
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            docs.extend(item for item in doc["items"] if isinstance(item, dict))
        else:
            docs.append(doc)
    return docs


def _kind_name(doc: dict) -> str:
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


def pick(docs: list[dict], kind: str, group: str, name: str, namespace: str) -> dict | None:
    """The object of `kind` (API group `group`) named `name`, in `namespace` or without one."""
    for doc in docs:
        meta = doc.get("metadata") or {}
        if (
            doc.get("kind") == kind
            and str(doc.get("apiVersion", "")).startswith(group + "/")
            and meta.get("name") == name
            and meta.get("namespace") in (None, namespace)
        ):
            return doc
    return None


def source_from_files(args: argparse.Namespace) -> tuple[dict, dict | None, list[str]]:
    """(Cluster, its plugin ObjectStore or None, notes) from --cluster-manifest (and
    --object-store-manifest): files as a GitOps repo keeps them. The Cluster is picked by
    --cluster; its ObjectStore by the plugin's barmanObjectName, from either file, else from
    the API; every other object is ignored with a note."""
    from pgdrill.targets.cnpg.kube import CNPG_GROUP, PLUGIN_GROUP

    docs = load_documents(args.cluster_manifest, "Cluster")
    stores = (
        load_documents(args.object_store_manifest, "ObjectStore")
        if args.object_store_manifest
        else []
    )
    cluster_doc = pick(docs, "Cluster", CNPG_GROUP, args.cluster, args.namespace)
    if cluster_doc is None:
        clusters = [_kind_name(d) for d in docs if d.get("kind") == "Cluster"]
        raise BadInput(
            f"{args.cluster_manifest} holds no CNPG Cluster {args.cluster}"
            + (f" in namespace {args.namespace}" if clusters else "")
            + f" (it holds: {', '.join(_kind_name(d) for d in docs) or 'nothing'})",
            fix=(
                f"pass --cluster with one of {', '.join(clusters)}"
                if clusters
                else "pass the file that holds the Cluster (kubectl get cluster NAME -o yaml)"
            ),
        )
    store_doc, store_note = None, None
    store_name = plugin_store_name(cluster_doc)
    if store_name:
        store_doc = pick(stores + docs, "ObjectStore", PLUGIN_GROUP, store_name, args.namespace)
        if store_doc is None:
            store_doc = read_live_store(args, store_name)
            store_note = f"ObjectStore {store_name} read from the cluster (not in the files)"
    used = {id(cluster_doc), id(store_doc)}
    ignored = [_kind_name(d) for d in docs + stores if id(d) not in used]
    notes = ([store_note] if store_note else []) + (
        [f"ignored in the manifest files: {', '.join(ignored)}"] if ignored else []
    )
    return cluster_doc, store_doc, notes


def read_live_store(args: argparse.Namespace, name: str) -> dict:
    """The plugin's ObjectStore `name` from the cluster (one GET)."""
    from pgdrill.core.errors import PreflightRefused
    from pgdrill.targets.cnpg.kube import Kube, api_client

    secrets = {"KUBERNETES_CONTEXT": args.kube_context} if args.kube_context else {}
    try:
        doc = get_store(Kube(api_client(secrets)), args.namespace, name)
    except PreflightRefused as exc:
        raise BadInput(
            f"Cluster {args.cluster} names ObjectStore {name}, which is not in the "
            f"manifest files, and the cluster cannot be asked: {exc.message}",
            fix="pass --object-store-manifest FILE with the ObjectStore",
        ) from None
    if doc is None:
        raise BadInput(
            f"Cluster {args.cluster} names ObjectStore {name}: it is neither in the "
            f"manifest files nor in namespace {args.namespace}",
            fix="add it to the files (or pass --object-store-manifest FILE)",
        )
    return doc


def read_live_source(args: argparse.Namespace) -> tuple[dict, dict | None]:
    """The source Cluster (and its plugin ObjectStore) read from the cluster: two GETs."""
    from pgdrill.core.errors import PreflightRefused
    from pgdrill.targets.cnpg.kube import (
        CNPG_GROUP,
        CNPG_VERSION,
        Kube,
        NotFound,
        api_client,
    )

    secrets = {"KUBERNETES_CONTEXT": args.kube_context} if args.kube_context else {}
    kube = Kube(api_client(secrets))
    try:
        cluster_doc = kube.get_custom(
            CNPG_GROUP, CNPG_VERSION, args.namespace, "clusters", args.cluster
        )
    except NotFound:
        raise BadInput(
            f"there is no CNPG Cluster {args.namespace}/{args.cluster} at {kube.host}",
            fix="check --cluster, --namespace and --kube-context (kubectl get clusters -A)",
        ) from None
    except PreflightRefused as exc:
        raise BadInput(exc.message, fix=exc.fix) from None
    store_doc = None
    store = plugin_store_name(cluster_doc)
    if store:
        store_doc = get_store(kube, args.namespace, store)
        if store_doc is None:
            raise BadInput(
                f"Cluster {args.cluster} names ObjectStore {store}, which does "
                f"not exist in {args.namespace}",
                fix="create it, or fix the plugin's barmanObjectName",
            )
    return cluster_doc, store_doc


def plugin_store_name(cluster_doc: dict) -> str | None:
    """The ObjectStore a plugin Cluster names (`barmanObjectName`), or None."""
    for plugin in (cluster_doc.get("spec") or {}).get("plugins") or []:
        store = (plugin.get("parameters") or {}).get("barmanObjectName")
        if store:
            return store
    return None


def get_store(kube, namespace: str, name: str) -> dict | None:
    """The ObjectStore `name` (one GET), or None when there is none."""
    from pgdrill.targets.cnpg.kube import PLUGIN_GROUP, PLUGIN_VERSION, NotFound

    try:
        return kube.get_custom(PLUGIN_GROUP, PLUGIN_VERSION, namespace, "objectstores", name)
    except NotFound:
        return None


def plan_documents(args: argparse.Namespace) -> tuple[list[str], list[dict]]:
    """(comment lines, validated manifests) for the experiment."""
    from chaoslib import substitute

    from pgdrill.commands.validate import parse_experiment
    from pgdrill.core.model import RecoveryTarget
    from pgdrill.restore.points import unique_restore_point_name
    from pgdrill.targets.cnpg import manifests

    experiment = parse_experiment(Path(args.experiment))
    configuration = configuration_defaults(experiment)
    backups = activities(experiment, "actions.backup", "trigger_backup")
    restores = activities(experiment, "actions.restore", "restore_latest_backup")
    if not backups and not restores:
        raise BadInput(
            f"{args.experiment}: no actions.backup.trigger_backup and no "
            f"actions.restore.restore_latest_backup activity: nothing to plan",
            fix="plan a drill experiment (experiments/*.json)",
        )
    exact_points = {
        a["provider"].get("arguments", {}).get("name")
        for a in activities(experiment, "actions.backup", "mark_restore_point")
        if (a["provider"].get("arguments") or {}).get("exact")
    }

    file_notes: list[str] = []
    if args.cluster_manifest:
        cluster_doc, store_doc, file_notes = source_from_files(args)
        for doc in (cluster_doc, store_doc):
            if doc is not None:
                manifests.validate_manifest(doc)
    else:
        cluster_doc, store_doc = read_live_source(args)
    source = manifests.read_source(cluster_doc, store_doc, namespace=args.namespace)

    notes = [
        f"pgdrill plan: {args.experiment} on CNPG Cluster {source.namespace}/{source.name}",
        *file_notes,
        f"source archive: {source.archive} ({source.style}"
        + (f", ObjectStore {source.object_store}" if source.object_store else "")
        + ")",
        f"Secret {args.restore_namespace}/<restore Cluster>-backup-s3 (keys "
        f"{', '.join(REQUIRED_KEYS)}) is created at run time from the SOPS file: "
        f"referenced here, never printed",
    ]
    # the run refuses the same way; the CA itself comes from settings.s3_ca_bundle at run time
    copied = manifests.restore_requirements(source, ca_bundle="settings.s3_ca_bundle")
    if copied:
        notes.append(
            f"restore-test gets copies of the source's {', '.join(copied)}"
            + ("; the run needs settings.s3_ca_bundle" if source.endpoint_ca else "")
        )
    docs: list[dict] = []
    for index, _ in enumerate(backups, 1):
        suffix = "" if len(backups) == 1 else f"-{index}"
        docs.append(
            manifests.backup_manifest(source, f"{source.name}-pgdrill-{args.run_id}{suffix}")
        )
    for index, activity in enumerate(restores, 1):
        arguments = substitute(activity["provider"].get("arguments") or {}, configuration, {})
        point = arguments.get("restore_point")
        if point and point not in exact_points:  # as mark_restore_point writes it
            point = unique_restore_point_name(point, args.run_id)
        recovery = RecoveryTarget.parse(
            arguments.get("target_time"), arguments.get("target_lsn"), point
        )
        name = f"{source.name}-restore" + ("" if len(restores) == 1 else f"-{index}")
        try:
            docs.extend(
                manifests.restore_manifests(
                    source,
                    recovery,
                    namespace=args.restore_namespace,
                    name=name,
                    backup_id=args.backup_id,
                )
            )
        except BadInput as exc:
            raise BadInput(
                f"{args.experiment}: activity {activity.get('name')!r}: {exc.message}",
                fix=exc.fix + " (plan mode does not read the object "
                "store, so it cannot pick the backup itself)"
                if "backupID" in exc.message
                else exc.fix,
            ) from None
        notes.append(
            f"restore {name}: {recovery.describe()}"
            + (
                f" from backup {args.backup_id}"
                if args.backup_id
                else " from the backup CNPG picks"
            )
        )
    for doc in docs:
        manifests.validate_manifest(doc)
    return notes, docs


def run(args: argparse.Namespace) -> int:
    if args.target != "cnpg":
        raise BadInput(
            f"plan mode is for the cnpg target, not {args.target!r}",
            fix="pass --target cnpg (the sandbox creates no manifests)",
        )
    if args.object_store_manifest and not args.cluster_manifest:
        raise BadInput(
            "--object-store-manifest needs --cluster-manifest",
            fix="pass both files, or neither to read them from the cluster",
        )
    notes, docs = plan_documents(args)
    print("\n".join(f"# {line}" for line in notes))
    print(yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True), end="")
    return 0


def register(sub) -> None:
    """Add `plan` to the `pgdrill` subcommands."""
    parser = sub.add_parser(
        "plan",
        help="print the manifests a drill would create on a CNPG "
        "cluster, validated against CNPG's CRDs (creates "
        "nothing; with --cluster-manifest contacts no "
        "cluster)",
    )
    parser.add_argument("experiment", metavar="EXPERIMENT", help="experiment file")
    parser.add_argument(
        "--target",
        required=True,
        choices=("cnpg", "sandbox"),
        help="the target kind (plan mode: cnpg)",
    )
    parser.add_argument("--cluster", required=True, help="the source CNPG Cluster's name")
    parser.add_argument("--namespace", required=True, help="the source Cluster's namespace")
    parser.add_argument(
        "--cluster-manifest",
        metavar="FILE",
        help="the source Cluster as YAML (kubectl get cluster -o yaml)",
    )
    parser.add_argument(
        "--object-store-manifest",
        metavar="FILE",
        help="its barman-cloud ObjectStore as YAML (plugin backups)",
    )
    parser.add_argument(
        "--kube-context",
        metavar="CONTEXT",
        help="without --cluster-manifest: read the source from this kubeconfig "
        "context (default: KUBERNETES_CONTEXT, the current context, or "
        "in-cluster)",
    )
    parser.add_argument(
        "--restore-namespace",
        default="restore-test",
        help="where the restore goes (default restore-test)",
    )
    parser.add_argument(
        "--backup-id", help="restore this backup (YYYYMMDDTHHMMSS); needed for a restore point"
    )
    parser.add_argument(
        "--run-id", default="plan", help="the run id names are derived from (default: plan)"
    )
    parser.set_defaults(func=run)
