"""Lost acknowledged writes on a live instance: the ack log of the run's load against the
ledger table of a restored copy or of the healed primary."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import psycopg

from pgdrill.core.errors import BadInput
from pgdrill.core.model import Instance
from pgdrill.load.acklog import read_acks
from pgdrill.targets.base import Target
from pgdrill.verification.rpo import RpoReport, measure_rpo

ACK_LOG = "acks.csv"


def ack_log(run_dir: Path) -> Path:
    return run_dir / ACK_LOG


def present_writes(target: Target, instance: Instance) -> set[tuple[str, int]]:
    with target.connect(instance, "app") as conn:
        try:
            rows = conn.execute("SELECT client_id, seq FROM pgdrill_ledger").fetchall()
        except psycopg.errors.UndefinedTable:
            return set()
    return {(client, int(seq)) for client, seq in rows}


def restore_reference(context: dict) -> tuple[float, str]:
    """The instant the restored copy is supposed to be complete up to (see
    pgdrill.verification.rpo)."""
    restore = context.get("restore")
    if not restore:
        raise BadInput(
            "there is no restore in this run to measure RPO on",
            fix="run actions.restore.restore_latest_backup first",
        )
    if not restore.get("started_at"):
        raise BadInput(
            "the restore of this run never completed (see its activity in the "
            "journal), so there is no restored copy to measure RPO on",
            fix="fix what stopped the restore, then run the drill again",
        )
    target = restore["target"]
    if target["kind"] == "latest":
        return datetime.fromisoformat(restore["started_at"]).timestamp(), "restore start"
    if target["kind"] == "time":
        return datetime.fromisoformat(target["time"]).timestamp(), "recovery target time"
    if target["kind"] == "restore_point":
        point = (context.get("restore_points") or {}).get(target["name"])
        if not point:
            raise BadInput(
                f"restore point {target['name']!r} was not created in this run, so "
                "the instant it stands for is unknown",
                fix="create it with actions.backup.mark_restore_point",
            )
        return datetime.fromisoformat(point["time"]).timestamp(), "restore point"
    raise BadInput(
        "RPO cannot be measured for an LSN recovery target (no time to compare "
        "acknowledgements with)",
        fix="use a time or a named restore point",
    )


def lost_writes_on(
    target: Target,
    instance: Instance,
    run_dir: Path,
    reference: float | None,
    reference_kind: str,
    *,
    witnesses_before: float | None = None,
    source: Instance | None = None,
) -> RpoReport:
    """Read the ack log *before* the copy, so every ack read was committed before the query.
    `reference=None` means "now": every acknowledged write should be there (failover).
    `witnesses_before`: the fault's instant, for a copy written after it (pgdrill.verification.rpo);
    `source`: the source primary of a restored copy, whose own losses are not the copy's."""
    log = ack_log(run_dir)
    if not log.exists():
        raise BadInput(
            f"no ack log at {log}: there was no load in this run",
            fix="start it with actions.load.start_load",
        )
    snapshot = time.time()
    acks = read_acks(log)
    present = present_writes(target, instance)
    on_source = present_writes(target, source) if source is not None else None
    return measure_rpo(
        acks,
        present,
        snapshot if reference is None else reference,
        reference_kind=reference_kind,
        witnesses_before=witnesses_before,
        source=on_source,
    )
