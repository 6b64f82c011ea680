"""cnpg target manifests (pure): the source read from its Cluster/ObjectStore, the manual
Backup, the restore into restore-test, validation against CNPG's CRDs and webhook rules, and
`pgdrill plan`."""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from pgdrill.cli import main
from pgdrill.core.errors import BadInput
from pgdrill.core.model import RecoveryTarget
from pgdrill.targets.cnpg import manifests as m

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "cnpg"
IN_TREE = FIXTURES / "cluster-in-tree.yaml"
PLUGIN = FIXTURES / "cluster-plugin.yaml"
STORE = FIXTURES / "objectstore-plugin.yaml"
BACKUP_ID = "20260101T000000"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(params=["in-tree", "plugin"])
def source(request) -> m.SourceCluster:
    if request.param == "in-tree":
        return m.read_source(load(IN_TREE))
    return m.read_source(load(PLUGIN), load(STORE))


def restored_cluster(docs: list[dict]) -> dict:
    [cluster] = [d for d in docs if d["kind"] == "Cluster"]
    return cluster


def test_crds_are_in_the_package_with_their_licence_note():
    assert (m.CRDS / "README.md").read_text().count("Apache-2.0") >= 2
    assert ("postgresql.cnpg.io/v1", "Cluster") in m._schemas()
    assert ("barmancloud.cnpg.io/v1", "ObjectStore") in m._schemas()


def test_fixtures_themselves_validate():
    for path in (IN_TREE, PLUGIN, STORE):
        m.validate_manifest(load(path))


def test_in_tree_source():
    s = m.read_source(load(IN_TREE))
    assert (s.style, s.name, s.namespace) == ("in-tree", "app-db", "staging")
    assert s.destination_path == "s3://pg-backups/staging/"
    assert s.server_name == "app-db"  # default: the Cluster name
    assert s.endpoint_url == "https://s3.eu-central-1.example.com"
    assert s.s3_credentials["accessKeyId"] == {"name": "cnpg-backup-s3", "key": "ACCESS_KEY_ID"}
    assert (s.wal_compression, s.data_compression) == ("zstd", "lz4")
    assert s.archive == "s3://pg-backups/staging/app-db/"


def test_plugin_source_uses_its_server_name_and_object_store():
    s = m.read_source(load(PLUGIN), load(STORE))
    assert (s.style, s.object_store) == ("plugin", "app-db-store")
    assert s.server_name == "app-db-v2" != s.name
    assert s.destination_path == "s3://pg-backups/staging-plugin/"
    assert (s.wal_compression, s.data_compression) == ("gzip", "gzip")


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda c, o: c["spec"].pop("plugins"), "no backup configured"),
        (
            lambda c, o: c["spec"].update(
                backup={"barmanObjectStore": {"destinationPath": "s3://x/"}}
            ),
            "ambiguous",
        ),
        (
            lambda c, o: c["spec"]["plugins"].append(copy.deepcopy(c["spec"]["plugins"][0])),
            "ambiguous",
        ),
        (
            lambda c, o: c["spec"]["plugins"][0]["parameters"].pop("barmanObjectName"),
            "barmanObjectName",
        ),
        (lambda c, o: o["metadata"].update(name="other"), "uses staging/app-db-store"),
        (lambda c, o: o["spec"]["configuration"].pop("destinationPath"), "no destinationPath"),
        (lambda c, o: c["metadata"].pop("namespace"), "no metadata.namespace"),
    ],
)
def test_read_source_names_what_is_missing_or_ambiguous(change, needle):
    cluster, store = load(PLUGIN), load(STORE)
    change(cluster, store)
    with pytest.raises(BadInput, match=needle):
        m.read_source(cluster, store)


def test_plugin_source_without_its_object_store_says_which_flag():
    with pytest.raises(BadInput) as exc:
        m.read_source(load(PLUGIN))
    assert "app-db-store" in exc.value.message and "--object-store-manifest" in exc.value.fix


