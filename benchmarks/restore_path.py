"""The restore path timed two ways on the same sandbox, the same backup and the same WAL:
pgdrill's (what a drill does: backup, restore into restore-test, prove the position, run the
checklist) and the raw tools' (barman-cloud-backup; barman-cloud-restore + PostgreSQL
recovery with the same restore_command; a bare count(*) of every table), plus the WAL replay
with one barman-cloud-wal-restore per segment against the parallel fetch."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from pgdrill.core.model import RecoveryTarget
from pgdrill.core.waiting import poll_until
from pgdrill.restore.facts import read_reached_position
from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.restore import WAL_MAX_PARALLEL, recovery_settings, signal_recovery
from pgdrill.targets.sandbox.state import free_port
from pgdrill.verification.checklist import Check, Checklist, run_checklist

DB = "bench"


def load_database(target, scale: int) -> dict:
    """(Re)create database `bench` with pgbench tables at `scale` (logged, so that they are
    in the WAL and the backups) and return its size."""
    cluster, primary = target._cluster(), target.primary()
    with target.connect(primary, "postgres") as conn:
        conn.autocommit = True
        conn.execute(f"DROP DATABASE IF EXISTS {DB}")
        conn.execute(f"CREATE DATABASE {DB}")
    t0 = time.monotonic()
    postgres.run(
        cluster.run_as,
        [
            postgres.binary("pgbench"),
            "-i",
            "-s",
            str(scale),
            "-q",
            "-h",
            primary.host,
            "-p",
            str(primary.port),
            "-U",
            primary.user,
            DB,
        ],
        env=cluster.process_env(),
        timeout=3600,
        what=f"pgbench -i -s {scale}",
    )
    seconds = time.monotonic() - t0
    with target.connect(primary, DB) as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    cluster.wait_archiving(primary.name, timeout=1800)
    return {
        "scale": scale,
        "rows": scale * 100_000,
        "database_bytes": size,
        "load_seconds": round(seconds, 2),
    }


def make_wal(target, fraction: float = 0.1) -> dict:
    """Write after the backup so recovery has WAL to replay: update `fraction` of the
    accounts, then wait until that WAL is archived. Returns the WAL bytes written."""
    cluster, primary = target._cluster(), target.primary()
    with target.connect(primary, DB) as conn:
        conn.autocommit = True
        start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        modulo = max(1, round(1 / fraction))
        conn.execute(
            f"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % {modulo} = 0"
        )
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start,)).fetchone()[
            0
        ]
    cluster.wait_archiving(primary.name, timeout=1800)
    return {"wal_bytes": int(wal)}


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """count(*) of every table of the bench database: the raw path's check."""
    names = [
        r[0]
        for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = "
            "'public'::regnamespace ORDER BY 1"
        ).fetchall()
    ]
    return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}


def raw_backup(target) -> float:
    """barman-cloud-backup of the primary, timed alone."""
    cluster, primary = target._cluster(), target.primary()
    argv = cluster.store.backup_argv(primary.host, primary.port, primary.user)
    t0 = time.monotonic()
    postgres.run(
        cluster.run_as, argv, env=cluster.process_env(), timeout=3600, what="barman-cloud-backup"
    )
    return round(time.monotonic() - t0, 3)


def raw_restore(target, backup_id: str, max_parallel: int) -> dict:
    """barman-cloud-restore, then PostgreSQL recovery to the end of the archive with the
    restore_command pgdrill uses (`max_parallel` segments at a time), then count(*) of every
    table — each step timed. The copy is removed afterwards."""
    cluster = target._cluster()
    home = Path(tempfile.mkdtemp(prefix="pgdrill-bench-raw-"))
    cluster.run_as.chown(home)
    data, spool, port = home / "data", home / "wal-spool", free_port()
    spool.mkdir()
    cluster.run_as.chown(spool)
    env = cluster.process_env(home)
    phases: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        postgres.run(
            cluster.run_as,
            cluster.store.restore_argv(backup_id, data),
            env=env,
            timeout=3600,
            what="barman-cloud-restore",
        )
        phases["fetch"] = time.monotonic() - t0
        command = cluster.store.restore_command(max_parallel, spool)
        postgres.append_conf(
            data, recovery_settings(command, RecoveryTarget.parse()), header="bench raw restore"
        )
        signal_recovery(data)
        cluster.run_as.chown_tree(data)
        t0 = time.monotonic()
        postgres.start(cluster.run_as, data, port, home, home / "log", env, wait=False)

        def promoted() -> bool:
            try:
                with psycopg.connect(
                    host="127.0.0.1",
                    port=port,
                    user="postgres",
                    dbname="postgres",
                    connect_timeout=2,
                ) as conn:
                    return conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]
            except psycopg.OperationalError:
                return False

        poll_until(promoted, timeout=3600, interval=0.1, what="the raw restore to promote")
        phases["replay"] = time.monotonic() - t0
        t0 = time.monotonic()
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname=DB) as conn:
            counts = table_counts(conn)
        phases["checks"] = time.monotonic() - t0
    finally:
        postgres.stop(cluster.run_as, data, mode="immediate")
        shutil.rmtree(home, ignore_errors=True)
    return {
        "max_parallel": max_parallel,
        "phases": _rounded(phases),
        "seconds": round(sum(phases.values()), 3),
        "counts": counts,
    }


def pgdrill_restore(target, expected_counts: dict[str, int]) -> dict:
    """What a drill does after its backup: the newest backup restored into restore-test
    (target.restore: fetch, replay, promote, isolation check), where recovery stopped
    proven from the timeline history, and a checklist of every table's row count."""
    backup = target.list_backups()[-1]
    t0 = time.monotonic()
    result = target.restore(backup, RecoveryTarget.parse(), timeout=3600)
    restored = time.monotonic() - t0
    t0 = time.monotonic()
    with target.connect(result.instance, "postgres") as conn:
        reached = read_reached_position(conn)
    checklist = Checklist(
        path="bench",
        database=DB,
        checks=tuple(
            Check(f"{name}-rows", f'SELECT count(*) FROM "{name}"', count)
            for name, count in expected_counts.items()
        ),
    )
    with target.connect(result.instance, DB) as conn:
        results = run_checklist(conn, checklist)
    checks = time.monotonic() - t0
    target.cleanup_restore()
    if not all(r.passed for r in results):
        raise RuntimeError(
            "the bench restore failed its checklist: "
            + ", ".join(r.name for r in results if not r.passed)
        )
    return {
        "backup_id": backup.id,
        "phases": {**result.phase_details, "checks": round(checks, 3)},
        "restore_seconds": round(restored, 3),
        "seconds": round(restored + checks, 3),
        "reached": reached.describe(),
        "wal_max_parallel": WAL_MAX_PARALLEL,
    }


def _rounded(phases: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in phases.items()}
