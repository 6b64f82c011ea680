"""Benchmark: the drill's write load, its acknowledged writes/s and exact accounting.

    python benchmarks/load.py                 # its own sandbox, 20 s of the drill's load
    BENCH_SECONDS=60 BENCH_RATE=600 BENCH_BATCH=4 BENCH_USERS=4 python benchmarks/load.py
    BENCH_RATE=none python benchmarks/load.py # unpaced: the ceiling, not a drill's load
    PGDRILL_HOME=~/.pgdrill python benchmarks/load.py  # an existing sandbox (e.g. mid-drill)

`pgdrill.load.bench.measure_load(target, seconds)` is what `make bench` imports; run as a
script, this starts a sandbox of its own in a temporary directory (or uses the sandbox of
$PGDRILL_HOME, left running), runs the same load a drill runs for BENCH_SECONDS with no
fault, prints the result and writes it to reports/bench-load-<UTC stamp>.json:
acked_writes_per_second (goal >= 300 on a 2-core machine during a drill),
acked_writes_per_second_min (slowest second), latency of write transactions, and
lost_write_count_error: acknowledged writes missing from the source primary (goal 0).
The in-drill number of a real drill is its evidence's `load.writes_per_second`.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pgdrill.load.bench import measure_load
from pgdrill.load.pacing import DEFAULT_BATCH, DEFAULT_RATE, DEFAULT_USERS
from pgdrill.targets.sandbox.target import SandboxTarget


def settings() -> dict:
    rate = os.environ.get("BENCH_RATE") or str(DEFAULT_RATE)
    return {
        "seconds": float(os.environ.get("BENCH_SECONDS") or 20),
        "users": int(os.environ.get("BENCH_USERS") or DEFAULT_USERS),
        "rate": None if rate.lower() in ("none", "0", "unpaced") else float(rate),
        "batch": int(os.environ.get("BENCH_BATCH") or DEFAULT_BATCH),
    }


def run(target: SandboxTarget) -> dict:
    target.wait_ready(timeout=180)
    return measure_load(target, **settings())


def main() -> None:
    home = os.environ.get("PGDRILL_HOME")
    if home:
        result = run(SandboxTarget(home=Path(home)))
    else:
        with tempfile.TemporaryDirectory(prefix="pgdrill-bench-") as tmp:
            target = SandboxTarget(home=Path(tmp) / "home")
            target.up()
            try:
                result = run(target)
            finally:
                target.down()
    result["cpus"] = os.cpu_count()
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))
    out = Path(os.environ.get("PGDRILL_REPORTS") or "reports")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-load-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