def test_namespace_argument_fills_in_and_must_agree():
    cluster = load(IN_TREE)
    assert m.read_source(cluster, namespace="staging").namespace == "staging"
    with pytest.raises(BadInput, match="not prod"):
        m.read_source(cluster, namespace="prod")
    cluster["metadata"].pop("namespace")
    assert m.read_source(cluster, namespace="prod").namespace == "prod"


def test_backup_manifest_per_style(source):
    doc = m.validate_manifest(m.backup_manifest(source, "app-db-pgdrill-1"))
    assert doc["metadata"] == {"name": "app-db-pgdrill-1", "namespace": "staging"}
    assert doc["spec"]["cluster"] == {"name": "app-db"}
    if source.style == "plugin":
        assert doc["spec"]["method"] == "plugin"
        assert doc["spec"]["pluginConfiguration"] == {"name": "barman-cloud.cloudnative-pg.io"}
    else:
        assert doc["spec"]["method"] == "barmanObjectStore"


TARGETS = [
    (RecoveryTarget(), None, None),
    (
        RecoveryTarget(
            time=datetime(2026, 11, 30, 21, 15, 27, tzinfo=timezone(timedelta(hours=1)))
        ),
        "targetTime",
        "2026-11-30T20:15:27Z",
    ),
    (RecoveryTarget(lsn="0/5000060"), "targetLSN", "0/5000060"),
    (RecoveryTarget(name="pre-change@run1"), "targetName", "pre-change@run1"),
]


@pytest.mark.parametrize("recovery, field, value", TARGETS)
def test_every_restore_manifest_validates_and_maps_the_target(source, recovery, field, value):
    backup_id = BACKUP_ID if recovery.kind == "restore_point" else None
    docs = m.restore_manifests(source, recovery, backup_id=backup_id)
    for doc in docs:
        m.validate_manifest(doc)
        assert doc["metadata"]["namespace"] == "restore-test"
    target = restored_cluster(docs)["spec"]["bootstrap"]["recovery"].get("recoveryTarget")
    if field is None:
        assert target is None
    else:
        expected = {field: value, **({"backupID": BACKUP_ID} if backup_id else {})}
        assert target == expected


def test_restore_point_without_backup_id_is_refused_as_the_webhook_would(source):
    with pytest.raises(BadInput, match="backupID"):
        m.restore_manifests(source, RecoveryTarget(name="x"))


def test_backup_id_is_passed_with_any_target(source):
    docs = m.restore_manifests(source, RecoveryTarget(lsn="0/1"), backup_id=BACKUP_ID)
    target = restored_cluster(docs)["spec"]["bootstrap"]["recovery"]["recoveryTarget"]
    assert target == {"targetLSN": "0/1", "backupID": BACKUP_ID}


def test_restore_reads_the_sources_archive_and_archives_nowhere(source):
    docs = m.restore_manifests(source, RecoveryTarget())
    cluster = restored_cluster(docs)
    spec = cluster["spec"]
    assert spec["bootstrap"]["recovery"]["source"] == "origin"
    [origin] = spec["externalClusters"]
    assert origin["name"] == "origin"
    stores = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ObjectStore"}
    if source.style == "plugin":
        parameters = origin["plugin"]["parameters"]
        assert origin["plugin"]["name"] == "barman-cloud.cloudnative-pg.io"
        assert parameters["serverName"] == "app-db-v2"  # the source's, not the cluster name
        store = stores[parameters["barmanObjectName"]]
        assert store["metadata"]["namespace"] == "restore-test"
        configuration = store["spec"]["configuration"]
        assert "serverName" not in configuration and "retentionPolicy" not in store["spec"]
        assert configuration["destinationPath"] == source.destination_path
    else:
        configuration = origin["barmanObjectStore"]
        assert configuration["serverName"] == "app-db"  # explicit, not the entry name
        assert configuration["destinationPath"] == source.destination_path
        assert "tags" not in configuration
    # the restore's own Secret, named after its Cluster (app-db-restore), not the source's
    assert configuration["s3Credentials"] == {
        "accessKeyId": {"name": "app-db-restore-backup-s3", "key": "ACCESS_KEY_ID"},
        "secretAccessKey": {"name": "app-db-restore-backup-s3", "key": "ACCESS_SECRET_KEY"},
        "region": {"name": "app-db-restore-backup-s3", "key": "REGION"},
    }
    assert "backup" not in spec and "plugins" not in spec
    assert not m.archives_into(cluster, source, stores)
    assert spec["imageName"] == source.image_name  # same PostgreSQL major
    assert not any(d["kind"] == "Secret" for d in docs)  # referenced, never with values


