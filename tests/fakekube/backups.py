"""Backups as the fake CNPG operator plays them: CNPG's refusals for a Cluster without the
backup method, one real barman-cloud base backup of the current primary at a time (run in a
worker), the Backup's status as CNPG fills it, the recovery window and the
LastBackupSucceeded condition."""

from __future__ import annotations

from concurrent.futures import Future

from .cnpg import DONE_BACKUP, PLUGIN, message, seconds
from .errors import NotFound
from .kinds import BACKUPS, CLUSTERS, OBJECT_STORES


class BackupsMixin:
    """The Backups of the source Cluster. A mixin of `FakeCnpgOperator` (operator.py): it
    uses the operator's state and helpers (`store`, `sandbox`, `source`, `_backups`, `_done`,
    `_patch_status`, `_condition`, `_log`, ...)."""

    def _reconcile_backups(self) -> None:
        busy = any(not w.done() for w in self._backups.values())
        for backup in sorted(
            self.store.list(BACKUPS, self.namespace),
            key=lambda b: (b["metadata"].get("creationTimestamp") or "", b["metadata"]["name"]),
        ):
            uid = backup["metadata"]["uid"]
            if (backup.get("spec") or {}).get("cluster", {}).get("name") != self.cluster:
                continue
            if uid in self._backups:
                if self._done(uid, self._backups[uid]):
                    self._backup_done(backup, self._backups[uid])
            elif (backup.get("status") or {}).get("phase") not in DONE_BACKUP:
                problem = self._backup_problem(backup) or self.fail_backups
                if problem:
                    self._backup_failed(backup, problem)
                elif busy:  # one backup at a time
                    self._patch_status(BACKUPS, backup, {"phase": "pending"})
                else:
                    self._backup_start(backup)
                    busy = True

    def _backup_problem(self, backup: dict) -> str | None:
        """CNPG's refusals for a Cluster without that backup method (§3), or None."""
        spec = (self.store.get(CLUSTERS, self.namespace, self.cluster) or {}).get("spec") or {}
        method = backup["spec"].get("method") or "barmanObjectStore"
        in_tree = (spec.get("backup") or {}).get("barmanObjectStore")
        if method == "barmanObjectStore" and not in_tree:
            return "no barmanObjectStore section defined on the target cluster"
        wanted = (backup["spec"].get("pluginConfiguration") or {}).get("name")
        if method == "plugin" and wanted not in [p.get("name") for p in spec.get("plugins") or []]:
            return f"cluster {self.cluster} has no plugin configured named {wanted}"
        return None

    def _backup_failed(self, backup: dict, error: str) -> None:
        self._log(
            f"backup {backup['metadata']['name']} failed: {error}", level="error", logger="backup"
        )
        self._patch_status(
            BACKUPS, backup, {"phase": "failed", "error": error, "stoppedAt": seconds()}
        )
        self._backup_condition(False, "LastBackupFailed", error)

    def _backup_start(self, backup: dict) -> None:
        name = backup["metadata"]["name"]
        primary = self.store.get(CLUSTERS, self.namespace, self.cluster)["status"]["currentPrimary"]
        self._patch_status(
            BACKUPS,
            backup,
            {
                "phase": "running",
                "startedAt": seconds(),
                "online": True,
                "method": backup["spec"].get("method") or "barmanObjectStore",
                "instanceID": {"podName": primary},
            },
        )
        self._backup_condition(False, "BackupStarted", "New Backup starting up")
        self._log(f"backup {name}: barman-cloud-backup of {primary}", logger="backup")
        self._backups[backup["metadata"]["uid"]] = self._workers.submit(
            lambda: (self.sandbox.backup(timeout=self.backup_timeout), self.sandbox.list_backups())
        )

    def _backup_done(self, backup: dict, work: Future) -> None:
        if work.exception() is not None:
            return self._backup_failed(backup, message(work.exception()))
        taken, catalog = work.result()
        status = {
            "phase": "completed",
            "backupId": taken.id,
            "backupName": taken.name or f"backup-{taken.id}",
            "beginLSN": taken.begin_lsn,
            "endLSN": taken.end_lsn,
            "beginWal": taken.begin_wal,
            "endWal": taken.end_wal,
            "startedAt": seconds(taken.begin_time),
            "stoppedAt": seconds(taken.end_time),
            "majorVersion": self.major,
        }
        if (backup["spec"].get("method") or "barmanObjectStore") == "barmanObjectStore":
            status |= {
                "destinationPath": self.source.destination_path,
                "serverName": self.source.server_name,
                "endpointURL": self.source.endpoint_url,
            }
        else:  # plugin backups leave destinationPath/serverName empty (§3)
            status["pluginMetadata"] = {"pluginName": PLUGIN, "timeline": str(taken.timeline)}
        try:
            self._patch_status(BACKUPS, backup, status)
        except NotFound:
            return
        self._log(f"backup {backup['metadata']['name']} completed: {taken.id}", logger="backup")
        self._recovery_window(catalog)
        self._backup_condition(True, "LastBackupSucceeded", "Backup was successful")

    def _recovery_window(self, catalog) -> None:
        """In-tree: Cluster status; plugin: the ObjectStore's status (§2)."""
        done = [b for b in catalog if b.completed and b.end_time]
        if not done:
            return
        first, last = seconds(done[0].end_time), seconds(done[-1].end_time)
        if self.style == "in-tree":
            self.store.patch(
                CLUSTERS,
                self.namespace,
                self.cluster,
                {"status": {"firstRecoverabilityPoint": first, "lastSuccessfulBackup": last}},
            )
        else:
            self.store.patch(
                OBJECT_STORES,
                self.namespace,
                self.source.object_store,
                {
                    "status": {
                        "serverRecoveryWindow": {
                            self.source.server_name: {
                                "firstRecoverabilityPoint": first,
                                "lastSuccessfulBackupTime": last,
                            }
                        }
                    }
                },
            )

    def _backup_condition(self, ok: bool, reason: str, note: str) -> None:
        cluster = self.store.get(CLUSTERS, self.namespace, self.cluster)
        conditions = (cluster.get("status") or {}).get("conditions") or []
        self.store.patch(
            CLUSTERS,
            self.namespace,
            self.cluster,
            {
                "status": {
                    "conditions": [
                        *[c for c in conditions if c["type"] != "LastBackupSucceeded"],
                        self._condition(conditions, "LastBackupSucceeded", ok, reason, note),
                    ]
                }
            },
        )
