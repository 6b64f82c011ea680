"""Backup probes: is there a recent completed backup (step 1 of the safe workflow)."""

from __future__ import annotations

from datetime import UTC, datetime

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target
from pgdrill.console import say

__all__ = ["latest_backup_age_seconds", "latest_backup_within"]


@activity
def latest_backup_age_seconds(configuration: Configuration = None,
                              secrets: Secrets = None) -> float:
    """Seconds since the newest completed backup in the object store ended
    (an error if there is none)."""
    backups = [b for b in ready_target(configuration).list_backups() if b.completed]
    if not backups:
        raise ValueError("the object store holds no completed backup")
    newest = max(backups, key=lambda b: b.end_time)
    return round((datetime.now(UTC) - newest.end_time).total_seconds(), 3)


@activity
def latest_backup_within(max_age_seconds: int = 86400, configuration: Configuration = None,
                         secrets: Secrets = None) -> bool:
    """True when the newest completed backup ended less than `max_age_seconds` ago
    (default one day, the usual scheduled-backup period)."""
    try:
        age = latest_backup_age_seconds(configuration=configuration)
    except Exception as exc:  # noqa: BLE001 - reported, the probe answers False
        say(f"no recent backup: {exc}")
        return False
    if age > max_age_seconds:
        say(f"the newest backup is {age:.0f}s old, more than {max_age_seconds}s")
    return age <= max_age_seconds
