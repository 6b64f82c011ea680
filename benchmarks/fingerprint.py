"""Benchmark: table fingerprints vs a bare sequential scan, on a real sandbox.

    make bench                      # scale 10 (1,000,000 rows), 5 repetitions
    BENCH_SCALE=50 make bench

Starts its own sandbox in a temporary directory, loads pgbench_accounts at the given scale
into a separate database, and prints the median time of each query; the numbers are also
written as JSON to reports/bench-fingerprint-<UTC stamp>.json.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pgdrill.fingerprint import fingerprint_table
from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.target import SandboxTarget

SCALE = int(os.environ.get("BENCH_SCALE", "10"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
DB = "bench"


def median_seconds(fn) -> float:
    fn()  # warm the cache once
    samples = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pgdrill-bench-") as tmp:
        target = SandboxTarget(home=Path(tmp) / "home")
        target.up()
        try:
            primary = target.primary()
            with target.connect(primary, "postgres") as conn:
                conn.execute(f"CREATE DATABASE {DB}")
            cluster = target._cluster()
            print(f"loading pgbench_accounts at scale {SCALE} ({SCALE * 100_000:,} rows)...")
            postgres.run(cluster.run_as, [postgres.binary("pgbench"), "-i", "-s", str(SCALE),
                                          "-q", "-h", primary.host, "-p", str(primary.port),
                                          "-U", primary.user, DB],
                         env=cluster.process_env(), timeout=1800, what="pgbench -i")
            with target.connect(primary, DB) as conn:
                conn.execute("VACUUM ANALYZE pgbench_accounts")
                queries = {
                    "count(*)": lambda: conn.execute(
                        "SELECT count(*) FROM pgbench_accounts").fetchone(),
                    "seq scan of every row's text": lambda: conn.execute(
                        "SELECT sum(length(r::text)) FROM pgbench_accounts r").fetchone(),
                    "fingerprint, 16 key ranges": lambda: fingerprint_table(
                        conn, "pgbench_accounts", buckets=16),
                    "fingerprint, 256 key ranges": lambda: fingerprint_table(
                        conn, "pgbench_accounts", buckets=256),
                }
                results = {name: round(median_seconds(fn), 4) for name, fn in queries.items()}
        finally:
            target.down()
    rows = SCALE * 100_000
    print(f"\npgbench_accounts, {rows:,} rows, median of {REPEAT}:")
    base = results["seq scan of every row's text"]
    for name, seconds in results.items():
        print(f"  {name:<32} {seconds * 1000:9.1f} ms  {seconds / base:5.2f}x seq scan  "
              f"{rows / seconds / 1e6:6.2f} M rows/s")
    out = Path("reports") / f"bench-fingerprint-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "repeat": REPEAT, "median_seconds": results},
                              indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