def test_archives_into_catches_a_cluster_writing_into_the_source(source):
    cluster = restored_cluster(m.restore_manifests(source, RecoveryTarget()))
    in_tree = copy.deepcopy(cluster)
    in_tree["spec"]["backup"] = {
        "barmanObjectStore": {
            "destinationPath": source.destination_path,
            "serverName": source.server_name,
        }
    }
    assert m.archives_into(in_tree, source)
    plugin = copy.deepcopy(cluster)
    plugin["spec"]["plugins"] = [
        {
            "name": "barman-cloud.cloudnative-pg.io",
            "isWALArchiver": True,
            "parameters": {"barmanObjectName": "unknown", "serverName": source.server_name},
        }
    ]
    assert m.archives_into(plugin, source)


def test_secret_name_is_configurable_and_iam_role_is_kept():
    cluster = load(IN_TREE)
    cluster["spec"]["backup"]["barmanObjectStore"]["s3Credentials"] = {"inheritFromIAMRole": True}
    docs = m.restore_manifests(m.read_source(cluster), RecoveryTarget(), secret_name="other")
    store = restored_cluster(docs)["spec"]["externalClusters"][0]["barmanObjectStore"]
    assert store["s3Credentials"] == {"inheritFromIAMRole": True}
    docs = m.restore_manifests(m.read_source(load(IN_TREE)), RecoveryTarget(), secret_name="s")
    store = restored_cluster(docs)["spec"]["externalClusters"][0]["barmanObjectStore"]
    assert {ref["name"] for ref in store["s3Credentials"].values()} == {"s"}


@pytest.mark.parametrize("name", ["a" * 51, "Restore", "1-restore", "re_store"])
def test_restore_cluster_names_follow_the_webhook(name):
    with pytest.raises(BadInput, match="restore Cluster name"):
        m.restore_manifests(m.read_source(load(IN_TREE)), RecoveryTarget(), name=name)
    assert m.restore_manifests(m.read_source(load(IN_TREE)), RecoveryTarget(), name="a" * 50)


@pytest.mark.parametrize(
    "change, path",
    [
        (lambda d: d["spec"].update(instances="three"), "$.spec.instances"),
        (lambda d: d["spec"]["externalClusters"][0].pop("name"), "$.spec.externalClusters[0]"),
        (
            lambda d: d["spec"]["externalClusters"][0]["barmanObjectStore"]["wal"].update(
                compression="brotli"
            ),
            "$.spec.externalClusters[0].barmanObjectStore.wal.compression",
        ),
        (
            lambda d: d["spec"]["bootstrap"]["recovery"].update(
                recoveryTarget={"targetLSN": "0/1", "targetTime": "2026-01-01T00:00:00Z"}
            ),
            "$.spec.bootstrap.recovery.recoveryTarget",
        ),
        (
            lambda d: d["spec"]["bootstrap"]["recovery"].update(recoveryTarget={"targetName": "x"}),
            "backupID",
        ),
        (
            lambda d: d["spec"]["bootstrap"]["recovery"].update(source="nope"),
            "$.spec.bootstrap.recovery.source",
        ),
        (lambda d: d["spec"]["bootstrap"].update(initdb={"database": "app"}), "$.spec.bootstrap"),
    ],
)
def test_invalid_manifest_fails_naming_the_path(change, path):
    doc = restored_cluster(m.restore_manifests(m.read_source(load(IN_TREE)), RecoveryTarget()))
    change(doc)
    with pytest.raises(BadInput) as exc:
        m.validate_manifest(doc)
    assert path in exc.value.message


def test_unknown_kind_is_refused():
    with pytest.raises(BadInput, match="no CRD"):
        m.validate_manifest({"apiVersion": "v1", "kind": "Secret"})


# --- pgdrill plan --------------------------------------------------------------------------

