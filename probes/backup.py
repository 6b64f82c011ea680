"""Backup probes: is there a recent completed backup, and has a recent one been proven by a
passing restore drill (step 1 of the safe workflow)."""

from __future__ import annotations

from datetime import UTC, datetime

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target
from pgdrill.core.console import say
from pgdrill.core.errors import TargetError
from pgdrill.evidence import ledger, policy

__all__ = [
    "latest_backup_age_seconds",
    "latest_backup_verified",
    "latest_backup_within",
    "backups_healthy",
]


@activity
def latest_backup_age_seconds(
    configuration: Configuration = None, secrets: Secrets = None
) -> float:
    """Seconds since the newest completed backup in the object store ended
    (an error if there is none)."""
    backups = [b for b in ready_target(configuration, secrets).list_backups() if b.completed]
    if not backups:
        raise TargetError(
            "the object store holds no completed backup",
            fix="take one (actions.backup.trigger_backup, or CNPG's ScheduledBackup)",
        )
    newest = max(backups, key=lambda b: b.end_time)
    return round((datetime.now(UTC) - newest.end_time).total_seconds(), 3)


@activity
def latest_backup_within(
    max_age_seconds: int = 86400, configuration: Configuration = None, secrets: Secrets = None
) -> bool:
    """True when the newest completed backup ended less than `max_age_seconds` ago
    (default one day, the usual scheduled-backup period)."""
    try:
        age = latest_backup_age_seconds(configuration=configuration)
    except Exception as exc:
        say(f"no recent backup: {exc}")
        return False
    if age > max_age_seconds:
        say(f"the newest backup is {age:.0f}s old, more than {max_age_seconds}s")
    return age <= max_age_seconds


@activity
def latest_backup_verified(
    max_age_days: int = 35, configuration: Configuration = None, secrets: Secrets = None
) -> bool:
    """True when a backup that ended within the last `max_age_days` days (default 35: monthly
    drills with some slack) was restored by a passing drill recorded in the run ledger
    (reports/ledger.jsonl, verified first) for this very cluster (same PostgreSQL system
    identifier). No backup without restore."""
    entries = ledger.verified_entries(ledger.default_reports_dir(configuration))
    target = ready_target(configuration, secrets)
    verified = policy.verified_backups(entries, target.cluster_identity())
    reason = policy.backup_gate(
        target.list_backups(), verified, datetime.now(UTC), max_age_days=max_age_days
    )
    if reason:
        say(f"no verified recent backup: {reason}")
    return reason is None


@activity
def backups_healthy(
    max_backup_age_seconds: float = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> bool:
    """Step 1 of the safe workflow, "verify backups", on a CNPG cluster: a ScheduledBackup of
    the cluster exists, is not suspended and ran when its schedule said; the last successful
    backup is recent (within the schedule's period, or `max_backup_age_seconds`); the
    cluster has a first recoverability point; the ContinuousArchiving condition is True and
    the newest Backup did not fail. Everything read goes into the evidence (`backup_health`);
    False (with each problem printed) fails a steady-state hypothesis. CNPG target only."""
    from pgdrill.chaos.activity import run_context
    from pgdrill.core.errors import BadInput

    target = ready_target(configuration, secrets)
    check = getattr(target, "backup_health", None)
    if check is None:
        raise BadInput(
            f"backups_healthy reads CNPG's ScheduledBackups and Cluster status; the "
            f"{target.name} target has none",
            fix="use probes.backup.latest_backup_within on the sandbox",
        )
    health = check(max_backup_age_seconds)
    run_context(configuration).update(backup_health=health)
    for problem in health["problems"]:
        say(f"backups not healthy: {problem}")
    return bool(health["ok"])
