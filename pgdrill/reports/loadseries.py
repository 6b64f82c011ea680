"""The load over time, for the timeline's bottom panel: the acknowledgement instants of the
ack log (`acks.csv`), Locust's failed requests from its statistics history
(`locust_stats_history.csv`), and both as rates per second in round bins. `ack_times` and
`locust_failures` read the run folder; `bin_width` and `rates` are pure."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

from pgdrill.core.errors import BadInput
from pgdrill.load.acklog import read_acks

ACK_LOG = "acks.csv"
LOCUST_HISTORY = "locust_stats_history.csv"


def bin_width(span_seconds: float, target_bins: int = 240) -> float:
    """A round bin width giving at most about `target_bins` bins (1 s for a short run)."""
    raw = max(span_seconds, 1.0) / target_bins
    for width in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if width >= raw:
            return float(width)
    return float(math.ceil(raw / 600) * 600)


def rates(times: Iterable[float], origin: float, width: float,
          weights: Iterable[float] | None = None) -> tuple[list[float], list[float]]:
    """Events per second in bins of `width` seconds since `origin`: (edges, rates)."""
    times = list(times)
    weights = list(weights) if weights is not None else [1.0] * len(times)
    if not times:
        return [], []
    first = math.floor(min(t - origin for t in times) / width)
    last = math.floor(max(t - origin for t in times) / width)
    counts = [0.0] * (last - first + 1)
    for t, w in zip(times, weights):
        counts[math.floor((t - origin) / width) - first] += w
    edges = [(first + i) * width for i in range(len(counts) + 1)]
    return edges, [c / width for c in counts]


def ack_times(run_dir: Path) -> tuple[list[float], str | None]:
    """The ack log's acknowledgement instants, and a note when it could not be read."""
    path = Path(run_dir) / ACK_LOG
    if not path.exists():
        return [], None
    try:
        return [a.acked_at for a in read_acks(path)], None
    except BadInput as exc:
        return [], f"ack log unreadable: {exc.message}"


def locust_failures(run_dir: Path) -> list[tuple[float, int]]:
    """(epoch, failed requests since the previous row) from Locust's statistics history
    (one "Aggregated" row per second with a cumulative failure count); [] without one."""
    path = Path(run_dir) / LOCUST_HISTORY
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    except (OSError, csv.Error):
        return []
    found, previous = [], 0
    for row in rows:
        try:
            when, total = float(row["Timestamp"]), int(float(row["Total Failure Count"]))
        except (KeyError, TypeError, ValueError):
            continue
        if total > previous:
            found.append((when, total - previous))
        previous = max(previous, total)
    return found
