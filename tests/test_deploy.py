"""deploy/ runs the monthly staging drill unattended in a cluster: a kustomize base (RBAC,
ConfigMap with the environment file, CronJob), an example overlay, a Flux Kustomization, and the
runner image's Dockerfile. These tests check what a user relies on when applying them: every
object is a valid Kubernetes object (no misspelt field silently dropped), the RBAC is exactly
the cnpg target's (pgdrill.targets.cnpg.rbac.RULES), and the pod finds its command, experiment,
environment file, SOPS file and age key where the CronJob says they are.

Rendering: a small kustomize composer below (resources, configMapGenerator, JSON6902 patches,
images: what deploy/ uses; anything else raises) and, when `kubectl` is on PATH, `kubectl
kustomize` too; every rendered check runs on both, and they must agree. Fast: no sandbox,
no network, no cluster."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from pgdrill.core.errors import BadInput
from pgdrill.targets.cnpg import rbac
from pgdrill.targets.cnpg.manifests import validate_manifest

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
OVERLAY = DEPLOY / "overlays" / "example"
FLUX = DEPLOY / "flux" / "kustomization.yaml"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
FLUX_API = "kustomize.toolkit.fluxcd.io/v1"
RESTORE_NS, OPERATOR_NS = "restore-test", "cnpg-system"
CRONJOB = "pgdrill-monthly-staging-drill"
KUBECTL = shutil.which("kubectl")


# --- a small kustomize composer ----------------------------------------------------------------

COMPOSER_KEYS = {"apiVersion", "kind", "resources", "configMapGenerator", "patches", "images"}


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _kustomization(directory: Path) -> dict:
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert k.get("apiVersion") == KUSTOMIZE_API and k.get("kind") == "Kustomization", directory
    unsupported = set(k) - COMPOSER_KEYS
    if unsupported:  # never ignore what kustomize would do
        raise NotImplementedError(
            f"{directory}: the test composer does not implement {sorted(unsupported)}"
        )
    return k


def _key(doc: dict) -> tuple:
    meta = doc.get("metadata") or {}
    return doc.get("apiVersion"), doc.get("kind"), meta.get("namespace"), meta.get("name")


def compose(directory: Path) -> list[dict]:
    """kustomize build, for the features deploy/ uses: resources (files, directories),
    configMapGenerator (files, behavior create|merge|replace, namespace, no hash suffix), patches
    (inline JSON6902 on targets by kind/name/namespace), images. Order as kustomize's: resources,
    generators, patches, images."""
    k = _kustomization(directory)
    objects: list[dict] = []
    for entry in k.get("resources") or []:
        path = directory / entry
        objects += compose(path) if path.is_dir() else _documents(path)
    for generator in k.get("configMapGenerator") or []:
        _generate_config_map(objects, generator, directory)
    for patch in k.get("patches") or []:
        _apply_patch(objects, patch)
    for image in k.get("images") or []:
        _apply_image(objects, image)
    keys = [_key(o) for o in objects]
    assert len(keys) == len(set(keys)), f"{directory}: duplicate objects {keys}"
    return objects


def _generator_files(generator: dict, directory: Path) -> dict[str, str]:
    data = {}
    for entry in generator.get("files") or []:
        key, _, rel = entry.rpartition("=") if "=" in entry else (Path(entry).name, "", entry)
        data[key] = (directory / rel).read_text()
    return data


def _generate_config_map(objects: list[dict], generator: dict, directory: Path) -> None:
    unsupported = set(generator) - {"name", "namespace", "behavior", "files", "options"}
    if unsupported or (generator.get("options") or {}) != {"disableNameSuffixHash": True}:
        raise NotImplementedError(
            f"configMapGenerator {generator.get('name')}: only files, "
            "namespace, behavior and disableNameSuffixHash: true"
        )
    name, namespace = generator["name"], generator.get("namespace")
    data = _generator_files(generator, directory)
    behavior = generator.get("behavior", "create")
    found = [
        o
        for o in objects
        if o.get("kind") == "ConfigMap"
        and o["metadata"]["name"] == name
        and o["metadata"].get("namespace") == namespace
    ]
    if behavior == "create":
        assert not found, f"ConfigMap {namespace}/{name} already exists"
        metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
        objects.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        )
    elif behavior in ("merge", "replace"):
        assert len(found) == 1, f"no ConfigMap {namespace}/{name} to {behavior}"
        found[0]["data"] = {**found[0].get("data", {}), **data} if behavior == "merge" else data
    else:
        raise NotImplementedError(f"configMapGenerator behavior {behavior}")


def _selected(doc: dict, target: dict) -> bool:
    unsupported = set(target) - {"kind", "name", "namespace"}
    if unsupported:
        raise NotImplementedError(f"patch target fields {sorted(unsupported)}")
    meta = doc.get("metadata") or {}
    values = {"kind": doc.get("kind"), "name": meta.get("name"), "namespace": meta.get("namespace")}
    # kustomize matches these as anchored regular expressions
    return all(values[f] is not None and re.fullmatch(p, values[f]) for f, p in target.items())


def _apply_patch(objects: list[dict], patch: dict) -> None:
    if set(patch) != {"target", "patch"}:
        raise NotImplementedError("only inline JSON6902 patches with a target")
    chosen = [o for o in objects if _selected(o, patch["target"])]
    # stricter than kustomize, which ignores a patch matching nothing: here that is a mistake
    assert chosen, f"patch target {patch['target']} matches nothing"
    for doc in chosen:
        for op in yaml.safe_load(patch["patch"]):
            _json_patch(doc, op)


def _json_patch(doc: dict, op: dict) -> None:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    index = int(last) if isinstance(node, list) and last != "-" else last
    if op["op"] == "replace":
        assert (index < len(node)) if isinstance(node, list) else (last in node), op
        node[index] = op["value"]
    elif op["op"] == "add":
        if isinstance(node, list):
            node.append(op["value"]) if last == "-" else node.insert(index, op["value"])
        else:
            node[last] = op["value"]
    elif op["op"] == "remove":
        del node[index]
    else:
        raise NotImplementedError(f"JSON patch op {op['op']}")


def _split_image(image: str) -> tuple[str, str]:
    """name and its suffix (":tag", "@digest" or "")."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    return (image[:colon], image[colon:]) if colon > slash else (image, "")