PLAN = [
    "plan",
    str(REPO / "experiments" / "pvc-loss.json"),
    "--target",
    "cnpg",
    "--cluster",
    "app-db",
    "--namespace",
    "staging",
]


@pytest.mark.parametrize(
    "files",
    [
        ["--cluster-manifest", str(IN_TREE)],
        ["--cluster-manifest", str(PLUGIN), "--object-store-manifest", str(STORE)],
    ],
)
def test_plan_prints_yaml_documents_that_validate(files, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no reports/ here: nothing else runs
    assert main(PLAN + files) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d is not None]
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "Backup" and kinds[-1] == "Cluster"
    assert ("ObjectStore" in kinds) == ("--object-store-manifest" in files)
    for doc in docs:
        m.validate_manifest(doc)
    source = (
        m.read_source(load(IN_TREE))
        if len(files) == 2
        else m.read_source(load(PLUGIN), load(STORE))
    )
    assert not m.archives_into(
        docs[-1], source, {d["metadata"]["name"]: d for d in docs if d["kind"] == "ObjectStore"}
    )


@pytest.mark.parametrize("style", ["in-tree", "plugin"])
def test_plan_reads_the_source_from_the_cluster_without_a_manifest(
    style, capsys, tmp_path, monkeypatch
):
    """Live mode: the Cluster (and its ObjectStore) read through the real kubernetes client
    from the fake API server; two GETs, nothing created."""
    from tests.fakekube.apiserver import CLUSTERS, NAMESPACES, OBJECT_STORES, FakeKubeServer

    monkeypatch.chdir(tmp_path)
    with FakeKubeServer() as server:
        server.store.create(NAMESPACES, {"metadata": {"name": "staging"}})
        server.store.create(CLUSTERS, load(IN_TREE if style == "in-tree" else PLUGIN))
        if style == "plugin":
            server.store.create(OBJECT_STORES, load(STORE))
        monkeypatch.setenv("KUBERNETES_HOST", server.url)
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
        assert main(PLAN) == 0
        calls = [(c.verb, c.resource) for c in server.calls]
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d is not None]
    assert [d["kind"] for d in docs][-1] == "Cluster"
    for doc in docs:
        m.validate_manifest(doc)
    assert calls == [("get", "clusters")] + ([("get", "objectstores")] if style == "plugin" else [])


def test_plan_of_a_cluster_that_does_not_exist_says_so(capsys, tmp_path, monkeypatch):
    from tests.fakekube.apiserver import NAMESPACES, FakeKubeServer

    monkeypatch.chdir(tmp_path)
    with FakeKubeServer() as server:
        server.store.create(NAMESPACES, {"metadata": {"name": "staging"}})
        monkeypatch.setenv("KUBERNETES_HOST", server.url)
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
        assert main(PLAN) == 2
    err = capsys.readouterr().err
    assert "there is no CNPG Cluster staging/app-db" in err and "--kube-context" in err
    assert "Traceback" not in err


