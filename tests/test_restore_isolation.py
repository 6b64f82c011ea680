"""restore-test's isolation from the source's archive, as the cnpg target proves it: CNPG
always runs with archive_mode on, so what counts is the stored Cluster having no archive."""

from pgdrill.targets.cnpg.restoring import archive_destinations


def test_a_recovery_cluster_without_backup_or_archiver_plugin_is_isolated():
    cluster = {
        "spec": {
            "instances": 1,
            "bootstrap": {"recovery": {"source": "origin"}},
            "externalClusters": [
                {"name": "origin", "barmanObjectStore": {"destinationPath": "s3://bucket/"}}
            ],
        }
    }
    assert archive_destinations(cluster) == []


def test_an_in_tree_object_store_or_a_wal_archiver_plugin_is_not():
    in_tree = {"spec": {"backup": {"barmanObjectStore": {"destinationPath": "s3://bucket/"}}}}
    plugin = {
        "spec": {"plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True}]}
    }
    disabled = {
        "spec": {
            "plugins": [
                {"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True, "enabled": False}
            ]
        }
    }
    assert archive_destinations(in_tree) == ["barmanObjectStore s3://bucket/"]
    assert archive_destinations(plugin) == ["plugin barman-cloud.cloudnative-pg.io"]
    assert archive_destinations(disabled) == []
