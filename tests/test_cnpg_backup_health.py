"""Step 1 of the safe workflow, "verify backups", on CNPG (pure): the documents are what
`kubectl get ... -o json` shows for an in-tree (spec.backup.barmanObjectStore) cluster and a
barman-cloud plugin cluster; a healthy set passes, each rule has the case that fails it, and
every assertion is on the sentence a user reads."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest

from pgdrill.targets.cnpg.backup_health import BackupHealth, assess_backups

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
PLUGIN = "barman-cloud.cloudnative-pg.io"
DESCRIBE = (
    "check that the CNPG operator is running and read the events of "
    "`kubectl describe scheduledbackup -n production pg-daily`"
)


def condition(kind: str, status: str, reason: str, message: str) -> dict:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-30T00:07:42Z",
        "observedGeneration": 1,
    }


def healthy_conditions() -> list[dict]:
    return [
        condition("Ready", "True", "ClusterIsReady", "Cluster is Ready"),
        condition(
            "ContinuousArchiving",
            "True",
            "ContinuousArchivingSuccess",
            "Continuous archiving is working",
        ),
        condition("LastBackupSucceeded", "True", "LastBackupSucceeded", "Backup was successful"),
    ]


def in_tree_cluster() -> dict:
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {
            "name": "pg",
            "namespace": "production",
            "generation": 1,
            "creationTimestamp": "2026-01-10T09:00:00Z",
            "uid": "5b0c3f8e-1f7c-4f0e-9a57-3c1f2b7d9e10",
        },
        "spec": {
            "instances": 3,
            "imageName": "ghcr.io/cloudnative-pg/postgresql:17.6-system-trixie",
            "storage": {"size": "20Gi"},
            "backup": {
                "retentionPolicy": "30d",
                "target": "prefer-standby",
                "barmanObjectStore": {
                    "destinationPath": "s3://platform-backups/production/",
                    "endpointURL": "https://fsn1.your-objectstorage.com",
                    "s3Credentials": {
                        "accessKeyId": {"name": "cnpg-backup-s3", "key": "ACCESS_KEY_ID"},
                        "secretAccessKey": {"name": "cnpg-backup-s3", "key": "ACCESS_SECRET_KEY"},
                        "region": {"name": "cnpg-backup-s3", "key": "REGION"},
                    },
                    "wal": {"compression": "gzip", "maxParallel": 2},
                    "data": {"compression": "gzip"},
                },
            },
        },
        "status": {
            "phase": "Cluster in healthy state",
            "instances": 3,
            "readyInstances": 3,
            "currentPrimary": "pg-1",
            "targetPrimary": "pg-1",
            "timelineID": 1,
            "firstRecoverabilityPoint": "2026-10-31T00:06:12Z",
            "firstRecoverabilityPointByMethod": {"barmanObjectStore": "2026-10-31T00:06:12Z"},
            "lastSuccessfulBackup": "2026-11-30T00:07:41Z",
            "lastSuccessfulBackupByMethod": {"barmanObjectStore": "2026-11-30T00:07:41Z"},
            "conditions": healthy_conditions(),
        },
    }


def plugin_cluster() -> dict:
    cluster = in_tree_cluster()
    del cluster["spec"]["backup"]
    cluster["spec"]["plugins"] = [
        {
            "name": PLUGIN,
            "enabled": True,
            "isWALArchiver": True,
            "parameters": {"barmanObjectName": "pg-store", "serverName": "pg-2026"},
        }
    ]
    for key in (
        "firstRecoverabilityPoint",
        "firstRecoverabilityPointByMethod",
        "lastSuccessfulBackup",
        "lastSuccessfulBackupByMethod",
    ):
        del cluster["status"][key]  # not set for backup plugins
    return cluster


def object_store(window: dict | None = None, **spec) -> dict:
    return {
        "apiVersion": "barmancloud.cnpg.io/v1",
        "kind": "ObjectStore",
        "metadata": {"name": "pg-store", "namespace": "production"},
        "spec": {
            "retentionPolicy": "14d",
            "configuration": {
                "destinationPath": "s3://platform-backups/production/",
                "s3Credentials": {
                    "accessKeyId": {"name": "cnpg-backup-s3", "key": "ACCESS_KEY_ID"}
                },
            },
            **spec,
        },
        "status": {
            "serverRecoveryWindow": window
            if window is not None
            else {
                "pg-2026": {
                    "firstRecoverabilityPoint": "2026-11-16T00:05:03Z",
                    "lastSuccessfulBackupTime": "2026-11-30T00:07:41Z",
                }
            }
        },
    }


def scheduled(
    schedule: str = "0 0 0 * * *",
    *,
    name: str = "pg-daily",
    plugin: bool = False,
    last: str | None = "2026-11-30T00:00:00Z",
    checked: str | None = None,
    suspend: bool | None = None,
    cluster: str = "pg",
) -> dict:
    spec = {
        "schedule": schedule,
        "cluster": {"name": cluster},
        "backupOwnerReference": "self",
        "immediate": True,
    }
    spec |= (
        {"method": "plugin", "pluginConfiguration": {"name": PLUGIN}}
        if plugin
        else {"method": "barmanObjectStore"}
    )
    if suspend is not None:
        spec["suspend"] = suspend
    status = {"lastCheckTime": checked or last or "2026-11-29T23:00:00Z"}
    if last:
        status |= {"lastScheduleTime": last, "nextScheduleTime": "2026-12-01T00:00:00Z"}
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "ScheduledBackup",
        "metadata": {
            "name": name,
            "namespace": "production",
            "generation": 1,
            "creationTimestamp": "2026-01-10T09:05:00Z",
        },
        "spec": spec,
        "status": status,
    }


def backup(
    name: str = "pg-daily-20261130000000",
    *,
    phase: str = "completed",
    started: str = "2026-11-30T00:00:02Z",
    stopped: str | None = "2026-11-30T00:07:41Z",
    error: str | None = None,
    plugin: bool = False,
) -> dict:
    status = {
        "phase": phase,
        "method": "plugin" if plugin else "barmanObjectStore",
        "backupId": "20261130T000002",
        "backupName": "backup-20261130000002",
        "startedAt": started,
        "beginWal": "00000001000000000000002A",
        "beginLSN": "0/2A000028",
        "instanceID": {"podName": "pg-2"},
        "majorVersion": 17,
        "online": True,
    }
    if stopped:
        status |= {
            "stoppedAt": stopped,
            "endWal": "00000001000000000000002A",
            "endLSN": "0/2A000120",
        }
    if plugin:
        status["pluginMetadata"] = {"pluginName": PLUGIN, "timeline": "1"}
    else:
        status |= {"destinationPath": "s3://platform-backups/production/", "serverName": "pg"}
    if error:
        status["error"] = error
    spec = {"cluster": {"name": "pg"}, "method": status["method"]}
    if plugin:
        spec["pluginConfiguration"] = {"name": PLUGIN}
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Backup",
        "metadata": {
            "name": name,
            "namespace": "production",
            "creationTimestamp": started,
            "labels": {
                "cnpg.io/cluster": "pg",
                "cnpg.io/immediateBackup": "false",
                "cnpg.io/scheduled-backup": "pg-daily",
            },
        },
        "spec": spec,
        "status": status,
    }


def assess(cluster=None, schedules=None, backups=None, **kwargs) -> BackupHealth:
    kwargs.setdefault("now", NOW)
    return assess_backups(
        in_tree_cluster() if cluster is None else cluster,
        [scheduled()] if schedules is None else schedules,
        [backup()] if backups is None else backups,
        **kwargs,
    )


def assess_plugin(cluster=None, schedules=None, backups=None, **kwargs) -> BackupHealth:
    kwargs.setdefault("object_store", object_store())
    return assess(
        plugin_cluster() if cluster is None else cluster,
        [scheduled(plugin=True)] if schedules is None else schedules,
        [backup(plugin=True)] if backups is None else backups,
        **kwargs,
    )


def backed_up_at(stopped: str) -> tuple[dict, list[dict]]:
    """An in-tree cluster and its Backup objects whose newest backup finished at `stopped`."""
    cluster = in_tree_cluster()
    cluster["status"]["lastSuccessfulBackup"] = stopped
    del cluster["status"]["lastSuccessfulBackupByMethod"]
    return cluster, [backup(started=stopped, stopped=stopped)]


def only_problem(health: BackupHealth) -> str:
    assert not health.ok
    assert len(health.problems) == 1, health.problems
    return health.problems[0]


# -- healthy sets ------------------------------------------------------------------------------


def test_a_healthy_in_tree_cluster_passes_and_its_facts_are_evidence():
    health = assess()
    assert health.ok, health.problems
    assert health.problems == [] and health.warnings == []
    facts = json.loads(json.dumps(health.to_dict()))["facts"]  # JSON-ready
    [daily] = facts["schedules"]
    assert (daily["name"], daily["method"], daily["suspended"]) == (
        "pg-daily",
        "barmanObjectStore",
        False,
    )
    assert (daily["schedule"], daily["period_seconds"], daily["stale"]) == (
        "0 0 0 * * *",
        86400,
        False,
    )
    assert daily["previous_expected_run"] == "2026-11-30T00:00:00Z"
    assert daily["next_expected_run"] == "2026-12-01T00:00:00Z"
    assert daily["last_schedule_time"] == "2026-11-30T00:00:00Z"
    last = facts["last_successful_backup"]
    assert (last["time"], last["source"]) == (
        "2026-11-30T00:07:41Z",
        "Cluster status.lastSuccessfulBackup",
    )
    assert (last["age"], last["max_age"]) == ("11h 52m 19s", "1d 1h")
    assert last["max_age_from"].startswith("ScheduledBackup production/pg-daily ('0 0 0 * * *')")
    assert facts["first_recoverability_point"]["time"] == "2026-10-31T00:06:12Z"
    assert facts["retention_policy"] == {
        "value": "30d",
        "valid": True,
        "source": "Cluster spec.backup.retentionPolicy",
    }
    assert facts["conditions"]["ContinuousArchiving"]["reason"] == "ContinuousArchivingSuccess"
    assert facts["conditions"]["LastBackupSucceeded"]["status"] == "True"
    [newest] = facts["backups"]["newest"]
    assert (newest["name"], newest["phase"], newest["stopped_at"], newest["scheduled_backup"]) == (
        "pg-daily-20261130000000",
        "completed",
        "2026-11-30T00:07:41Z",
        "pg-daily",
    )
    assert facts["cluster"]["style"] == "in-tree"


def test_a_healthy_plugin_cluster_passes_on_the_object_store_recovery_window():
    health = assess_plugin(backups=[])
    assert health.ok, health.problems
    facts = health.facts
    assert facts["cluster"]["server_name"] == "pg-2026"
    assert (
        facts["last_successful_backup"]["source"]
        == "ObjectStore pg-store status.serverRecoveryWindow.pg-2026.lastSuccessfulBackupTime"
    )
    assert facts["first_recoverability_point"] == {
        "time": "2026-11-16T00:05:03Z",
        "source": "ObjectStore pg-store status.serverRecoveryWindow.pg-2026"
        ".firstRecoverabilityPoint",
        "candidates": facts["first_recoverability_point"]["candidates"],
    }
    assert facts["retention_policy"]["value"] == "14d"
    assert facts["retention_policy"]["source"] == "ObjectStore pg-store spec.retentionPolicy"


def test_the_newest_successful_backup_is_taken_from_whichever_source_is_newest():
    newer = backup("pg-manual", started="2026-11-30T10:00:00Z", stopped="2026-11-30T10:05:00Z")
    health = assess(backups=[backup(), newer])
    assert health.ok, health.problems
    last = health.facts["last_successful_backup"]
    assert (last["time"], last["source"]) == (
        "2026-11-30T10:05:00Z",
        "Backup pg-manual status.stoppedAt (phase completed)",
    )
    assert {c["source"] for c in last["candidates"]} == {
        "Cluster status.lastSuccessfulBackup",
        "Cluster status.lastSuccessfulBackupByMethod.barmanObjectStore",
        "Backup pg-manual status.stoppedAt (phase completed)",
    }


def test_a_kubectl_list_document_is_accepted_and_other_clusters_objects_are_ignored():
    other = scheduled(name="other-daily", cluster="other", last="2026-01-01T00:00:00Z")
    failed_elsewhere = backup(
        "other-1", phase="failed", started="2026-11-30T11:00:00Z", error="boom"
    )
    failed_elsewhere["spec"]["cluster"]["name"] = "other"
    health = assess(
        schedules={"apiVersion": "v1", "kind": "List", "items": [scheduled(), other]},
        backups={"kind": "List", "items": [backup(), failed_elsewhere]},
    )
    assert health.ok, health.problems
    assert [s["name"] for s in health.facts["schedules"]] == ["pg-daily"]
    assert health.facts["backups"]["total"] == 1


# -- rule 1: schedules -------------------------------------------------------------------------


def test_no_scheduled_backup_for_the_cluster_fails():
    problem = only_problem(assess(schedules=[scheduled(cluster="pg-old")]))
    assert problem == (
        "No ScheduledBackup targets Cluster production/pg (spec.cluster.name pg), so nothing "
        "takes backups on a schedule: create one, e.g. schedule '0 0 0 * * *' (daily at 00:00 "
        "UTC, six fields, seconds first) with method: barmanObjectStore."
    )


def test_no_scheduled_backup_for_a_plugin_cluster_suggests_the_plugin_method():
    problem = only_problem(assess_plugin(schedules=[]))
    assert problem.endswith(f"with method: plugin and pluginConfiguration.name: {PLUGIN}.")


def test_every_scheduled_backup_suspended_fails_and_is_listed():
    health = assess(
        schedules=[
            scheduled(suspend=True),
            scheduled("0 0 * * * *", name="pg-hourly", suspend=True),
        ]
    )
    assert only_problem(health) == (
        "Every ScheduledBackup of Cluster production/pg is suspended (pg-daily, pg-hourly), so "
        "no scheduled backups are taken: set spec.suspend: false."
    )
    assert [(s["name"], s["suspended"]) for s in health.facts["schedules"]] == [
        ("pg-daily", True),
        ("pg-hourly", True),
    ]


def test_a_suspended_schedule_beside_an_active_one_is_a_warning_and_stays_in_the_facts():
    health = assess(
        schedules=[
            scheduled(),
            scheduled("0 0 * * * *", name="pg-hourly", suspend=True, last="2026-06-01T00:00:00Z"),
        ]
    )
    assert health.ok, health.problems
    assert health.warnings == [
        (
            "ScheduledBackup production/pg-hourly is suspended "
            "(spec.suspend: true); the others still run."
        )
    ]
    assert health.facts["schedules"][1]["suspended"] is True


def test_a_stale_schedule_fails_naming_the_last_run_and_the_expected_one():
    health = assess(
        schedules=[scheduled(last="2026-11-27T00:00:00Z")], max_backup_age=timedelta(days=7)
    )
    assert only_problem(health) == (
        "ScheduledBackup production/pg-daily last ran at 2026-11-27T00:00:00Z, its schedule "
        "'0 0 0 * * *' expected a run at 2026-11-28T00:00:00Z (and every run since, the latest "
        f"at 2026-11-30T00:00:00Z): scheduled backups have stopped; {DESCRIBE}."
    )
    [daily] = health.facts["schedules"]
    assert (daily["stale"], daily["first_missed_run"], daily["latest_missed_run"]) == (
        True,
        "2026-11-28T00:00:00Z",
        "2026-11-30T00:00:00Z",
    )


def test_a_run_late_by_exactly_the_grace_passes_and_one_second_more_fails():
    on_the_edge = datetime(2026, 12, 1, 1, 0, 0, tzinfo=UTC)  # the 00:00 run, 1h late
    assert assess(now=on_the_edge, grace=HOUR).ok
    problem = only_problem(assess(now=on_the_edge + timedelta(seconds=1), grace=HOUR))
    assert problem.startswith(
        "ScheduledBackup production/pg-daily last ran at 2026-11-30T00:00:00Z, its schedule "
        "'0 0 0 * * *' expected a run at 2026-12-01T00:00:00Z: scheduled backups have stopped"
    )


def test_a_schedule_that_never_ran_fails_once_its_first_run_is_overdue():
    never = scheduled(last=None, checked="2026-11-28T09:00:00Z")
    problem = only_problem(assess(schedules=[never]))
    assert problem == (
        "ScheduledBackup production/pg-daily has never run (no status.lastScheduleTime), its "
        "schedule '0 0 0 * * *' expected a first run at 2026-11-29T00:00:00Z "
        f"(status.lastCheckTime 2026-11-28T09:00:00Z): {DESCRIBE}."
    )


def test_a_new_schedule_whose_first_run_is_not_due_yet_passes_with_a_note():
    fresh = scheduled(last=None, checked="2026-11-30T11:00:00Z")
    health = assess(schedules=[fresh])
    assert health.ok, health.problems
    assert (
        "ScheduledBackup production/pg-daily has not run yet; its first run is due at "
        "2026-12-01T00:00:00Z." in health.facts["notes"]
    )


def test_a_schedule_the_operator_never_checked_fails():
    unseen = scheduled(last=None)
    del unseen["status"]
    del unseen["metadata"]["creationTimestamp"]
    assert only_problem(assess(schedules=[unseen])) == (
        "ScheduledBackup production/pg-daily has never run (no status.lastScheduleTime) and "
        f"CNPG has never checked it (no status.lastCheckTime): {DESCRIBE}."
    )


def test_an_invalid_schedule_fails_naming_it_and_the_parser_reason():
    health = assess(schedules=[scheduled("0 0 0 * * 7")])
    assert only_problem(health) == (
        "ScheduledBackup production/pg-daily has an invalid schedule '0 0 0 * * 7' (End of "
        "range (7) above maximum (6): 7), so CNPG never runs it: use six fields, seconds first, "
        "e.g. '0 0 0 * * *' for daily at 00:00 UTC, or a descriptor such as '@daily'."
    )
    assert health.facts["schedules"][0]["valid"] is False


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("", "Empty spec string"),
        ("0 0 * *", "Expected 5 to 6 fields, found 4: 0 0 * *"),
        ("CRON_TZ=UTC 0 0 0 * * *", "Expected 5 to 6 fields, found 7"),
        ("@fortnightly", "Unrecognized descriptor: @fortnightly"),
        ("@every 6", 'Failed to parse duration @every 6: time: missing unit in duration "6"'),
        ("0 0 0 * 0 *", "Beginning of range (0) below minimum (1): 0"),
        ("0 0 0 1/0 * *", "Step of range should be a positive number: 1/0"),
    ],
)
def test_malformed_schedules_are_problems_not_exceptions(spec, reason):
    problem = only_problem(assess(schedules=[scheduled(spec)]))
    assert problem.startswith(
        f"ScheduledBackup production/pg-daily has an invalid schedule '{spec}' ("
    )
    assert reason in problem


def test_a_schedule_that_never_fires_fails():
    problem = only_problem(
        assess(schedules=[scheduled("0 0 0 31 2 *")], max_backup_age=timedelta(days=1))
    )
    assert problem == (
        "ScheduledBackup production/pg-daily's schedule '0 0 0 31 2 *' never fires (no "
        "matching time within five years), so CNPG never runs it: fix spec.schedule, e.g. "
        "'0 0 0 * * *'."
    )


def test_a_five_field_schedule_fails_showing_how_cnpg_reads_it():
    # crontab "daily at 02:00"; CNPG: second 0, minute 2, every hour (it only warns)
    cluster, backups = backed_up_at("2026-11-30T11:09:00Z")
    health = assess(cluster, [scheduled("0 2 * * *", last="2026-11-30T11:02:00Z")], backups)
    assert only_problem(health) == (
        "ScheduledBackup production/pg-daily has the 5-field schedule '0 2 * * *': CNPG reads "
        "it seconds first as '0 2 * * * *' (second minute hour day-of-month month "
        "day-of-week), not as crontab's minute hour day month weekday; if you meant the "
        "crontab meaning write the six fields '0 0 2 * * *'."
    )
    [facts] = health.facts["schedules"]
    assert (facts["field_count"], facts["period"], facts["next_expected_run"]) == (
        5,
        "1h",
        "2026-11-30T12:02:00Z",
    )


@pytest.mark.parametrize(
    "spec, last, stopped, period",
    [
        ("@daily", "2026-11-30T00:00:00Z", "2026-11-30T00:07:41Z", "1d"),
        ("@midnight", "2026-11-30T00:00:00Z", "2026-11-30T00:07:41Z", "1d"),
        ("@hourly", "2026-11-30T12:00:00Z", "2026-11-30T11:04:00Z", "1h"),
        ("@every 6h", "2026-11-30T06:00:03Z", "2026-11-30T06:10:00Z", "6h"),
        ("@every 1h30m", "2026-11-30T11:00:00Z", "2026-11-30T11:05:00Z", "1h 30m"),
    ],
)
def test_descriptor_schedules_pass_when_on_time(spec, last, stopped, period):
    cluster, backups = backed_up_at(stopped)
    health = assess(cluster, [scheduled(spec, last=last)], backups)
    assert health.ok, health.problems
    assert health.facts["schedules"][0]["period"] == period


def test_a_stale_every_schedule_fails_from_its_last_run():
    problem = only_problem(
        assess(
            schedules=[scheduled("@every 6h", last="2026-11-30T04:00:00Z")],
            max_backup_age=timedelta(days=2),
        )
    )
    assert problem.startswith(
        "ScheduledBackup production/pg-daily last ran at 2026-11-30T04:00:00Z, its schedule "
        "'@every 6h' expected a run at 2026-11-30T10:00:00Z: scheduled backups have stopped"
    )


def test_a_stale_daily_descriptor_fails_like_its_cron_spelling():
    problem = only_problem(
        assess(
            schedules=[scheduled("@daily", last="2026-11-28T00:00:00Z")],
            max_backup_age=timedelta(days=7),
        )
    )
    assert problem.startswith(
        "ScheduledBackup production/pg-daily last ran at 2026-11-28T00:00:00Z, its schedule "
        "'@daily' expected a run at 2026-11-29T00:00:00Z (and every run since, the latest at "
        "2026-11-30T00:00:00Z)"
    )


def test_a_schedule_whose_method_the_cluster_cannot_serve_fails():
    default_method = scheduled(plugin=False)
    del default_method["spec"]["method"]
    problem = only_problem(assess_plugin(schedules=[default_method]))
    assert problem == (
        "ScheduledBackup production/pg-daily uses method barmanObjectStore (the default when "
        "spec.method is unset) but Cluster production/pg has no spec.backup.barmanObjectStore, "
        "so every Backup it creates fails: set spec.method: plugin and "
        f"spec.pluginConfiguration.name: {PLUGIN}."
    )


# -- rule 2: the newest successful backup ------------------------------------------------------


def test_an_old_last_backup_fails_with_its_age_and_source():
    cluster = in_tree_cluster()
    cluster["status"]["lastSuccessfulBackup"] = "2026-11-28T00:07:41Z"
    del cluster["status"]["lastSuccessfulBackupByMethod"]
    old = backup(started="2026-11-28T00:00:02Z", stopped="2026-11-28T00:07:41Z")
    problem = only_problem(assess(cluster, backups=[old]))
    assert problem == (
        "The newest successful backup of Cluster production/pg finished at 2026-11-28T00:07:41Z "
        "(Cluster status.lastSuccessfulBackup), 2d 11h 52m 19s ago, older than the 1d 1h "
        "allowed (ScheduledBackup production/pg-daily ('0 0 0 * * *') runs every 1d, plus grace "
        "1h): find out why recent backups did not complete (Backup objects, operator and "
        "instance logs) and take one with `kubectl cnpg backup -n production pg`."
    )


def test_backup_age_exactly_period_plus_grace_passes_and_one_second_more_fails():
    def with_last_backup(stopped: str) -> BackupHealth:
        cluster, backups = backed_up_at(stopped)
        return assess(cluster, backups=backups)

    assert with_last_backup("2026-11-29T11:00:00Z").ok  # 25h = 1d period + 1h grace
    problem = only_problem(with_last_backup("2026-11-29T10:59:59Z"))
    assert (
        "2026-11-29T10:59:59Z (Cluster status.lastSuccessfulBackup), 1d 1h 1s ago, older "
        "than the 1d 1h allowed" in problem
    )


def test_max_backup_age_overrides_the_schedule_period():
    problem = only_problem(assess(max_backup_age=timedelta(hours=6)))
    assert "11h 52m 19s ago, older than the 6h allowed (max_backup_age 6h)" in problem


def test_a_weekday_schedule_is_not_flagged_over_the_weekend_gap():
    monday_morning = datetime(2026, 11, 30, 1, 0, 0, tzinfo=UTC)
    cluster, fridays = backed_up_at("2026-11-27T02:10:00Z")
    health = assess(
        cluster,
        [scheduled("0 0 2 * * 1-5", last="2026-11-27T02:00:00Z")],
        fridays,
        now=monday_morning,
    )
    assert health.ok, health.problems
    assert health.facts["schedules"][0]["period"] == "3d"
    # Monday 02:30: Monday's backup is still running, Friday's is the newest: still fine
    during = assess(
        cluster,
        [scheduled("0 0 2 * * 1-5", last="2026-11-30T02:00:00Z")],
        fridays,
        now=datetime(2026, 11, 30, 2, 30, tzinfo=UTC),
    )
    assert during.ok, during.problems
    # Tuesday 03:30 with Friday's still the newest: Monday's run did not complete
    late = assess(
        cluster,
        [scheduled("0 0 2 * * 1-5", last="2026-12-01T02:00:00Z")],
        fridays,
        now=datetime(2026, 12, 1, 3, 30, tzinfo=UTC),
    )
    assert "older than the 1d 1h allowed" in only_problem(late)


def test_no_successful_backup_at_all_fails():
    cluster = in_tree_cluster()
    for key in ("lastSuccessfulBackup", "lastSuccessfulBackupByMethod"):
        del cluster["status"][key]
    problem = only_problem(assess(cluster, backups=[]))
    assert problem == (
        "Cluster production/pg has no successful backup at all (no Cluster "
        "status.lastSuccessfulBackup, no completed Backup object): take one now with "
        "`kubectl cnpg backup -n production pg` and find out why none exists."
    )


def test_no_successful_plugin_backup_names_the_object_store_and_the_plugin_command():
    store = object_store({"pg-2026": {"firstRecoverabilityPoint": "2026-11-16T00:05:03Z"}})
    problem = only_problem(assess_plugin(backups=[], object_store=store))
    assert problem == (
        "Cluster production/pg has no successful backup at all (no Cluster "
        "status.lastSuccessfulBackup, no ObjectStore recovery window for server pg-2026, no "
        "completed Backup object): take one now with `kubectl cnpg backup -n production pg "
        f"-m plugin --plugin-name {PLUGIN}` and find out why none exists."
    )


def test_the_object_store_window_of_plugin_v0_5_0_is_read_despite_its_misspelling():
    store = object_store(
        {
            "pg-2026": {
                "firstRecoverabilityPoint": "2026-11-16T00:05:03Z",
                "lastSuccussfulBackupTime": "2026-11-30T00:07:41Z",
            }
        }
    )
    health = assess_plugin(backups=[], object_store=store)
    assert health.ok, health.problems
    assert health.facts["last_successful_backup"]["source"].endswith(
        "pg-2026.lastSuccussfulBackupTime"
    )


# -- rule 3: the first recoverability point ----------------------------------------------------


def test_no_first_recoverability_point_fails():
    cluster = in_tree_cluster()
    for key in ("firstRecoverabilityPoint", "firstRecoverabilityPointByMethod"):
        del cluster["status"][key]
    health = assess(cluster)
    assert only_problem(health) == (
        "Cluster production/pg has no first recoverability point (Cluster "
        "status.firstRecoverabilityPoint is not set), so there is nothing to recover to: a base "
        "backup must complete with WAL archiving working."
    )
    assert health.facts["first_recoverability_point"]["time"] is None


def test_an_object_store_window_for_another_server_name_is_named_in_the_problem():
    store = object_store(
        {
            "pg": {
                "firstRecoverabilityPoint": "2026-11-16T00:05:03Z",
                "lastSuccessfulBackupTime": "2026-11-30T00:07:41Z",
            }
        }
    )
    health = assess_plugin(object_store=store)
    assert only_problem(health) == (
        "Cluster production/pg has no first recoverability point (Cluster "
        "status.firstRecoverabilityPoint is not set; ObjectStore pg-store has no "
        "status.serverRecoveryWindow for server pg-2026 (it has: pg) — check the serverName), so "
        "there is nothing to recover to: a base backup must complete with WAL archiving working."
    )
    assert health.facts["last_successful_backup"]["source"].startswith("Backup ")


def test_a_plugin_cluster_without_its_object_store_says_to_read_it():
    health = assess_plugin(object_store=None)
    assert only_problem(health).startswith(
        "Cluster production/pg has no first recoverability point (Cluster "
        "status.firstRecoverabilityPoint is not set; the plugin keeps it in ObjectStore "
        "pg-store, which was not read — read it and pass it)"
    )
    assert health.warnings[0].startswith(
        "Cluster production/pg backs up through the barman-cloud plugin"
    )
    assert health.facts["retention_policy"]["note"] == "unknown: ObjectStore pg-store was not read"


# -- rule 4: conditions ------------------------------------------------------------------------


def test_archiving_condition_false_fails_quoting_its_reason_and_message():
    cluster = in_tree_cluster()
    cluster["status"]["conditions"][1] = condition(
        "ContinuousArchiving",
        "False",
        "ContinuousArchivingFailing",
        "unexpected failure invoking barman-cloud-wal-archive: exit status 1",
    )
    problem = only_problem(assess(cluster))
    assert problem == (
        "WAL archiving of Cluster production/pg is not working: condition ContinuousArchiving "
        "is False (reason ContinuousArchivingFailing: unexpected failure invoking "
        "barman-cloud-wal-archive: exit status 1); fix the archive (credentials, bucket, "
        "destinationPath/serverName, 'Expected empty archive') — until then recovery stops at "
        "the last archived WAL."
    )


def test_a_missing_archiving_condition_counts_as_unknown_and_fails():
    cluster = in_tree_cluster()
    del cluster["status"]["conditions"][1]
    assert only_problem(assess(cluster)).startswith(
        "Cluster production/pg reports no ContinuousArchiving condition, so WAL archiving has "
        "never been confirmed"
    )


def test_last_backup_succeeded_false_fails_quoting_its_reason():
    cluster = in_tree_cluster()
    cluster["status"]["conditions"][2] = condition(
        "LastBackupSucceeded",
        "False",
        "LastBackupFailed",
        "can't execute backup: instance manager was restarted during backup",
    )
    assert only_problem(assess(cluster)) == (
        "The last backup of Cluster production/pg failed: condition LastBackupSucceeded is "
        "False (reason LastBackupFailed: can't execute backup: instance manager was restarted "
        "during backup); fix the cause and take a new backup."
    )


# -- rule 5: the newest Backup object ----------------------------------------------------------


def test_a_failed_newest_backup_fails_quoting_its_error():
    failed = backup(
        "pg-manual-1",
        phase="failed",
        started="2026-11-30T09:00:00Z",
        stopped=None,
        error="no barmanObjectStore section defined on the target cluster",
    )
    problem = only_problem(assess(backups=[backup(), failed]))
    assert problem == (
        "The newest Backup of Cluster production/pg, production/pg-manual-1, is in phase "
        "failed: no barmanObjectStore section defined on the target cluster. Read `kubectl "
        "describe backup -n production pg-manual-1` and the instance logs, fix the cause, then "
        "take a new backup."
    )


def test_a_newest_backup_failing_on_wal_archiving_fails():
    failing = backup(
        "pg-manual-2",
        phase="walArchivingFailing",
        started="2026-11-30T09:00:00Z",
        stopped=None,
        error="WAL archiving is failing: check ContinuousArchiving",
    )
    assert (
        "is in phase walArchivingFailing: WAL archiving is failing: check "
        "ContinuousArchiving." in only_problem(assess(backups=[backup(), failing]))
    )


def test_an_older_failed_backup_followed_by_a_completed_one_passes():
    failed = backup(
        "pg-daily-20261129000000",
        phase="failed",
        started="2026-11-29T00:00:02Z",
        stopped=None,
        error="instance manager was restarted during backup",
    )
    health = assess(backups=[failed, backup()])
    assert health.ok, health.problems
    assert [b["phase"] for b in health.facts["backups"]["newest"]] == ["completed", "failed"]


# -- rule 6: retention -------------------------------------------------------------------------


def test_no_retention_policy_is_a_note_not_a_failure():
    cluster = in_tree_cluster()
    del cluster["spec"]["backup"]["retentionPolicy"]
    health = assess(cluster)
    assert health.ok, health.problems
    assert health.facts["retention_policy"]["value"] is None
    assert health.facts["retention_policy"]["note"].startswith(
        "no retention policy (Cluster spec.backup.retentionPolicy is not set)"
    )
    assert health.warnings == [
        (
            "Cluster production/pg has no retention policy (Cluster spec.backup.retentionPolicy is "
            "not set): backups and WAL are kept forever and the bucket grows without bound; set "
            "one, e.g. '30d'."
        )
    ]


# -- robustness --------------------------------------------------------------------------------


def test_garbage_status_never_raises_and_is_reported():
    cluster = in_tree_cluster()
    cluster["status"] |= {
        "lastSuccessfulBackup": "yesterday",
        "firstRecoverabilityPoint": 42,
        "lastSuccessfulBackupByMethod": "nope",
        "conditions": "broken",
    }
    del cluster["status"]["firstRecoverabilityPointByMethod"]
    sb = scheduled(last="2026-13-45T99:00:00Z")
    weird = {
        "kind": "Backup",
        "spec": {"cluster": {"name": "pg"}},
        "status": {"phase": ["x"], "stoppedAt": {"a": 1}},
    }
    health = assess(cluster, [sb, None, "junk"], [weird, backup(stopped="soon")])
    json.dumps(health.to_dict())
    fields = {u["field"] for u in health.facts["unparseable"]}
    assert {
        "Cluster status.lastSuccessfulBackup",
        "Cluster status.firstRecoverabilityPoint",
        "ScheduledBackup production/pg-daily status.lastScheduleTime",
    } <= fields
    assert (
        "Cluster status.lastSuccessfulBackup is not an RFC 3339 time ('yesterday'); it was "
        "treated as missing." in health.warnings
    )
    joined = "\n".join(health.problems)
    assert "has no successful backup at all" in joined
    assert "has no first recoverability point" in joined
    assert "reports no ContinuousArchiving condition" in joined


def test_nothing_but_garbage_still_gives_a_verdict():
    health = assess_backups("not a cluster", None, 7, now=NOW)
    assert not health.ok
    assert health.problems == [
        (
            "The Cluster document has no metadata.name, so its ScheduledBackups and Backups cannot "
            "be matched: pass the Cluster as `kubectl get cluster NAME -n NS -o json` prints it."
        ),
        (
            "Cluster ? reports no ContinuousArchiving condition, so WAL archiving has never been "
            "confirmed and point-in-time recovery is unproven: check the archive configuration and "
            "the instance logs (archive_command)."
        ),
        (
            "Cluster ? has no successful backup at all (no Cluster status.lastSuccessfulBackup, no "
            "completed Backup object): take one now with `kubectl cnpg backup CLUSTER` and find "
            "out why none exists."
        ),
        (
            "Cluster ? has no first recoverability point (Cluster status.firstRecoverabilityPoint "
            "is not set), so there is nothing to recover to: a base backup must complete with WAL "
            "archiving working."
        ),
    ]


def test_the_inputs_are_not_modified():
    cluster, schedules, backups = in_tree_cluster(), [scheduled()], [backup()]
    before = copy.deepcopy((cluster, schedules, backups))
    assess(cluster, schedules, backups)
    assert (cluster, schedules, backups) == before
