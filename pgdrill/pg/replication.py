"""How the primary replicated when a fault hit it: its synchronous_standby_names and each
standby's sync_state (pg_stat_replication). An asynchronous standby can be promoted
without the primary's last acknowledged writes; the evidence says which it was."""

from __future__ import annotations

import psycopg

from pgdrill.core.errors import PgdrillError

SYNCHRONOUS_STATES = ("sync", "quorum")


def describe(setting: str, rows: list[tuple[str, str, str | None]]) -> dict:
    """`rows`: (application_name, state, sync_state) of pg_stat_replication. `synchronous`
    is True when at least one streaming standby confirms commits, False when none does,
    None when the standbys' sync_state cannot be read (it needs pg_read_all_stats)."""
    standbys = [{"name": name, "state": state, "sync_state": sync} for name, state, sync in rows]
    streaming = [s for s in standbys if s["state"] == "streaming"]
    if any(s["sync_state"] in SYNCHRONOUS_STATES for s in streaming):
        synchronous: bool | None = True
    elif streaming and all(s["sync_state"] is None for s in streaming):
        synchronous = None
    else:
        synchronous = False
    return {"synchronous_standby_names": setting, "standbys": standbys, "synchronous": synchronous}


def replication_of(target) -> dict:
    """The current primary's replication, read with SQL; {"error": ...} when it cannot be."""
    try:
        with target.connect(target.primary(), "postgres") as conn:
            setting = conn.execute("SHOW synchronous_standby_names").fetchone()[0]
            rows = conn.execute(
                "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY 1"
            ).fetchall()
    except (psycopg.Error, OSError, PgdrillError) as exc:
        return {
            "error": str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        }
    return describe(setting, [tuple(r) for r in rows])


def asynchronous_hint(replication: dict | None) -> str:
    """The clause a lost-writes reason gains when the primary replicated asynchronously."""
    if not replication or replication.get("synchronous") is not False:
        return ""
    return (
        "; at the fault no standby confirmed commits (synchronous_standby_names "
        f"{replication.get('synchronous_standby_names')!r}): an asynchronous replica "
        "is promoted without the last acknowledged writes. Run the cluster with "
        "spec.postgresql.synchronous (method any, number 1), or set "
        "failover_lost_writes_objective to the loss the team accepts"
    )
