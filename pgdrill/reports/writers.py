"""Every report a run folder gets from its evidence and journal, in the order they are
written: the human ones (report.html, report.md, timeline.png), JUnit XML, metrics.prom."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pgdrill.reports import human

# Each writer gets (run folder, evidence, journal) and returns the files it wrote.
Writer = Callable[[Path, dict, dict], list[Path]]
def _junit(run_dir: Path, evidence: dict, journal: dict) -> list[Path]:
    from pgdrill.reports.junit import write_junit

    return [write_junit(run_dir, evidence, journal)]


def _metrics(run_dir: Path, evidence: dict, journal: dict) -> list[Path]:
    """metrics.prom; the last success comes from the verified ledger beside the run, and is
    left out (with a note) when that ledger does not verify."""
    from pgdrill.core.console import say
    from pgdrill.evidence.ledger import LedgerTampered, verified_entries
    from pgdrill.reports.metrics import write_metrics

    try:
        entries = verified_entries(run_dir.parent)
    except LedgerTampered as exc:
        say(f"metrics.prom without the last success: {exc.message}")
        entries = None
    return [write_metrics(run_dir, evidence, ledger_entries=entries)]


WRITERS: list[Writer] = [human.write_reports, _junit, _metrics]
