"""Preflight of the experiment's restores: what would make its restore fail for bad input is
found before the first activity — before any fault — not halfway through the drill.

For each `actions.restore.restore_latest_backup` in the method: the object store must hold a
completed backup (unless the method takes one first), a target time must not precede the
oldest backup, and a restore point must either be marked earlier in the same method or be in
the source's WAL since the backup it would restore from."""

from __future__ import annotations

from chaoslib import substitute

from pgdrill.core.model import RecoveryTarget
from pgdrill.restore.checks import backup_destination, check_restore_point_in_wal
from pgdrill.restore.plan import choose_backup


def _python(activity: dict, module: str, func: str) -> dict | None:
    provider = activity.get("provider") or {}
    if (
        provider.get("type") == "python"
        and provider.get("module") == module
        and provider.get("func") == func
    ):
        return provider
    return None


def check_restores(experiment: dict, configuration: dict, target) -> list[dict]:
    """Raise a PgdrillError (one line, with a fix) for a restore that cannot work; return
    what was checked."""
    checked, marked, backup_taken, backups = [], set(), False, None
    for activity in experiment.get("method") or []:
        if _python(activity, "actions.backup", "trigger_backup"):
            backup_taken = True
        mark = _python(activity, "actions.backup", "mark_restore_point")
        if mark:
            marked.add(
                str(
                    substitute(mark.get("arguments") or {}, configuration, {}).get(
                        "name", "pgdrill"
                    )
                )
            )
        restore = _python(activity, "actions.restore", "restore_latest_backup")
        if not restore:
            continue
        args = substitute(restore.get("arguments") or {}, configuration, {})
        recovery = RecoveryTarget.parse(
            args.get("target_time"), args.get("target_lsn"), args.get("restore_point")
        )
        if backup_taken and recovery.kind != "time":
            checked.append(
                {"activity": activity.get("name"), "checked": "after the method's own backup"}
            )
            continue
        if backups is None:
            backups = target.list_backups()
        backup = choose_backup(backups, recovery, where=backup_destination(target))
        entry = {
            "activity": activity.get("name"),
            "target": recovery.to_dict(),
            "backup": backup.id,
        }
        if recovery.kind == "restore_point" and recovery.name not in marked:
            entry["restore_point"] = check_restore_point_in_wal(target, recovery.name, backup)
        checked.append(entry)
    return checked
