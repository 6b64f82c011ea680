"""`make bench`'s harness: its verdicts and table (pure), and a smoke run on a tiny database
(the harness only: a benchmark is never a timed test, so no goal is judged here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from summary import judge, markdown


def size(name: str, overhead: float, speedup: float, seqscan: float | None) -> dict:
    restore = {"phases": {"fetch": 1.0, "replay": 2.0, "checks": 0.1}, "restore_seconds": 3.0}
    return {
        "size": name,
        "database_bytes": 1e8,
        "wal_bytes": 1e7,
        "raw": {"backup_seconds": 1.0, "restore": restore, "seconds": 4.1},
        "pgdrill": {"backup_seconds": 1.1, "restore": restore, "seconds": 4.5},
        "overhead_ratio": overhead,
        "replay_serial_seconds": 4.0,
        "replay_parallel_seconds": 2.0,
        "replay_speedup": speedup,
        "restore_mb_per_s": 33.0,
        "fingerprints": {"fingerprint_vs_seqscan": seqscan, "fingerprint_vs_naive": 4.0},
    }


def test_each_goal_is_judged_and_a_missed_one_is_named_in_the_table():
    report = {
        "sizes": [size("100MB", 1.05, 1.2, 0.8), size("1GB", 1.3, 2.5, None)],
        "load": {"acked_writes_per_second": 310.0, "lost_write_count_error": 0},
        "growth": {"from": "100MB", "to": "1GB", "drill_seconds_per_gb": 40.0},
    }
    verdicts = judge(report)
    met = {(v["goal"], v["size"]): v["met"] for v in verdicts}
    assert met[("overhead_ratio", "100MB")] is True
    assert met[("overhead_ratio", "1GB")] is False
    assert ("replay_speedup", "100MB") not in met  # stated for ~1 GB only
    assert met[("replay_speedup", "1GB")] is True
    assert met[("fingerprint_vs_seqscan", "1GB")] is None  # not measured is not met
    assert met[("acked_writes_per_second", None)] is True
    report["verdicts"] = verdicts
    table = markdown(report)
    assert "| measured | 100MB | 1GB |" in table
    assert "MISSED: overhead_ratio at 1GB = 1.30 (<= 1.15)" in table
    assert "Not measured: fingerprint_vs_seqscan." in table


def test_a_smoke_run_judges_nothing():
    report = {"sizes": [size("tiny", 9.0, 0.5, 0.1)], "load": None}
    assert all(v["met"] is None for v in judge(report, smoke=True))


@pytest.mark.sandbox
def test_the_harness_runs_end_to_end_on_a_tiny_database(tmp_path):
    env = {**os.environ, "BENCH_SMOKE": "1", "BENCH_LOAD_SECONDS": "5", "BENCH_OUT": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "benchmarks/bench.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    [written] = list(tmp_path.glob("*.json"))
    report = json.loads(written.read_text())
    [tiny] = report["sizes"]
    assert tiny["raw"]["restore"]["phases"]["replay"] > 0
    assert tiny["pgdrill"]["restore"]["backup_id"]
    assert (
        (tmp_path / written.name.replace(".json", ".md"))
        .read_text()
        .startswith("| measured | tiny |")
    )


def test_the_lab_bench_table_shows_each_side_and_counts_every_lost_write():
    """`make bench-lab`'s summary: medians over the failovers (a figure one side cannot
    measure is '-', never 0), and lost writes summed, so one bad failover shows."""
    from lab_bench import markdown as lab_markdown
    from lab_bench import summarize

    def run(writable, lost, operator=None):
        return {
            "writable_seconds": writable,
            "healthy_seconds": writable + 5,
            "client_write_outage_seconds": writable - 0.5,
            "operator_seconds": operator,
            "lost_writes": lost,
        }

    restore = {
        "database_bytes": 1.1e9,
        "backup_seconds": 40.0,
        "restore_seconds": 90.0,
        "restore_mb_per_s": 12.2,
    }
    lab = [run(20.0, 0, 19.0), run(24.0, 0, 23.0), run(22.0, 3, 21.0)]
    sandbox = [run(1.0, 0), run(1.4, 0), run(1.2, 0)]
    report = {
        "targets": {
            "lab": {"failovers": lab, "failover_summary": summarize(lab), "restore": restore},
            "sandbox": {
                "failovers": sandbox,
                "failover_summary": summarize(sandbox),
                "restore": restore,
            },
        }
    }
    assert report["targets"]["lab"]["failover_summary"]["writable_seconds"] == {
        "median": 22.0,
        "min": 20.0,
        "max": 24.0,
    }
    assert report["targets"]["lab"]["failover_summary"]["lost_writes_total"] == 3
    assert "operator_seconds" not in report["targets"]["sandbox"]["failover_summary"]
    table = lab_markdown(report)
    assert (
        "| fault → writable primary (median of 3/3) | 22.0 s (min 20.0, max 24.0) | "
        "1.2 s (min 1.0, max 1.4) |" in table
    )
    assert (
        "| operator's own failover time (median of 3/3) | 21.0 s (min 19.0, max 23.0) | - |"
        in table
    )
    assert "| acknowledged writes lost in the failovers | 3 | 0 |" in table