def test_plan_restore_point_needs_a_backup_id_then_maps_the_run_unique_name(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    args = [
        "plan",
        str(REPO / "experiments" / "table-corruption.json"),
        "--target",
        "cnpg",
        "--cluster",
        "app-db",
        "--namespace",
        "staging",
        "--cluster-manifest",
        str(IN_TREE),
    ]
    assert main(args) == 2
    assert "--backup-id" in capsys.readouterr().err
    assert main(args + ["--backup-id", BACKUP_ID, "--run-id", "r1"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    target = docs[-1]["spec"]["bootstrap"]["recovery"]["recoveryTarget"]
    assert target == {"targetName": "pre-corruption@r1", "backupID": BACKUP_ID}


def test_plan_refuses_another_cluster_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = PLAN[:]
    args[args.index("app-db")] = "other"
    assert main(args + ["--cluster-manifest", str(IN_TREE)]) == 2
    err = capsys.readouterr().err
    assert "holds no CNPG Cluster other" in err and "Cluster/app-db" in err
    assert "Traceback" not in err


def gitops_file(tmp_path, *docs) -> Path:
    path = tmp_path / "app-db.yaml"
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False, explicit_start=True))
    return path


SCHEDULED = {
    "apiVersion": "postgresql.cnpg.io/v1",
    "kind": "ScheduledBackup",
    "metadata": {"name": "app-db-daily", "namespace": "staging"},
    "spec": {"schedule": "0 0 3 * * *", "cluster": {"name": "app-db"}},
}


def test_plan_takes_a_gitops_file_with_the_cluster_its_objectstore_and_more(
    capsys, tmp_path, monkeypatch
):
    """As GitOps repos keep them: one file with the ObjectStore, the Cluster, a
    ScheduledBackup and another Cluster; the Cluster is picked by name, the ObjectStore by
    the plugin's barmanObjectName, the rest ignored with a note."""
    monkeypatch.chdir(tmp_path)
    other = copy.deepcopy(load(IN_TREE))
    other["metadata"]["name"] = "reporting-db"
    path = gitops_file(tmp_path, load(STORE), other, load(PLUGIN), SCHEDULED)
    assert main(PLAN + ["--cluster-manifest", str(path)]) == 0
    out = capsys.readouterr().out
    docs = [d for d in yaml.safe_load_all(out) if d is not None]
    assert "ObjectStore" in [d["kind"] for d in docs]  # the restore's copy of the store
    assert (
        "# ignored in the manifest files: Cluster/reporting-db, ScheduledBackup/app-db-daily" in out
    )
    for doc in docs:
        m.validate_manifest(doc)
    # a kubectl List works too
    listed = tmp_path / "list.yaml"
    listed.write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [load(PLUGIN), load(STORE)]})
    )
    assert main(PLAN + ["--cluster-manifest", str(listed)]) == 0


def test_plan_without_the_objectstore_in_the_files_reads_it_from_the_cluster(
    capsys, tmp_path, monkeypatch
):
    from tests.fakekube.apiserver import NAMESPACES, OBJECT_STORES, FakeKubeServer

    monkeypatch.chdir(tmp_path)
    path = gitops_file(tmp_path, load(PLUGIN))
    with FakeKubeServer() as server:
        server.store.create(NAMESPACES, {"metadata": {"name": "staging"}})
        monkeypatch.setenv("KUBERNETES_HOST", server.url)
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
        assert main(PLAN + ["--cluster-manifest", str(path)]) == 2
        err = capsys.readouterr().err
        assert "neither in the manifest files nor in namespace staging" in err
        server.store.create(OBJECT_STORES, load(STORE))
        assert main(PLAN + ["--cluster-manifest", str(path)]) == 0
        calls = [(c.verb, c.resource) for c in server.calls]
    assert "read from the cluster (not in the files)" in capsys.readouterr().out
    assert calls[-1] == ("get", "objectstores") and ("get", "clusters") not in calls


def test_plan_names_a_document_that_is_not_an_object(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(load(IN_TREE)) + "---\n- just\n- a list\n")
    assert main(PLAN + ["--cluster-manifest", str(path)]) == 2
    assert "document 2 is not a Kubernetes object" in capsys.readouterr().err


# -- cluster-loss: the Cluster rebuilt in place from its old archive --------------------------
def source_doc(source: m.SourceCluster) -> dict:
    doc = load(IN_TREE if source.style == "in-tree" else PLUGIN)
    doc["metadata"].update(
        uid="1234",
        resourceVersion="77",
        finalizers=["x"],
        annotations={m.LAST_APPLIED: "{}", "team": "db"},
    )
    doc["status"] = {"phase": "Cluster in healthy state"}
    return doc


