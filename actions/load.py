"""Write load during a drill: Locust users inserting into `pgdrill_ledger` on whichever
instance is the primary, with an exact log of every acknowledged write (`acks.csv` in the
run folder) against which lost writes and RPO are counted."""

from __future__ import annotations

import time

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.core.console import say
from pgdrill.core.errors import BadInput
from pgdrill.load import runner
from pgdrill.load.pacing import DEFAULT_BATCH, DEFAULT_RATE

__all__ = ["start_load", "stop_load"]


@activity
def start_load(
    users: int = 4,
    spawn_rate: int = 4,
    duration: int = None,
    rate: float = DEFAULT_RATE,
    batch: int = DEFAULT_BATCH,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict:
    """Start a Locust write load of `users` simulated clients (spawned at `spawn_rate` per
    second) against the cluster's primary, and return once the first write is acknowledged.
    Each client inserts numbered rows into `pgdrill_ledger` (created if missing by the role
    the load writes as — on CNPG the application user, `<cluster>-app` — or, when it belongs
    to another role, granted SELECT and INSERT to that role), `batch`
    rows per transaction, paced so that the whole load commits `rate` rows per second
    (default 400 in transactions of 4), and reads them back; every row whose transaction's
    COMMIT returned is logged in `acks.csv` of the run folder.
    Clients connect the way the target says reaches the primary across a failover (the
    sandbox: all instances with target_session_attrs=read-write; CNPG: the `-rw` service, or
    a port-forward that follows the primary), so after a failover they carry on against the
    new primary.
    `duration`: seconds after which the load stops by itself. Without it the load runs until
    `stop_load` (put it in the rollbacks), capped at one hour, and also stops when the
    Chaos Toolkit process exits.
    Returns pid, users, rate, batch and ack_log."""
    if duration is not None and float(duration) <= 0:
        raise BadInput(f"duration {duration} must be a positive number of seconds")
    ctx = run_context(configuration)
    previous = ctx.read().get("load")
    if previous and runner.running(runner.LoadHandle.from_dict(previous)):
        raise BadInput(
            f"a load already runs in this drill (Locust pid {previous['pid']})",
            fix="stop it with actions.load.stop_load first",
        )
    target = ready_target(configuration, secrets)
    connection = target.load_connection("app")
    with target.connect(target.primary(), "app") as conn:
        ledger = runner.ledger_writable(connection, conn)
    if ledger["granted"]:
        say(
            f"pgdrill_ledger belongs to {ledger['owner']}: granted SELECT, INSERT on it to "
            f"{ledger['role']}, the role the load writes as"
        )
    handle = runner.start(
        connection.conninfo,
        ctx.run_dir,
        users=int(users),
        spawn_rate=float(spawn_rate),
        duration=float(duration) if duration is not None else None,
        rate=float(rate) if rate is not None else None,
        batch=int(batch),
        extra_env=connection.env,
    )
    ctx.update(load=handle.to_dict())
    return {
        "pid": handle.pid,
        "users": handle.users,
        "rate": handle.rate,
        "batch": handle.batch,
        "ack_log": handle.ack_log,
    }


@activity
def stop_load(configuration: Configuration = None, secrets: Secrets = None) -> dict:
    """Stop the load started by `start_load` and record its summary (`load_summary` in the
    evidence): requests, failures, writes_acknowledged, writes_per_second, latency_ms
    (p50/p95/p99; write_latency_ms: write transactions only), duration_seconds, users,
    target_writes_per_second and rows_per_transaction. Returns the summary; returns {} when
    no load runs in this drill, so it is safe in rollbacks."""
    ctx = run_context(configuration)
    data = ctx.read().get("load")
    if not data or data.get("stopped_at"):
        return {}
    summary = runner.stop(runner.LoadHandle.from_dict(data))
    ctx.merge("load", stopped_at=time.time())
    ctx.update(load_summary=summary)
    return summary
