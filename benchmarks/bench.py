"""`make bench`: what pgdrill adds to a restore and how a drill grows with the database,
every figure measured side by side in one run on one sandbox.

    make bench                          # ~100 MB and ~1 GB
    BENCH_SIZES=100MB make bench        # one size (names: 100MB, 1GB, 4GB)
    BENCH_4GB=1 make bench              # adds ~4 GB
    BENCH_SMOKE=1 make bench            # the harness on a tiny database (CI-sized, no goals)

Writes reports/bench/<UTC stamp>.json and .md (the table README "Performance" shows). Goals
(issue 12): overhead_ratio <= 1.15, fingerprint_vs_seqscan >= 0.7, fingerprint_vs_naive >= 3,
acked_writes_per_second >= 300, lost_write_count_error == 0, WAL replay with the parallel
fetch >= 2x faster than one process per segment (at 1 GB)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from output import write_results
from restore_path import (
    DB,
    load_database,
    make_wal,
    pgdrill_restore,
    raw_backup,
    raw_restore,
)
from summary import GOALS, judge, markdown

from pgdrill.core.console import say
from pgdrill.targets.sandbox.restore import WAL_MAX_PARALLEL
from pgdrill.targets.sandbox.target import SandboxTarget

SIZES = {"tiny": 1, "100MB": 7, "1GB": 70, "4GB": 280}  # pgbench scale: ~15 MB per unit


def chosen_sizes() -> list[str]:
    if os.environ.get("BENCH_SMOKE"):
        return ["tiny"]
    names = [n.strip() for n in os.environ.get("BENCH_SIZES", "100MB,1GB").split(",") if n]
    if os.environ.get("BENCH_4GB") and "4GB" not in names:
        names.append("4GB")
    unknown = [n for n in names if n not in SIZES]
    if unknown:
        raise SystemExit(f"unknown BENCH_SIZES {unknown}: use {', '.join(SIZES)}")
    return names


def measure_size(target, name: str) -> dict:
    """One database size: load it, back it up both ways, write WAL, restore three ways."""
    say(f"[{name}] loading pgbench at scale {SIZES[name]}")
    info = load_database(target, SIZES[name])
    say(f"[{name}] {info['database_bytes'] / 1e6:.0f} MB; raw barman-cloud-backup")
    raw_backup_s = raw_backup(target)
    say(f"[{name}] pgdrill backup")
    t0 = time.monotonic()
    backup = target.backup(timeout=3600)
    pgdrill_backup_s = round(time.monotonic() - t0, 3)
    say(f"[{name}] writing WAL after the backup")
    wal = make_wal(target)
    say(f"[{name}] raw restore, one barman-cloud-wal-restore per segment")
    serial = raw_restore(target, backup.id, 1)
    say(f"[{name}] raw restore, {WAL_MAX_PARALLEL} segments at a time")
    parallel = raw_restore(target, backup.id, WAL_MAX_PARALLEL)
    say(f"[{name}] pgdrill restore path")
    drill = pgdrill_restore(target, parallel["counts"])
    if drill["backup_id"] != backup.id:
        raise RuntimeError(f"pgdrill restored {drill['backup_id']}, not {backup.id}")
    raw_total = raw_backup_s + parallel["seconds"]
    drill_total = pgdrill_backup_s + drill["seconds"]
    result = {
        "size": name,
        **info,
        **wal,
        "raw": {
            "backup_seconds": raw_backup_s,
            "restore": parallel,
            "seconds": round(raw_total, 3),
        },
        "pgdrill": {
            "backup_seconds": pgdrill_backup_s,
            "restore": drill,
            "seconds": round(drill_total, 3),
        },
        "overhead_ratio": round(drill_total / raw_total, 3),
        "replay_serial_seconds": serial["phases"]["replay"],
        "replay_parallel_seconds": parallel["phases"]["replay"],
        "replay_speedup": round(serial["phases"]["replay"] / parallel["phases"]["replay"], 2),
        "restore_mb_per_s": round(info["database_bytes"] / 1e6 / drill["restore_seconds"], 2),
    }
    for part in ("raw", "pgdrill"):
        result[part]["restore"].pop("counts", None)
    result["fingerprints"] = measure_fingerprints(target)
    return result


def measure_fingerprints(target) -> dict | None:
    """pgdrill.verification.fingerprint against a bare scan and a naive md5 of the same table."""
    try:
        from fingerprint import measure_fingerprints as measure
    except ImportError:
        return None
    primary = target.primary()
    with target.connect(primary, DB) as conn:
        return measure(conn, "pgbench_accounts", lambda: target.connect(primary, DB))


def measure_load(target, seconds: float) -> dict | None:
    """Acknowledged writes per second under the drill's load, and lost writes against the
    source's own rows (ground truth: no fault, so it must be 0)."""
    try:
        from pgdrill.load.bench import measure_load as measure
    except ImportError:
        return None
    return measure(target, seconds)


def growth(results: list[dict]) -> dict | None:
    """Seconds of the drill's backup + restore path per GB, between the smallest and the
    largest size measured."""
    if len(results) < 2:
        return None
    a, b = results[0], results[-1]
    gigabytes = (b["database_bytes"] - a["database_bytes"]) / 1e9
    if gigabytes <= 0:
        return None
    return {
        "from": a["size"],
        "to": b["size"],
        "drill_seconds_per_gb": round(
            (b["pgdrill"]["seconds"] - a["pgdrill"]["seconds"]) / gigabytes, 2
        ),
    }


def main() -> int:
    sizes = chosen_sizes()
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="pgdrill-bench-") as tmp:
        target = SandboxTarget(home=Path(tmp) / "home")
        target.up()
        try:
            results = [measure_size(target, name) for name in sizes]
            say("load: acknowledged writes per second")
            load = measure_load(target, float(os.environ.get("BENCH_LOAD_SECONDS", "30")))
        finally:
            target.down()
    report = {
        "started_at": started.isoformat(),
        "ended_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count()},
        "wal_max_parallel": WAL_MAX_PARALLEL,
        "sizes": results,
        "load": load,
        "growth": growth(results),
        "goals": GOALS,
    }
    report["verdicts"] = judge(report, smoke=bool(os.environ.get("BENCH_SMOKE")))
    write_results(report, markdown(report), started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