def test_rebuild_manifest_validates_reads_the_old_archive_and_archives_into_a_new_one(source):
    new = f"{source.server_name}-r1"
    doc = m.validate_manifest(
        m.rebuild_manifest(source, source_doc(source), server_name=new, backup_id=BACKUP_ID)
    )
    assert (doc["metadata"]["name"], doc["metadata"]["namespace"]) == (
        source.name,
        source.namespace,
    )
    assert doc["metadata"]["annotations"] == {"team": "db"}
    assert (
        not {"uid", "resourceVersion", "finalizers"} & set(doc["metadata"]) and "status" not in doc
    )
    assert doc["spec"]["bootstrap"] == {
        "recovery": {"source": "origin", "recoveryTarget": {"backupID": BACKUP_ID}}
    }
    [origin] = [e for e in doc["spec"]["externalClusters"] if e["name"] == "origin"]
    rebuilt = m.read_source(doc, load(STORE) if source.style == "plugin" else None)
    assert rebuilt.server_name == new and rebuilt.destination_path == source.destination_path
    assert not m.archives_into(
        doc, source, {source.object_store: load(STORE)} if source.style == "plugin" else None
    )
    if source.style == "plugin":
        assert origin["plugin"]["parameters"] == {
            "barmanObjectName": source.object_store,
            "serverName": source.server_name,
        }
    else:
        store = origin["barmanObjectStore"]
        assert (store["destinationPath"], store["serverName"]) == (
            source.destination_path,
            source.server_name,
        )
        assert store["s3Credentials"] == source.s3_credentials  # the source's own Secret
        assert not set(m.ARCHIVE_ONLY) & set(store)
    # a second rebuild replaces the origin entry instead of adding one
    again = m.rebuild_manifest(rebuilt, doc, server_name=f"{source.server_name}-r2")
    assert [e["name"] for e in again["spec"]["externalClusters"]].count("origin") == 1
    assert "recoveryTarget" not in again["spec"]["bootstrap"]["recovery"]


def test_rebuild_into_the_old_server_name_is_refused(source):
    with pytest.raises(BadInput, match="new serverName"):
        m.rebuild_manifest(source, source_doc(source), server_name=source.server_name)


def test_rebuilt_server_names_count_up_and_skip_taken_folders():
    assert m.rebuilt_server_name("app-db", lambda n: False) == "app-db-r1"
    assert m.rebuilt_server_name("app-db-r1", lambda n: False) == "app-db-r2"
    assert m.rebuilt_server_name("app-db", lambda n: n in ("app-db-r1", "app-db-r2")) == "app-db-r3"
    assert m.rebuilt_server_name("db-r9x", lambda n: False) == "db-r9x-r1"


def test_an_unknown_field_is_refused_as_a_real_api_server_would_prune_it():
    doc = load(IN_TREE)
    m.validate_manifest(doc)
    typo = copy.deepcopy(doc)
    typo["spec"]["instaces"] = 3  # a typo: pruned, so instances default
    typo["spec"]["backup"]["barmanObjectStore"]["wal"]["maxParalel"] = 8
    with pytest.raises(BadInput) as err:
        m.validate_manifest(typo)
    assert "$.spec.instaces" in err.value.message
    assert "$.spec.backup.barmanObjectStore.wal.maxParalel" in err.value.message
    assert "drop them silently" in err.value.message
    # what the schema keeps open is kept: labels/annotations in metadata, free-form maps
    open_ = copy.deepcopy(doc)
    open_["metadata"].setdefault("labels", {})["team"] = "db"
    open_["spec"].setdefault("postgresql", {}).setdefault("parameters", {})["work_mem"] = "8MB"
    m.validate_manifest(open_)


def test_a_backup_wait_ends_on_every_terminal_phase_of_cnpg():
    from pgdrill.targets.cnpg.backups import BACKUP_DONE_PHASES

    # CNPG >= 1.30 ends a Backup it cannot take in "invalid backup definition": a wait that
    # did not stop there would run into its timeout instead of naming the error
    assert {"completed", "failed", "walArchivingFailing", "invalid backup definition"} <= set(
        BACKUP_DONE_PHASES
    )
    assert not {"pending", "started", "running", "finalizing"} & set(BACKUP_DONE_PHASES)


