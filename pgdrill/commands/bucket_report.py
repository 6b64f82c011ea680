"""`pgdrill bucket-report s3://BUCKET[/PATH] --server-name NAME --credentials FILE`: what one
server's folder of a barman-cloud bucket can restore — backups, WAL continuity and gaps, the
recoverable window, archive lag and backup age — judged from the bucket alone
(pgdrill.bucket.report). Exit 0 when it passes, 1 when it fails, 2 for bad input, 4 when the
object store cannot be read."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta

from pgdrill.commands.bucket_args import bucket_arguments, open_location
from pgdrill.core.errors import BadInput


def _policy(args: argparse.Namespace):
    from pgdrill.bucket.report import DEFAULT_MAX_ARCHIVE_LAG, Policy
    from pgdrill.targets.cnpg.cron import ScheduleError, parse_schedule

    if args.max_archive_lag is not None and args.max_archive_lag <= 0:
        raise BadInput(f"--max-archive-lag must be positive minutes, got {args.max_archive_lag:g}")
    if args.max_backup_age is not None and args.max_backup_age <= 0:
        raise BadInput(f"--max-backup-age must be positive hours, got {args.max_backup_age:g}")
    schedule = None
    if args.schedule is not None:
        try:
            schedule = parse_schedule(args.schedule)
        except ScheduleError as err:
            raise BadInput(
                f"--schedule {args.schedule!r} is not a schedule CNPG accepts: {err}",
                fix="give the ScheduledBackup's spec.schedule: six fields, seconds "
                "first (e.g. '0 0 2 * * *' daily at 02:00 UTC), or @daily, "
                "@every 6h",
            ) from None
        if schedule.period(datetime.now(UTC)) is None:
            raise BadInput(
                f"--schedule {args.schedule!r} never fires (CNPG would schedule nothing)",
                fix="check the schedule's fields",
            )
    lag = (
        timedelta(minutes=args.max_archive_lag)
        if args.max_archive_lag is not None
        else DEFAULT_MAX_ARCHIVE_LAG
    )
    age = timedelta(hours=args.max_backup_age) if args.max_backup_age is not None else None
    return Policy(max_archive_lag=lag, max_backup_age=age, schedule=schedule)


def run(args: argparse.Namespace) -> int:
    """Read the bucket, print the report (Markdown, or JSON with --json); exit 1 on failure."""
    from pgdrill.bucket.report import render_markdown
    from pgdrill.bucket.restore_gate import report_bucket

    policy = _policy(args)
    location = open_location(args)
    credentials = location.credentials
    report = report_bucket(location, policy)
    if args.json:
        print(
            json.dumps(
                {
                    "destination_path": location.destination_path,
                    "server_name": location.server_name,
                    "credentials": credentials.describe(),
                    **report.to_dict(),
                },
                indent=2,
            )
        )
    else:
        print(render_markdown(report), end="")
    if report.verdict != "passed":
        if args.json:
            print(
                f"pgdrill: bucket report failed: {'; '.join(f.text for f in report.findings)}",
                file=sys.stderr,
            )
        return 1
    return 0


def register(sub) -> None:
    """Add `bucket-report` to the `pgdrill` subcommands."""
    parser = sub.add_parser(
        "bucket-report",
        help="what a barman-cloud bucket can restore: backups, WAL gaps, recoverable window, "
        "archive lag, backup age (exit 1 when a gap or staleness fails it)",
    )
    bucket_arguments(parser)
    fresh = parser.add_mutually_exclusive_group()
    fresh.add_argument(
        "--schedule",
        metavar="CRON",
        default=None,
        help="the ScheduledBackup's schedule, read as CNPG does (six fields, "
        "seconds first; @daily, @every 6h): the newest backup may be at "
        "most its period plus 1h old",
    )
    fresh.add_argument(
        "--max-backup-age",
        metavar="HOURS",
        type=float,
        default=None,
        help="the newest completed backup may be at most this old (default 25)",
    )
    parser.add_argument(
        "--max-archive-lag",
        metavar="MINUTES",
        type=float,
        default=None,
        help="the newest archived WAL segment may be at most this old "
        "(default 30; CNPG's archive_timeout is 5 min)",
    )
    parser.add_argument("--json", action="store_true", help="as JSON")
    parser.set_defaults(func=run)
