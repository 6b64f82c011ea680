"""Checks a restore is worth starting, made against the target before anything is touched."""

from __future__ import annotations

from pgdrill.core.console import say
from pgdrill.core.errors import BadInput, PgdrillError, TargetError
from pgdrill.restore.plan import backup_start_lsn


def backup_destination(target) -> str | None:
    """The target's bucket and serverName for messages, when it can say."""
    describe = getattr(target, "backup_destination", None)
    try:
        return describe() if describe else None
    except PgdrillError:
        return None


def check_restore_point_in_wal(target, name: str, backup) -> dict:
    """Refuse (BadInput) a restore point that is not in the source's WAL since `backup`
    began; when the target cannot tell (WAL recycled, no begin LSN, the source down: a
    restore must still work then), say so and let the restore go ahead — PostgreSQL's
    replay is then the judge. Returns what was checked."""
    since = backup_start_lsn(backup)
    check = {"name": name, "since_lsn": since, "found_lsn": None, "checked": False, "note": None}
    finder = getattr(target, "find_restore_point", None)
    if since is None or finder is None:
        check["note"] = (
            "backup has no begin LSN" if since is None else "the target cannot search its WAL"
        )
    else:
        try:
            check["found_lsn"] = finder(name, since)
            check["checked"] = True
        except TargetError as exc:  # WalNotAvailable, or the source is down: cannot tell
            check["note"] = exc.message
    if not check["checked"]:
        say(
            f"cannot check restore point {name!r} before restoring ({check['note']}); "
            f"PostgreSQL's replay will tell"
        )
    elif check["found_lsn"] is None:
        raise BadInput(
            f"restore point {name!r} was not created in this run and is not in the "
            f"WAL since backup {backup.id} (began at LSN {since})",
            fix="mark it with actions.backup.mark_restore_point, or check the name",
        )
    else:
        say(
            f"restore point {name!r} is in the WAL at {check['found_lsn']}, after backup "
            f"{backup.id} began ({since})"
        )
    return check