def test_the_rebuild_keeps_a_non_default_application_database_owner_and_secret(source):
    doc = source_doc(source)
    doc["spec"]["bootstrap"] = {
        "initdb": {
            "database": "orders",
            "owner": "orders_owner",
            "secret": {"name": "orders-credentials"},
            "dataChecksums": True,
        }
    }
    rebuilt = m.validate_manifest(m.rebuild_manifest(source, doc, server_name="x-r1"))
    recovery = rebuilt["spec"]["bootstrap"]["recovery"]
    assert {k: recovery.get(k) for k in ("database", "owner", "secret")} == {
        "database": "orders",
        "owner": "orders_owner",
        "secret": {"name": "orders-credentials"},
    }
    assert "dataChecksums" not in recovery  # an initdb option, not recovery's
    # and a second rebuild (whose bootstrap is that recovery) keeps them again
    again = m.rebuild_manifest(
        m.read_source(rebuilt, load(STORE) if source.style == "plugin" else None),
        rebuilt,
        server_name="x-r2",
    )
    assert again["spec"]["bootstrap"]["recovery"]["owner"] == "orders_owner"


def test_two_clusters_restoring_into_one_namespace_use_their_own_credentials(source):
    """Two monthly CronJobs on the same schedule restore two clusters into restore-test at
    once: each restore's Secret is its own, so one drill's cleanup cannot delete the other's
    credentials mid-restore."""

    def secrets_referenced(docs):
        found = set()
        for doc in docs:
            blocks = (
                [doc["spec"].get("configuration")]
                if doc["kind"] == "ObjectStore"
                else [e.get("barmanObjectStore") for e in doc["spec"].get("externalClusters", [])]
            )
            for block in filter(None, blocks):
                found |= {ref["name"] for ref in block["s3Credentials"].values()}
        return found

    other = dataclasses.replace(source, name="billing-db")
    assert secrets_referenced(m.restore_manifests(source, RecoveryTarget())) == {
        "app-db-restore-backup-s3"
    }
    assert secrets_referenced(m.restore_manifests(other, RecoveryTarget())) == {
        "billing-db-restore-backup-s3"
    }


def on_a_catalog(kind: str, status_image: str | None) -> dict:
    doc = load(IN_TREE)
    doc["spec"].pop("imageName", None)
    doc["spec"]["imageCatalogRef"] = {
        "apiGroup": "postgresql.cnpg.io",
        "kind": kind,
        "name": "postgresql",
        "major": 17,
    }
    if status_image:
        doc["status"] = {"image": status_image}
    return doc


def test_a_source_on_an_image_catalog_restores_with_the_image_its_pods_run():
    """Without the catalog's image, CNPG would start the restore with its default image —
    perhaps another major, which cannot read the backup."""
    source = m.read_source(on_a_catalog("ImageCatalog", "registry.example/postgresql:17.6"))
    spec = restored_cluster(m.restore_manifests(source, RecoveryTarget()))["spec"]
    assert spec["imageName"] == "registry.example/postgresql:17.6"
    assert "imageCatalogRef" not in spec
    m.validate_manifest(restored_cluster(m.restore_manifests(source, RecoveryTarget())))


def test_a_cluster_image_catalog_is_kept_and_a_namespaced_one_without_status_refused():
    source = m.read_source(on_a_catalog("ClusterImageCatalog", None))
    spec = restored_cluster(m.restore_manifests(source, RecoveryTarget()))["spec"]
    assert spec["imageCatalogRef"] == {
        "apiGroup": "postgresql.cnpg.io",
        "kind": "ClusterImageCatalog",
        "name": "postgresql",
        "major": 17,
    }
    assert "imageName" not in spec
    with pytest.raises(BadInput) as refused:
        m.read_source(on_a_catalog("ImageCatalog", None))
    assert "ImageCatalog 'postgresql' (major 17)" in refused.value.message
    assert "status.image" in refused.value.fix


