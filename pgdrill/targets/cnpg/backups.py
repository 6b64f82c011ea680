"""The cnpg target's backups: a Backup object waited for, the object store's catalog, the
verify-backups step, and restore points looked up in the primary's WAL by exec."""

from __future__ import annotations

from datetime import UTC, datetime

from pgdrill.core.console import say
from pgdrill.core.errors import PgdrillError, TargetError, WalNotAvailable
from pgdrill.core.model import Backup
from pgdrill.core.waiting import poll_until
from pgdrill.credentials.s3client import endpoint_fix
from pgdrill.credentials.secret import redact
from pgdrill.targets.cnpg import catalog
from pgdrill.targets.cnpg.backup_health import FAILED_PHASES
from pgdrill.targets.cnpg.config import CONTAINER
from pgdrill.targets.cnpg.kube import (
    CNPG_GROUP,
    CNPG_VERSION,
    PLUGIN_GROUP,
    PLUGIN_VERSION,
)
from pgdrill.targets.cnpg.manifests import backup_manifest

# phases after which a Backup never changes: completed, or one of the failures (CNPG >= 1.30
# ends a Backup it cannot take at all in `invalid backup definition`)
BACKUP_DONE_PHASES = ("completed", *FAILED_PHASES)


class CnpgBackups:
    """Mixed into CnpgTarget (pgdrill.targets.cnpg.target), whose state it uses: config,
    kube, and the instance/connection helpers."""

    def backup(self, *, timeout: float = 900) -> Backup:
        source = self.source()
        name = f"{self.config.cluster[:30]}-pgdrill-{datetime.now(UTC):%Y%m%d%H%M%S}"
        doc = backup_manifest(source, name)
        self.kube.create_custom(doc)
        say(f"created Backup {self.config.namespace}/{name} (method {doc['spec']['method']})")
        last = {"phase": None}

        def finished() -> dict | None:
            obj = self.kube.get_custom(
                CNPG_GROUP, CNPG_VERSION, self.config.namespace, "backups", name
            )
            phase = (obj.get("status") or {}).get("phase")
            if phase != last["phase"]:
                last["phase"] = phase
                say(f"  Backup {name}: {phase or 'pending'}")
            return obj if phase in BACKUP_DONE_PHASES else None

        try:
            obj = poll_until(
                finished, timeout=timeout, interval=1, what=f"Backup {name} to complete"
            )
        except PgdrillError as exc:
            raise TargetError(
                f"Backup {self.config.namespace}/{name} did not complete in "
                f"{timeout:.0f}s (phase {last['phase'] or 'pending'})",
                fix="kubectl describe backup; read the operator's log",
            ) from exc
        backup = catalog.from_backup_object(obj)
        if not backup.completed:
            status = obj.get("status") or {}
            raise TargetError(
                f"Backup {self.config.namespace}/{name} ended "
                f"{status.get('phase')}: {status.get('error') or 'no error given'}",
                fix="kubectl describe backup "
                + name
                + " -n "
                + self.config.namespace
                + "; check ContinuousArchiving and "
                "the object store credentials",
            )
        return self._with_catalog_facts(backup)

    def _with_catalog_facts(self, backup: Backup) -> Backup:
        """The Backup object's facts completed from the object store's backup.info (LSNs,
        WAL, timeline, size): the object may lack some (plugin backups, older operators)."""
        import dataclasses

        stored = {b.id: b for b in self.list_backups()}.get(backup.id)
        if stored is None:
            raise TargetError(
                f"Backup {backup.name} completed with backupId {backup.id}, but "
                f"{self.source().archive} holds no such backup",
                fix="check the Cluster's destinationPath and serverName",
            )
        fields = (
            "begin_time",
            "end_time",
            "begin_wal",
            "end_wal",
            "timeline",
            "begin_lsn",
            "end_lsn",
            "size",
        )
        return dataclasses.replace(
            backup, **{f: getattr(backup, f) or getattr(stored, f) for f in fields}
        )

    def requeue_wal(self, segments: list[str]) -> tuple[str, dict[str, str]]:
        """By exec in the primary pod's postgres container (its $PGDATA), so the cluster's
        own archive_command uploads them (pgdrill.pg.archive_status)."""
        from pgdrill.pg import archive_status

        primary = self.primary()
        out, err, code = self.kube.exec(
            self.config.namespace, primary.name, CONTAINER, archive_status.requeue_command(segments)
        )
        if code != 0:
            raise TargetError(
                f"re-queueing WAL for archiving in pod {primary.name} failed "
                f"(exit {code}): {(err or out).strip()[:300]}",
                fix="the drill needs pods/exec on the instance pods",
            )
        return primary.name, archive_status.parse_requeue(out, segments)

    def list_backups(self) -> list[Backup]:
        """From the object store (what a restore can use), oldest first."""
        from botocore.exceptions import BotoCoreError, ClientError

        location = self.bucket_location()
        credentials = location.credentials
        try:
            return catalog.list_store_backups(
                location.client(), location.destination_path, location.server_name
            )
        except (BotoCoreError, ClientError) as exc:
            raise TargetError(
                f"cannot list the backups in {location.archive} at "
                f"{location.endpoint}: "
                f"{redact(str(exc), credentials.secret_values())}",
                fix=endpoint_fix(location.endpoint, self.config.s3_endpoint_url)
                + f"; check the credentials in {credentials.source}",
            ) from None

    def backup_health(self, max_backup_age_seconds: float | None = None) -> dict:
        """Step 1 of the safe workflow on CNPG: ScheduledBackups present, not suspended and on
        time, the last successful backup recent, a first recoverability point, archiving
        working (pgdrill.targets.cnpg.backup_health)."""
        from datetime import timedelta

        from pgdrill.targets.cnpg.backup_health import assess_backups

        ns = self.config.namespace
        cluster = self._cluster()
        source = self.source(cluster)
        store = (
            self.kube.get_custom(
                PLUGIN_GROUP, PLUGIN_VERSION, ns, "objectstores", source.object_store
            )
            if source.object_store
            else None
        )
        health = assess_backups(
            cluster,
            self.kube.list_custom(CNPG_GROUP, CNPG_VERSION, ns, "scheduledbackups"),
            self.kube.list_custom(CNPG_GROUP, CNPG_VERSION, ns, "backups"),
            now=datetime.now(UTC),
            object_store=store,
            server_name=source.server_name,
            max_backup_age=(
                timedelta(seconds=float(max_backup_age_seconds)) if max_backup_age_seconds else None
            ),
        )
        return health.to_dict()

    def archive(self) -> str:
        return self.source().archive

    def bucket_location(self):
        """The source cluster's archive (destinationPath, serverName, endpoint) read with
        the SOPS credentials."""
        from pgdrill.credentials.location import BucketLocation

        source = self.source()
        credentials = self.s3_credentials()
        return BucketLocation(
            source.destination_path,
            source.server_name,
            credentials,
            self.config.s3_endpoint(source.endpoint_url, credentials.endpoint),
            self.config.s3_options(),
        )

    def backup_destination(self) -> str:
        source = self.source()
        return (
            f"{source.archive} (destinationPath {source.destination_path}, serverName "
            f"{source.server_name}, {source.style} object store)"
        )

    def find_restore_point(self, name: str, since_lsn: str) -> str | None:
        """pg_waldump by exec in the primary's pod over its pg_wal (pgdrill.restore.walscan); no
        pods/exec permission or no pg_waldump there: "cannot tell", never a refusal."""
        from pgdrill.restore import walscan

        primary = self.primary()
        where = f"pod {self.config.namespace}/{primary.name} $PGDATA/pg_wal"

        def dump(links: dict[str, str], args: list[str]) -> tuple[int, str, str]:
            try:
                out, err, code = self.kube.exec(
                    self.config.namespace,
                    primary.name,
                    CONTAINER,
                    walscan.pod_dump_script(links, args),
                    timeout=walscan.WALDUMP_TIMEOUT,
                )
            except PgdrillError as exc:
                raise WalNotAvailable(f"cannot run pg_waldump in {where}: {exc.message}") from None
            return code, out, err

        with self.connect(primary, "postgres") as conn:
            return walscan.find_restore_point(conn, name, since_lsn, dump, where)
