"""`pgdrill report RUN_DIR`: regenerate a run's reports from its evidence.json and
journal.json (pgdrill.reports.writers: report.html, report.md, timeline.png, JUnit and
metrics.prom)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pgdrill.core.errors import BadInput
from pgdrill.reports.writers import WRITERS, Writer


def load_run(run_dir: Path) -> tuple[dict, dict]:
    """(evidence, journal) of a run folder. BadInput for a folder that is not a run's: no
    such folder, no evidence.json, or a file that is not pgdrill evidence. A missing
    journal.json (a run killed before its journal was written) gives an empty journal."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInput(
            f"{run_dir} is not a folder",
            fix="name a run folder, e.g. reports/<UTC stamp>-<experiment> "
            "(`pgdrill runs` lists them)",
        )
    path = run_dir / "evidence.json"
    if not path.is_file():
        raise BadInput(
            f"{run_dir} holds no evidence.json, so it is not a drill's run folder",
            fix="name a run folder, e.g. reports/<UTC stamp>-<experiment> "
            "(`pgdrill runs` lists them)",
        )
    evidence = _read(path)
    if (
        not isinstance(evidence, dict)
        or not str(evidence.get("schema", "")).startswith("pgdrill.evidence/")
        or "verdict" not in evidence
    ):
        raise BadInput(
            f"{path} is not pgdrill evidence (no schema pgdrill.evidence/1 with a verdict)",
            fix="name the run folder a drill wrote",
        )
    journal_path = run_dir / "journal.json"
    journal = _read(journal_path) if journal_path.is_file() else {}
    if not isinstance(journal, dict):
        raise BadInput(
            f"{journal_path} is not a Chaos Toolkit journal (not a JSON object)",
            fix="it was edited or truncated; `pgdrill ledger verify` tells whether "
            "it still matches the ledger",
        )
    return evidence, journal


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path} is not UTF-8 text ({exc.reason})") from None
    except ValueError as exc:
        raise BadInput(
            f"{path} is not valid JSON: {exc}",
            fix="it was edited or truncated; `pgdrill ledger verify` tells "
            "whether it still matches the ledger",
        ) from None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None


def regenerate(run_dir: Path, writers: list[Writer] | None = None) -> list[Path]:
    """Write every report of the run folder again; returns the files written."""
    evidence, journal = load_run(run_dir)
    written: list[Path] = []
    for writer in WRITERS if writers is None else writers:
        written += writer(Path(run_dir), evidence, journal)
    return written


def run(args: argparse.Namespace) -> int:
    """Regenerate the reports and print each file written."""
    run_dir = Path(args.run_dir)
    for path in regenerate(run_dir):
        print(path)
    if not (run_dir / "journal.json").is_file():
        print(
            f"note: {run_dir} has no journal.json; the timeline and activities show only "
            "what the evidence holds"
        )
    return 0


def register(sub) -> None:
    """Add `report` to the `pgdrill` subcommands."""
    parser = sub.add_parser(
        "report",
        help="regenerate a run's reports (report.html, "
        "report.md, ...) from its evidence and journal",
    )
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="the run folder, e.g. reports/20261130T201500Z-pvc-loss"
    )
    parser.set_defaults(func=run)
