"""`pgdrill ledger verify` and `pgdrill runs`: the run ledger (reports/ledger.jsonl)."""

from __future__ import annotations

import argparse
import json

from pgdrill.evidence import ledger

RUN_COLUMNS = (
    "seq",
    "run_id",
    "experiment",
    "environment",
    "target",
    "verdict",
    "rto_seconds",
    "lost_writes",
    "backup_id",
    "ended_at",
)


def reports_arg(parser: argparse.ArgumentParser) -> None:
    """Add `--reports DIR` (default $PGDRILL_REPORTS or ./reports)."""
    parser.add_argument(
        "--reports",
        default=None,
        help="reports folder holding ledger.jsonl (default $PGDRILL_REPORTS or ./reports)",
    )


def environment_arg(parser: argparse.ArgumentParser) -> None:
    """Add `--environment-file FILE` (default $PGDRILL_ENVIRONMENT_FILE): its evidence sink."""
    parser.add_argument(
        "--environment-file",
        metavar="FILE",
        default=None,
        help="an environment file whose evidence_sink holds the ledger "
        "(default $PGDRILL_ENVIRONMENT_FILE)",
    )


def reports_dir(args: argparse.Namespace):
    """The reports folder the arguments name; with an evidence sink in the environment file
    (--environment-file or PGDRILL_ENVIRONMENT_FILE), first brought up to date from it."""
    reports = ledger.default_reports_dir({"reports_dir": args.reports})
    if not getattr(args, "_sink_pulled", False):
        args._sink_pulled = True
        _pull_from_sink(args, reports)
    return reports


def _pull_from_sink(args: argparse.Namespace, reports) -> None:
    from pgdrill.credentials.environments import environment_configuration
    from pgdrill.evidence.sink import sink_from_configuration

    configuration = environment_configuration(getattr(args, "environment_file", None))
    if configuration is None:
        return
    sink = sink_from_configuration(configuration)
    if sink is not None:
        sink.pull_ledger(reports)


def verify(args: argparse.Namespace) -> int:
    """Print `ledger OK: N runs` (exit 0) or every problem with its line (exit 1)."""
    reports = reports_dir(args)
    problems = ledger.verify(reports)
    if problems:
        print(
            f"ledger {ledger.ledger_path(reports)} does NOT verify "
            f"({len(problems)} problem{'s' if len(problems) != 1 else ''}):"
        )
        for problem in problems:
            print(f"  {problem}")
        return 1
    count = len(ledger.verified_entries(reports))
    print(f"ledger OK: {count} runs ({ledger.ledger_path(reports)})")
    return 0


def run_row(entry: dict) -> dict:
    """One ledger entry as the row `pgdrill runs` shows."""
    backup = entry.get("backup") or {}
    return {
        "seq": entry.get("seq"),
        "run_id": entry.get("run_id"),
        "experiment": entry.get("experiment"),
        "environment": entry.get("environment"),
        "target": entry.get("target"),
        "cluster": entry.get("cluster"),
        "verdict": entry.get("verdict"),
        "rto_seconds": entry.get("rto_seconds"),
        "lost_writes": entry.get("lost_writes"),
        "backup_id": backup.get("id"),
        "ended_at": entry.get("ended_at"),
    }


def runs(args: argparse.Namespace) -> int:
    """List the verified ledger's runs, newest first; LedgerTampered (exit 1) when it does
    not verify."""
    entries = ledger.verified_entries(reports_dir(args))
    rows = [run_row(e) for e in reversed(entries)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs recorded in {ledger.ledger_path(reports_dir(args))}")
        return 0
    table = [
        [
            "seq",
            "run",
            "experiment",
            "env",
            "target",
            "verdict",
            "rto_s",
            "lost",
            "backup",
            "ended_at",
        ]
    ]
    for r in rows:
        table.append(
            [
                str(r["seq"]),
                r["run_id"],
                r["experiment"],
                r["environment"],
                r["target"],
                r["verdict"],
                "-" if r["rto_seconds"] is None else f"{r['rto_seconds']:.1f}",
                "-" if r["lost_writes"] is None else str(r["lost_writes"]),
                r["backup_id"] or "-",
                r["ended_at"],
            ]
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def register(sub) -> None:
    """Add `ledger verify` and `runs` to the `pgdrill` subcommands."""
    led = sub.add_parser("ledger", help="the tamper-evident run ledger (reports/ledger.jsonl)")
    actions = led.add_subparsers(dest="action", required=True)
    check = actions.add_parser("verify", help="check every line, receipt and evidence hash")
    reports_arg(check)
    environment_arg(check)
    check.set_defaults(func=verify)

    listing = sub.add_parser("runs", help="the drill runs the (verified) ledger records")
    listing.add_argument("--json", action="store_true", help="as JSON")
    reports_arg(listing)
    environment_arg(listing)
    listing.set_defaults(func=runs)
