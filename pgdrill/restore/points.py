"""Restore point names: unique per run, within PostgreSQL's limit."""

from __future__ import annotations

import hashlib

# NAMEDATALEN - 1: pg_create_restore_point refuses a longer name
MAX_RESTORE_POINT_NAME = 63


def unique_restore_point_name(name: str, run_id: str) -> str:
    """`name@run_id`, or a shorter `name@<hash of run_id>` when that exceeds PostgreSQL's
    limit: a restore point name is not unique in the WAL, and recovery stops at the *first*
    one of that name after the backup, so every run writes its own."""
    unique = f"{name}@{run_id}"
    if len(unique.encode()) <= MAX_RESTORE_POINT_NAME:
        return unique
    return f"{name[:40]}@{hashlib.sha256(run_id.encode()).hexdigest()[:16]}"
