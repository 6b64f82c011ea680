"""Measure the drill's write load: how many acknowledged writes per second it sustains, and
whether its accounting is exact against ground truth read from the source.

    from pgdrill.load.bench import measure_load
    result = measure_load(target, seconds=20)   # a Target, or a libpq conninfo of the primary

Runs the same load a drill runs (`pgdrill.load.runner`, Locust in a subprocess, the drill's
defaults unless told otherwise) with no fault injected, stops it, then reads the ledger rows of
its clients from the source primary. With no fault every acknowledged write must be there:
`lost_write_count_error` is the number that are not (the goal is 0), counted by the same code
the drills count lost writes with (`pgdrill.verification.rpo.measure_rpo`).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from pgdrill.core.errors import TargetError
from pgdrill.load import runner
from pgdrill.load.acklog import Ack, read_acks
from pgdrill.load.pacing import DEFAULT_BATCH, DEFAULT_RATE, DEFAULT_USERS
from pgdrill.verification.rpo import measure_rpo

__all__ = ["measure_load", "slowest_second", "source_rows"]


def measure_load(
    target,
    seconds: float = 20.0,
    *,
    users: int = DEFAULT_USERS,
    rate: float | None = DEFAULT_RATE,
    batch: int = DEFAULT_BATCH,
    dbname: str = "app",
    run_dir: str | os.PathLike | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict:
    """Run the load for `seconds` against `target` and measure it. Returns:

    - acked_writes_per_second: acknowledged writes over the span from the first to the last
      ack; acked_writes_per_second_min: the slowest complete second of that span;
    - acknowledged_writes, transactions_acknowledged, failures, requests;
    - latency_ms {p50, p95, p99}: of write transactions, COMMIT included (Locust's whole-ms
      buckets);
    - lost_write_count_error: acknowledged writes missing from the source primary after the
      load stopped (goal 0), with lost_examples; unacknowledged_rows: rows of the load's
      clients present without an ack (writes whose outcome the load never learnt: expected
      0 without faults, and never an error: they under-count, they do not invent losses);
    - load_cpu_percent: CPU time of the load process (Locust) over its run, in % of one core;
    - users, rows_per_transaction, target_writes_per_second, synchronous_commit (as the
      load's sessions see it), seconds, run_dir (None when a temporary one was removed).

    `target`: a `pgdrill.targets.base.Target` (its `load_connection`, ground truth through
    `connect(primary())`), or a libpq connection string that lands on the primary (with
    `extra_env` for libpq, e.g. PGPASSWORD, given to the load and used for the ground truth).
    `run_dir`: where the ack log and Locust's files go (kept); default a temporary folder,
    removed afterwards."""
    if isinstance(target, str):
        conninfo, env = target, dict(extra_env or {})

        def source() -> psycopg.Connection:
            kwargs = {"password": env["PGPASSWORD"]} if env.get("PGPASSWORD") else {}
            return psycopg.connect(conninfo, autocommit=True, **kwargs)
    else:
        connection = target.load_connection(dbname)
        conninfo, env = connection.conninfo, {**connection.env, **(extra_env or {})}

        def source() -> psycopg.Connection:
            return target.connect(target.primary(), dbname)

    with source() as conn:
        runner.create_ledger(conn)
    keep = run_dir is not None
    folder = Path(run_dir) if keep else Path(tempfile.mkdtemp(prefix="pgdrill-load-bench-"))
    try:
        handle = runner.start(
            conninfo, folder, users=users, spawn_rate=users, rate=rate, batch=batch, extra_env=env
        )
        deadline = time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            if not runner.running(handle):
                break
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        cpu = _cpu_seconds(handle.pid)
        ran = time.time() - handle.started_at
        summary = runner.stop(handle)
        if cpu is None:
            raise TargetError(
                "the load stopped before the measurement ended", fix=f"read {handle.locust_log}"
            )
        acks = read_acks(handle.ack_log, start=handle.ack_offset)
        with source() as conn:
            present = source_rows(conn, {a.client_id for a in acks})
            sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
        checked = time.time()
        report = measure_rpo(
            acks, present, checked, reference_kind="source primary after the load stopped"
        )
        acked = {(a.client_id, a.seq) for a in acks}
        return {
            "acked_writes_per_second": summary["writes_per_second"],
            "acked_writes_per_second_min": slowest_second(acks),
            "acknowledged_writes": len(acks),
            "transactions_acknowledged": len({(a.client_id, a.acked_at) for a in acks}),
            "failures": summary["failures"],
            "requests": summary["requests"],
            "latency_ms": summary["write_latency_ms"],
            "lost_write_count_error": report.lost_writes,
            "lost_examples": report.lost_examples,
            "unacknowledged_rows": len(present - acked),
            "load_cpu_percent": round(100.0 * cpu / ran, 1) if ran > 0 else None,
            "users": summary["users"],
            "rows_per_transaction": summary["rows_per_transaction"],
            "target_writes_per_second": summary["target_writes_per_second"],
            "synchronous_commit": sync,
            "seconds": round(acks[-1].acked_at - acks[0].acked_at, 3) if acks else 0.0,
            "run_dir": str(folder) if keep else None,
        }
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def source_rows(conn: psycopg.Connection, clients: set[str]) -> set[tuple[str, int]]:
    """`(client_id, seq)` of every ledger row of `clients` (the primary key's prefix)."""
    if not clients:
        return set()
    rows = conn.execute(
        "SELECT client_id, seq FROM pgdrill_ledger WHERE client_id = ANY(%s)", (sorted(clients),)
    ).fetchall()
    return {(client, int(seq)) for client, seq in rows}


def slowest_second(acks: list[Ack]) -> int | None:
    """The fewest acks in any complete one-second window from the first ack on (None for a
    span shorter than one second)."""
    if not acks:
        return None
    first = min(a.acked_at for a in acks)
    whole = math.floor(max(a.acked_at for a in acks) - first)
    if whole < 1:
        return None
    counts = [0] * whole
    for ack in acks:
        slot = math.floor(ack.acked_at - first)
        if slot < whole:
            counts[slot] += 1
    return min(counts)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
