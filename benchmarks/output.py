"""Where a benchmark's results go: reports/bench/<prefix><UTC stamp>.json and .md (BENCH_OUT
overrides the folder); the table is printed too."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def write_results(report: dict, table: str, started: datetime, prefix: str = "") -> Path:
    out = Path(os.environ.get("BENCH_OUT") or REPO / "reports" / "bench")
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{prefix}{started.strftime('%Y%m%dT%H%M%SZ')}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(table)
    print(table)
    print(f"written to {stem}.json and .md")
    return stem
