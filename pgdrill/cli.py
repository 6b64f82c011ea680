"""`pgdrill` command line. Expected failures print one message and a fix, never a traceback;
exit codes are documented in pgdrill.core.errors and README."""

from __future__ import annotations

import argparse
import sys
import warnings

from pgdrill.commands import (
    backups,
    bucket_report,
    ledger,
    plan,
    rbac,
    report,
    sandbox,
    secrets,
    validate,
    verify_backup,
)
from pgdrill.core.errors import PgdrillError

COMMANDS = (
    sandbox,
    ledger,
    backups,
    validate,
    secrets,
    plan,
    rbac,
    report,
    verify_backup,
    bucket_report,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgdrill", description="Chaos and recovery drills for PostgreSQL on CloudNativePG."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def finish_stale_runs() -> None:
    """Every command first finishes drills that died without finishing (see
    pgdrill.runs.stale): their evidence says `interrupted` and their leftovers go."""
    from pgdrill.evidence.ledger import default_reports_dir
    from pgdrill.runs.stale import recover_stale_runs

    reports = default_reports_dir()
    if reports.is_dir():
        recover_stale_runs(reports)


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", module="platformdirs")
    args = build_parser().parse_args(argv)
    try:
        finish_stale_runs()
        return args.func(args)
    except PgdrillError as exc:
        print(f"pgdrill: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pgdrill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