def test_the_endpoint_ca_of_the_source_namespace_is_copied_from_s3_ca_bundle(tmp_path):
    """endpointCA names a Secret of the source namespace, which a recovery Cluster in
    restore-test cannot read: the copy points at the restore's own Secret, whose ENDPOINT_CA
    key is the s3_ca_bundle PEM; without s3_ca_bundle the drill is refused before any step."""
    from pgdrill.core.model import Backup
    from pgdrill.credentials.secret import S3Credentials
    from pgdrill.targets.cnpg.config import CnpgConfig
    from pgdrill.targets.cnpg.restore import restore_documents

    cluster, store = load(PLUGIN), load(STORE)
    store["spec"]["configuration"]["endpointCA"] = {"name": "minio-ca", "key": "ca.crt"}
    source = m.read_source(cluster, store)
    with pytest.raises(BadInput, match="trusts the CA in Secret staging/minio-ca") as refused:
        m.restore_requirements(source, ca_bundle=None)
    assert "s3_ca_bundle" in refused.value.fix and "jsonpath='{.data.ca.crt}'" in refused.value.fix
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    config = CnpgConfig(
        cluster="app-db",
        namespace="staging",
        restore_cluster="app-db-restore",
        s3_ca_bundle=str(pem),
    )
    creds = S3Credentials(
        access_key_id="AK",
        secret_access_key="SK",
        bucket="pg-backups",
        endpoint="https://minio:9000",
        region="us-east-1",
        source="x",
    )
    backup = Backup(id=BACKUP_ID, status="DONE", begin_time=None, end_time=None)
    secret, copy_store, restored = restore_documents(
        config, source, backup, RecoveryTarget(), creds
    )
    assert copy_store["spec"]["configuration"]["endpointCA"] == {
        "name": "app-db-restore-backup-s3",
        "key": "ENDPOINT_CA",
    }
    assert secret["metadata"]["name"] == "app-db-restore-backup-s3"
    assert "ENDPOINT_CA" in (secret.get("stringData") or secret.get("data"))
    with pytest.raises(BadInput, match="trusts the CA"):
        restore_documents(
            dataclasses.replace(config, s3_ca_bundle=None), source, backup, RecoveryTarget(), creds
        )


def test_the_plugins_sidecar_configuration_is_copied_and_an_indirect_env_refused():
    cluster, store = load(PLUGIN), load(STORE)
    sidecar = {
        "env": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
        "resources": {"limits": {"memory": "512Mi"}},
    }
    store["spec"]["instanceSidecarConfiguration"] = sidecar
    source = m.read_source(cluster, store)
    assert m.restore_requirements(source, ca_bundle=None) == ["instanceSidecarConfiguration"]
    [copy_store] = [
        d for d in m.restore_manifests(source, RecoveryTarget()) if d["kind"] == "ObjectStore"
    ]
    assert copy_store["spec"]["instanceSidecarConfiguration"] == sidecar
    m.validate_manifest(copy_store)
    sidecar["env"].append(
        {"name": "PROXY", "valueFrom": {"secretKeyRef": {"name": "p", "key": "url"}}}
    )
    with pytest.raises(BadInput, match="reads PROXY from a Secret or ConfigMap of staging"):
        m.restore_requirements(m.read_source(cluster, store), ca_bundle=None)


def test_an_iam_role_reaches_restore_test_through_the_service_account_template():
    cluster = load(IN_TREE)
    cluster["spec"]["backup"]["barmanObjectStore"]["s3Credentials"] = {"inheritFromIAMRole": True}
    with pytest.raises(BadInput, match="inheritFromIAMRole but has no") as refused:
        m.restore_requirements(m.read_source(cluster), ca_bundle=None)
    assert "restore_iam_role_from_node" in refused.value.fix
    assert (
        m.restore_requirements(m.read_source(cluster), ca_bundle=None, iam_role_from_node=True)
        == []
    )
    template = {
        "metadata": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/backups"}}
    }
    cluster["spec"]["serviceAccountTemplate"] = template
    source = m.read_source(cluster)
    assert m.restore_requirements(source, ca_bundle=None) == ["serviceAccountTemplate (IAM role)"]
    restored = restored_cluster(m.restore_manifests(source, RecoveryTarget()))
    assert restored["spec"]["serviceAccountTemplate"] == template
    m.validate_manifest(restored)
    # with keys instead of a role, the template stays with the source
    cluster["spec"]["backup"]["barmanObjectStore"]["s3Credentials"] = load(IN_TREE)["spec"][
        "backup"
    ]["barmanObjectStore"]["s3Credentials"]
    assert (
        "serviceAccountTemplate"
        not in restored_cluster(m.restore_manifests(m.read_source(cluster), RecoveryTarget()))[
            "spec"
        ]
    )