def _containers(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _apply_image(objects: list[dict], image: dict) -> None:
    if set(image) - {"name", "newName", "newTag", "digest"}:
        raise NotImplementedError(f"images entry {image}")
    for doc in objects:
        for container in _containers(doc):
            name, suffix = _split_image(container["image"])
            if name != image["name"]:
                continue
            if image.get("digest"):
                suffix = "@" + image["digest"]
            elif image.get("newTag"):
                suffix = ":" + str(image["newTag"])
            container["image"] = image.get("newName", name) + suffix


def kubectl_kustomize(directory: Path) -> list[dict]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"kubectl kustomize {directory}: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


@cache
def _rendered(renderer: str, directory: Path) -> tuple:
    docs = kubectl_kustomize(directory) if renderer == "kubectl" else compose(directory)
    return tuple(docs)


RENDERERS = [
    "composer",
    pytest.param(
        "kubectl",
        marks=pytest.mark.skipif(
            not KUBECTL, reason="kubectl not on PATH: the Python composer renders alone"
        ),
    ),
]
TREES = {"base": BASE, "overlay": OVERLAY}


@pytest.fixture(params=RENDERERS)
def render(request):
    """render(directory) -> a fresh copy of the rendered objects."""
    return lambda directory: copy.deepcopy(list(_rendered(request.param, directory)))


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [
        d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_of(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or []}


def mounted_file(pod: dict, container: dict, path: str) -> tuple[dict, str]:
    """The volume and the key (ConfigMap/Secret) that provide the file at `path` in the
    container: the deepest volumeMount holding it, through the volume's `items`."""
    mounts = [
        m
        for m in container.get("volumeMounts") or []
        if path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert mounts, f"no volume is mounted where {path} is"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    relative = path[len(mount["mountPath"].rstrip("/")) + 1 :]
    source = volume.get("configMap") or volume.get("secret") or {}
    items = source.get("items")
    if items is None:
        return volume, relative
    keys = [i["key"] for i in items if i["path"] == relative]
    assert keys, f"volume {volume['name']} mounted at {mount['mountPath']} has no {relative}"
    return volume, keys[0]


# --- every YAML document under deploy/ ----------------------------------------------------------


def _kustomize_dirs() -> list[Path]:
    dirs = []
    for path in sorted(DEPLOY.rglob("kustomization.yaml")):
        if yaml.safe_load(path.read_text()).get("apiVersion") == KUSTOMIZE_API:
            dirs.append(path.parent)
    return dirs


def _roles_of_files() -> dict[Path, str]:
    """Every YAML file under deploy/ and what it is."""
    roles: dict[Path, str] = {FLUX.resolve(): "flux"}
    for directory in _kustomize_dirs():
        roles[(directory / "kustomization.yaml").resolve()] = "kustomization"
        k = _kustomization(directory)
        for entry in k.get("resources") or []:
            if not (directory / entry).is_dir():
                roles[(directory / entry).resolve()] = "resources"
        for generator in k.get("configMapGenerator") or []:
            for entry in generator.get("files") or []:
                roles[(directory / entry.rpartition("=")[2]).resolve()] = "generator data"
    return roles


def test_every_yaml_file_under_deploy_is_applied_or_used():
    """A file nothing references is never applied: a forgotten resource, not a deployment."""
    roles = _roles_of_files()
    files = sorted(p.resolve() for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
    assert files, "deploy/ holds no YAML"
    unused = [str(p.relative_to(REPO)) for p in files if p not in roles]
    assert not unused, f"not referenced by any kustomization (never applied): {unused}"
    for path in files:  # and each one parses
        assert _documents(path) or roles[path] == "generator data", f"{path} is empty"


# Kubernetes objects: deserialised into the kubernetes client's models (required fields are
# enforced by their setters), then serialised back: the client drops unknown keys silently, so
# anything that does not come back is a misspelt or misplaced field.
MODELS = {
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("batch/v1", "CronJob"): "V1CronJob",
}
CNPG_GROUPS = ("postgresql.cnpg.io/", "barmancloud.cnpg.io/")


def _lost_fields(original, back, path="$") -> list[str]:
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [path]
        lost = []
        for key, value in original.items():
            lost += (
                [f"{path}.{key}"]
                if key not in back
                else _lost_fields(value, back[key], f"{path}.{key}")
            )
        return lost
    if isinstance(original, list):
        if not isinstance(back, list) or len(back) != len(original):
            return [path]
        return [
            p
            for i, (a, b) in enumerate(zip(original, back, strict=True))
            for p in _lost_fields(a, b, f"{path}[{i}]")
        ]
    return [] if original == back else [f"{path} (was {original!r}, became {back!r})"]


def validate_object(doc: dict) -> None:
    """Raise AssertionError naming what Kubernetes would reject or silently drop."""
    from kubernetes.client import ApiClient

    api, kind = doc.get("apiVersion", ""), doc.get("kind")
    if api.startswith(CNPG_GROUPS):
        validate_manifest(doc)  # against CNPG's (or the plugin's) CRD
        return
    model = MODELS.get((api, kind))
    assert model, f"{api} {kind}: not a kind deploy/ is expected to hold"

    class Response:
        data = json.dumps(doc)

    client = ApiClient()
    try:
        obj = client.deserialize(Response(), model)
    except ValueError as exc:  # a required field is missing
        raise AssertionError(f"{kind} {doc.get('metadata', {}).get('name')}: {exc}") from None
    lost = _lost_fields(doc, client.sanitize_for_serialization(obj))
    assert not lost, f"{kind} {doc['metadata'].get('name')}: unknown or misplaced fields {lost}"


def _raw_objects() -> list:
    return [
        pytest.param(doc, id=f"{path.relative_to(REPO)}#{i}")
        for path, role in sorted(_roles_of_files().items())
        if role == "resources"
        for i, doc in enumerate(_documents(path))
    ]


@pytest.mark.parametrize("doc", _raw_objects())
def test_every_resource_file_holds_valid_kubernetes_objects(doc):
    validate_object(doc)


@pytest.mark.parametrize("tree", TREES)
def test_every_rendered_object_is_a_valid_kubernetes_object(render, tree):
    """After the generators and the overlay's patches too."""
    docs = render(TREES[tree])
    for doc in docs:
        validate_object(doc)
    assert {d["kind"] for d in docs} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "CronJob",
    }


def test_the_object_check_catches_misspelt_and_missing_fields():
    """The kubernetes client accepts unknown keys silently: the check must not."""
    cronjob = one(compose(BASE), "CronJob")
    validate_object(cronjob)
    misspelt = copy.deepcopy(cronjob)
    misspelt["spec"]["concurencyPolicy"] = misspelt["spec"].pop("concurrencyPolicy")
    with pytest.raises(AssertionError, match=r"\$\.spec\.concurencyPolicy"):
        validate_object(misspelt)
    misplaced = copy.deepcopy(cronjob)
    pod_of(misplaced)["containers"][0]["securityContext"]["fsGroup"] = 10001  # a pod field
    with pytest.raises(AssertionError, match="fsGroup"):
        validate_object(misplaced)
    nameless = copy.deepcopy(cronjob)
    del pod_of(nameless)["containers"][0]["name"]
    with pytest.raises(AssertionError, match="name"):
        validate_object(nameless)
    with pytest.raises(BadInput):  # CNPG objects go to the CRD schema
        validate_object(
            {
                "apiVersion": "postgresql.cnpg.io/v1",
                "kind": "Cluster",
                "metadata": {"name": "x"},
                "spec": {"instances": "three"},
            }
        )


@pytest.mark.skipif(not KUBECTL, reason="kubectl not on PATH")
@pytest.mark.parametrize("tree", TREES)
def test_the_composer_renders_what_kubectl_kustomize_renders(tree):
    """Keeps the composer honest, so the checks mean the same where kubectl is missing."""
    ours = {_key(d): d for d in compose(TREES[tree])}
    theirs = {_key(d): d for d in kubectl_kustomize(TREES[tree])}
    assert sorted(ours, key=str) == sorted(theirs, key=str)
    for key, doc in ours.items():
        assert doc == theirs[key], key


# --- RBAC: exactly pgdrill.targets.cnpg.rbac.RULES ----------------------------------------------


def _grants(docs: list[dict], source_ns: str) -> set[tuple[str, str, str, str]]:
    granted = set()
    for doc in docs:
        if doc["kind"] == "ClusterRole":
            scope = rbac.CLUSTER
        elif doc["kind"] == "Role":
            ns = doc["metadata"]["namespace"]
            assert ns in (source_ns, RESTORE_NS, OPERATOR_NS), (
                f"Role {doc['metadata']['name']} in {ns}, a namespace the drill does not touch"
            )
            scope = rbac.scope_of(ns, source=source_ns, restore=RESTORE_NS, operator=OPERATOR_NS)
        else:
            continue
        for rule in doc.get("rules") or []:
            assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
            granted |= {
                (scope, group, resource, verb)
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            }
    return granted


EXPECTED_GRANTS = {
    (r.scope, r.group, resource, verb)
    for r in rbac.RULES
    for resource in r.resources
    for verb in r.verbs
}


@pytest.mark.parametrize("tree", TREES)
def test_roles_grant_exactly_the_rules_the_cnpg_target_needs(render, tree):
    docs = render(TREES[tree])
    granted = _grants(docs, one(docs, "CronJob")["metadata"]["namespace"])
    missing = sorted(EXPECTED_GRANTS - granted)
    extra = sorted(granted - EXPECTED_GRANTS)
    assert not missing, f"in RULES but not granted (the drill would fail on them): {missing}"
    assert not extra, f"granted but not in RULES (more than least privilege): {extra}"


def test_the_rule_comparison_fails_both_ways():
    docs = compose(BASE)
    role = one(docs, "Role", "pgdrill-source")
    role["rules"][0]["verbs"].append("delete")  # clusters: delete in the source namespace
    assert ("source", "postgresql.cnpg.io", "clusters", "delete") in _grants(
        docs, "staging"
    ) - EXPECTED_GRANTS
    role["rules"] = role["rules"][1:]
    assert ("source", "postgresql.cnpg.io", "clusters", "get") in EXPECTED_GRANTS - _grants(
        docs, "staging"
    )


def test_base_rbac_is_what_pgdrill_rbac_prints(capsys):
    """deploy/base/rbac.yaml is `pgdrill rbac --namespace staging`, regenerated, never edited."""
    from pgdrill.cli import build_parser

    args = build_parser().parse_args(["rbac", "--namespace", "staging"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert (BASE / "rbac.yaml").read_text() == printed, (
        "regenerate: .venv/bin/pgdrill rbac --namespace staging > deploy/base/rbac.yaml"
    )
    assert _documents(BASE / "rbac.yaml") == rbac.manifests(namespace="staging")


@pytest.mark.parametrize("tree", TREES)
def test_rendered_rbac_is_pgdrill_rbac_for_the_drills_namespace(render, tree):
    """The overlay moves the drill to its namespace: its RBAC must then be what `pgdrill rbac
    --namespace <that>` prints, bindings and ServiceAccount included."""
    docs = render(TREES[tree])
    cronjob = one(docs, "CronJob")
    namespace = cronjob["metadata"]["namespace"]
    kinds = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    ours = {_key(d): d for d in docs if d["kind"] in kinds}
    expected = {
        _key(d): d
        for d in rbac.manifests(
            namespace=namespace, service_account=pod_of(cronjob)["serviceAccountName"]
        )
    }
    assert ours == expected


@pytest.mark.parametrize("tree", TREES)
def test_every_role_is_bound_to_the_service_account_the_cronjob_runs_as(render, tree):
    docs = render(TREES[tree])
    cronjob = one(docs, "CronJob")
    namespace = cronjob["metadata"]["namespace"]
    account = pod_of(cronjob)["serviceAccountName"]
    assert one(docs, "ServiceAccount", account)["metadata"]["namespace"] == namespace
    subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
    for role in (d for d in docs if d["kind"] in ("Role", "ClusterRole")):
        binding_kind = "RoleBinding" if role["kind"] == "Role" else "ClusterRoleBinding"
        bindings = [
            b
            for b in docs
            if b["kind"] == binding_kind
            and b["roleRef"]
            == {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": role["kind"],
                "name": role["metadata"]["name"],
            }
            and b["metadata"].get("namespace") == role["metadata"].get("namespace")
        ]
        assert bindings, f"{role['kind']} {role['metadata']['name']} is bound to nothing"
        assert all(subject in b["subjects"] for b in bindings), (role, bindings)


# --- the CronJob ---------------------------------------------------------------------------------


def _overlay_image() -> str:
    (entry,) = _kustomization(OVERLAY)["images"]
    return f"{entry['newName']}:{entry['newTag']}"


IMAGES = {"base": "ghcr.io/example/pgdrill:0.1.0", "overlay": _overlay_image()}


@pytest.mark.parametrize("tree", TREES)
def test_cronjob_runs_one_monthly_drill_and_never_a_second(render, tree):
    cronjob = one(render(TREES[tree]), "CronJob", CRONJOB)
    assert len(CRONJOB) <= 52  # longer CronJob names are rejected
    spec = cronjob["spec"]
    fields = spec["schedule"].split()
    # Kubernetes' 5 fields, not CNPG's 6 (seconds first): once a month, at a fixed time
    assert len(fields) == 5, spec["schedule"]
    minute, hour, day, month, weekday = fields
    assert minute.isdigit() and hour.isdigit() and day.isdigit() and 1 <= int(day) <= 28
    assert (month, weekday) == ("*", "*")
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0  # a failed verdict fails the Job; no retry runs a 2nd drill
    assert job["activeDeadlineSeconds"] > 0
    pod = pod_of(cronjob)
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] >= 60  # the rollbacks run on SIGTERM


@pytest.mark.parametrize("tree", TREES)
def test_cronjob_pod_is_locked_down(render, tree):
    cronjob = one(render(TREES[tree]), "CronJob")
    pod = pod_of(cronjob)
    (container,) = pod["containers"]
    assert container["image"] == IMAGES[tree]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    # the read-only root filesystem leaves two writable places, both emptyDirs, with HOME in one
    writable = {
        m["mountPath"]: m["name"] for m in container["volumeMounts"] if not m.get("readOnly")
    }
    env = env_of(container)
    assert set(writable) == {env["PGDRILL_REPORTS"], "/tmp"}
    for name in writable.values():
        volume = next(v for v in pod["volumes"] if v["name"] == name)
        assert "emptyDir" in volume and volume["emptyDir"].get("sizeLimit"), volume
    assert env["HOME"] == "/tmp"


def _chaos_command(command: list[str]) -> tuple[dict, dict]:
    """Parse the command as the pinned chaostoolkit's CLI does (without running it)."""
    from chaostoolkit.commands import cli

    assert command[0] == "chaos"
    where = command.index("run")
    top = cli.make_context("chaos", command[1 : where + 1])
    run = cli.commands["run"].make_context("run", command[where + 1 :], parent=top)
    return top.params, run.params


@pytest.mark.parametrize("tree", TREES)
def test_cronjob_command_runs_the_backup_restore_drill_and_keeps_its_journal(render, tree):
    cronjob = one(render(TREES[tree]), "CronJob")
    (container,) = pod_of(cronjob)["containers"]
    command = container["command"] + container.get("args", [])
    assert shlex.join(command) == (
        "chaos --no-version-check --no-log-file run --journal-path "
        "/var/lib/pgdrill/reports/journal.json experiments/backup-restore.json"
    )
    top, run = _chaos_command(command)  # every option exists in the pinned chaostoolkit
    assert top["no_log_file"] and top["no_version_check"]
    # the journal lands in the reports emptyDir (the root filesystem is read-only)
    assert run["journal_path"].startswith(env_of(container)["PGDRILL_REPORTS"] + "/")
    experiment = REPO / run["source"]  # relative to the image's WORKDIR (test_dockerfile...)
    assert experiment.is_file(), run["source"]
    doc = json.loads(experiment.read_text())
    assert {
        "name": "pgdrill",
        "provider": {"type": "python", "module": "pgdrill.chaos.control"},
    } in doc["controls"]  # the run gets its preflight, folder and evidence
    assert (REPO / doc["configuration"]["checklist"]["default"]).is_file()


@pytest.mark.parametrize("tree", TREES)
def test_cronjob_environment_variables_are_ones_pgdrill_reads(render, tree):
    from pgdrill.credentials.sops.identities import SOPS_AGE_KEY_FILE

    (container,) = pod_of(one(render(TREES[tree]), "CronJob"))["containers"]
    env = env_of(container)
    experiment = json.loads((REPO / "experiments" / "backup-restore.json").read_text())
    read_by_experiment = {
        c["key"]
        for c in experiment["configuration"].values()
        if isinstance(c, dict) and c.get("type") == "env"
    }
    assert env["PGDRILL_REPORTS"] == "/var/lib/pgdrill/reports"
    assert "PGDRILL_REPORTS" in read_by_experiment
    assert env["PGDRILL_ENVIRONMENT_FILE"] == "/etc/pgdrill/staging.yaml"
    assert "PGDRILL_ENVIRONMENT_FILE" in (REPO / "pgdrill" / "chaos" / "preflight.py").read_text()
    assert env[SOPS_AGE_KEY_FILE] == "/var/run/secrets/sops-age/age.agekey"
    pgdrill_vars = {k for k in env if k.startswith("PGDRILL_")}
    assert pgdrill_vars <= read_by_experiment | {"PGDRILL_ENVIRONMENT_FILE"}, pgdrill_vars


@pytest.mark.parametrize("tree", TREES)
def test_in_the_pod_the_drill_talks_to_the_api_server_as_its_service_account(
    render, tree, tmp_path, monkeypatch
):
    """The cnpg target builds its client as chaostoolkit-kubernetes does: with the CronJob's
    environment and no kubeconfig it must take the in-cluster configuration (the
    ServiceAccount's token and CA), not fall back to an unconfigured localhost client."""
    import kubernetes.config
    from kubernetes.client import Configuration
    from kubernetes.config.incluster_config import InClusterConfigLoader

    from pgdrill.targets.cnpg.kube import api_client

    (container,) = pod_of(one(render(TREES[tree]), "CronJob"))["containers"]
    (tmp_path / "token").write_text("service-account-token")
    (tmp_path / "ca.crt").write_text("not checked here")
    for name in (
        "KUBECONFIG",
        "KUBERNETES_CONTEXT",
        "KUBERNETES_HOST",
        "HTTP_PROXY",
        "NO_PROXY",
        "CHAOSTOOLKIT_IN_POD",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        **env_of(container),
        "HOME": str(tmp_path),  # no ~/.kube/config
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
    }.items():
        monkeypatch.setenv(name, value)
    # the loader reads the mounted token and CA from tmp_path instead of /var/run/secrets/...
    loader = InClusterConfigLoader(
        token_filename=str(tmp_path / "token"), cert_filename=str(tmp_path / "ca.crt")
    )
    monkeypatch.setattr(
        kubernetes.config, "load_incluster_config", lambda **_: loader.load_and_set()
    )
    monkeypatch.setattr(Configuration, "_default", Configuration._default)  # restored after
    for name in ("verify_ssl", "debug"):  # chaosk8s sets these on the class
        monkeypatch.setattr(Configuration, name, getattr(Configuration, name, None), raising=False)
    configuration = api_client().configuration
    assert configuration.host == "https://10.96.0.1:443"
    assert configuration.api_key["BearerToken"].lower() == "bearer service-account-token"
    assert configuration.verify_ssl is True


@pytest.mark.parametrize("tree", TREES)
def test_the_pod_finds_its_environment_file_and_age_key(render, tree):
    docs = render(TREES[tree])
    cronjob = one(docs, "CronJob")
    pod = pod_of(cronjob)
    (container,) = pod["containers"]
    env = env_of(container)
    volume, key = mounted_file(pod, container, env["PGDRILL_ENVIRONMENT_FILE"])
    config_map = one(docs, "ConfigMap", volume["configMap"]["name"])
    assert config_map["metadata"]["namespace"] == cronjob["metadata"]["namespace"]
    assert key in config_map["data"]
    # the age key: Flux's convention (Secret sops-age, key age.agekey), read-only, 0400
    volume, key = mounted_file(pod, container, env["SOPS_AGE_KEY_FILE"])
    assert volume["secret"]["secretName"] == "sops-age" and key == "age.agekey"
    assert volume["secret"]["defaultMode"] == 0o400
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True
    # 0400 belongs to root: the non-root user reads it through fsGroup (kubelet: 0440, group)
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


# --- the environment file and the SOPS file in the ConfigMap ------------------------------------


@pytest.mark.parametrize("tree", TREES)
def test_environment_file_in_the_configmap_loads_and_names_the_mounted_sops_file(
    render, tree, tmp_path
):
    from pgdrill.credentials.environments import load_environment_file
    from pgdrill.credentials.s3client import split_destination

    docs = render(TREES[tree])
    cronjob = one(docs, "CronJob")
    pod = pod_of(cronjob)
    (container,) = pod["containers"]
    env = env_of(container)
    volume, key = mounted_file(pod, container, env["PGDRILL_ENVIRONMENT_FILE"])
    data = one(docs, "ConfigMap", volume["configMap"]["name"])["data"]
    path = tmp_path / "staging.yaml"
    path.write_text(data[key])
    loaded = load_environment_file(path)  # plaintext credentials or unknown keys are refused
    config = loaded.configuration()
    assert config["environment"] == "staging" and config["pgdrill_target"] == "cnpg"
    assert config["cluster"]
    assert config["namespace"] == cronjob["metadata"]["namespace"]  # where its RBAC is
    assert config["cnpg_connection"] == "service"
    bucket, _ = split_destination(config["evidence_sink"])  # s3://bucket/prefix/
    assert config["evidence_sink"].startswith("s3://") and bucket
    # the credentials path only exists in the pod: it is the SOPS file of the same ConfigMap
    assert loaded.credentials == Path("/etc/pgdrill/sops/cnpg-backup-s3.enc.yaml")
    sops_volume, sops_key = mounted_file(pod, container, str(loaded.credentials))
    assert sops_volume is volume and sops_key in data


@pytest.mark.parametrize("tree", TREES)
def test_the_sops_file_in_the_configmap_is_encrypted_or_the_placeholder(render, tree, tmp_path):
    """A ConfigMap is readable by anyone who may read ConfigMaps: the file must be ciphertext.
    The shipped placeholder holds no credential and refuses the drill until replaced."""
    from pgdrill.credentials import sops

    docs = render(TREES[tree])
    data = one(docs, "ConfigMap", "pgdrill-environment")["data"]
    path = tmp_path / "cnpg-backup-s3.enc.yaml"
    path.write_text(data["cnpg-backup-s3.enc.yaml"])
    try:
        assert sops.recipients(path)  # encrypted: decryptable only with an age key
    except BadInput as exc:
        assert "not a SOPS-encrypted file" in str(exc)
        (secret,) = _documents(path)
        assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "cnpg-backup-s3"
        assert not secret.get("data") and not secret.get("stringData")
        assert "PLACEHOLDER" in data["cnpg-backup-s3.enc.yaml"]


def test_overlay_environment_file_points_at_the_overlays_namespace():
    """The overlay moves the drill; its environment file must follow, or the drill would look
    for the cluster where its RBAC is not."""
    docs = compose(OVERLAY)
    env = yaml.safe_load(one(docs, "ConfigMap")["data"]["staging.yaml"])
    assert env["namespace"] == one(docs, "CronJob")["metadata"]["namespace"] != "staging"
    assert env["cluster"] != yaml.safe_load((BASE / "staging.yaml").read_text())["cluster"]


# --- Flux ------------------------------------------------------------------------------------


def test_flux_kustomization_applies_the_overlay_and_decrypts_with_sops_age():
    (doc,) = _documents(FLUX)
    assert doc["apiVersion"] == FLUX_API and doc["kind"] == "Kustomization"
    assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == "flux-system"
    spec = doc["spec"]
    assert set(spec) <= {
        "interval",
        "path",
        "prune",
        "timeout",
        "sourceRef",
        "decryption",
        "wait",
        "retryInterval",
        "dependsOn",
        "serviceAccountName",
        "suspend",
    }
    assert spec["interval"] and isinstance(spec["prune"], bool)
    assert spec["sourceRef"]["kind"] == "GitRepository" and spec["sourceRef"]["name"]
    assert spec["decryption"] == {"provider": "sops", "secretRef": {"name": "sops-age"}}
    # the path is relative to the repository root; it must render
    target = (REPO / spec["path"]).resolve()
    assert target == OVERLAY.resolve()
    assert one(compose(target), "CronJob", CRONJOB)
    # targetNamespace would move the restore-test and cnpg-system Roles out of their namespaces
    assert "targetNamespace" not in spec


# --- the runner image ----------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    lines, instructions = [], []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#") and not lines:
            continue
        lines.append(line.rstrip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            text = " ".join(part.strip() for part in lines if not part.strip().startswith("#"))
            lines = []
            if text:
                op, _, rest = text.partition(" ")
                instructions.append((op.upper(), rest.strip()))
    return instructions


def test_dockerfile_builds_the_runner_the_cronjob_expects():
    instructions = _dockerfile()
    stages = [rest for op, rest in instructions if op == "FROM"]
    assert stages and all(s.split()[0] == "python:3.12-slim" for s in stages)
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    build = instructions[: len(instructions) - len(final)] or final
    # the build copies what pyproject.toml packages (and its readme) and installs with pip
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    copied = {
        src.rstrip("/")
        for op, rest in build
        if op == "COPY"
        for src in rest.split()[:-1]
        if not src.startswith("--")
    }
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= copied, copied
    assert any(op == "RUN" and "pip install --no-cache-dir ." in rest for op, rest in build)
    # barman requires psycopg2, on PyPI only as source: the build stage must be able to compile
    # it, and the final image needs its runtime library but no build tools
    assert "psycopg2" in {
        re.split(r"[^\w.-]", r, maxsplit=1)[0] for r in metadata.requires("barman") or []
    }
    build_runs = " ".join(rest for op, rest in build if op == "RUN")
    assert {"gcc", "libpq-dev"} <= set(build_runs.split())
    final_runs = " ".join(rest for op, rest in final if op == "RUN").split()
    assert "libpq5" in final_runs
    assert not [w for w in final_runs if w in ("gcc", "build-essential") or w.endswith("-dev")]
    # the final image: experiments/ under its WORKDIR, a numeric non-root user = the pod's
    workdir = [rest for op, rest in final if op == "WORKDIR"][-1]
    assert ("COPY", "experiments/ experiments/") in final, final
    user = [rest for op, rest in final if op == "USER"][-1]
    uid, _, gid = user.partition(":")
    cronjob = one(compose(BASE), "CronJob")
    pod_security = pod_of(cronjob)["securityContext"]
    assert uid.isdigit() and int(uid) != 0
    assert (int(uid), int(gid or uid)) == (pod_security["runAsUser"], pod_security["runAsGroup"])
    (container,) = pod_of(cronjob)["containers"]
    assert container.get("workingDir", workdir) == workdir
    assert not any(op == "ENTRYPOINT" for op, _ in final)  # the CronJob's command is the drill


def test_dockerignore_keeps_what_the_dockerfile_copies():
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"  # everything else (.venv, reports, .pgdrill, tests) stays out
    kept = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = {
        src.rstrip("/")
        for op, rest in _dockerfile()
        if op == "COPY" and not rest.startswith("--from")
        for src in rest.split()[:-1]
    }
    assert copied <= kept, copied - kept
    for path in copied:
        assert (REPO / path).exists(), path
