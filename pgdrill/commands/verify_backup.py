"""`pgdrill verify-backup s3://BUCKET[/PATH] --server-name NAME --credentials FILE`: restore a
bucket's backup into a throwaway local PostgreSQL of the backup's major, check it, and record
the verdict like a drill (pgdrill.verify_backup)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pgdrill.commands.bucket_args import bucket_arguments, open_location
from pgdrill.commands.ledger import reports_arg, reports_dir


def run(args: argparse.Namespace) -> int:
    """Verify; exit 0 when the verdict is passed, 1 when it is not."""
    from pgdrill.verify_backup.run import VerifyRequest, verify

    request = VerifyRequest(
        location=open_location(args),
        reports_dir=Path(reports_dir(args)),
        backup_id=args.backup_id,
        target_time=args.target_time,
        checklist=args.checklist,
        amcheck=not args.no_amcheck,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        timeout=args.timeout,
        wal_max_parallel=args.wal_max_parallel,
    )
    evidence = verify(request)
    if args.json:
        print(json.dumps(evidence, indent=2, default=str))
    else:
        print(summary(evidence))
    return 0 if evidence["verdict"] == "passed" else 1


def summary(evidence: dict) -> str:
    """A few lines for people: the verdict, what was restored, where it stopped, RTO."""
    v = evidence.get("verification") or {}
    restore = evidence.get("restore") or {}
    reached = restore.get("reached") or {}
    lines = [
        f"verify-backup {evidence['verdict'].upper()}: backup "
        f"{restore.get('backup_id')} of {v.get('archive')} with PostgreSQL "
        f"{(v.get('postgresql') or {}).get('version')}"
    ]
    if reached:
        lines.append(f"  recovery stopped at {reached.get('lsn')} ({reached.get('reason')})")
    phases = {
        k: (v.get("rto_phases") or {})[k]
        for k in ("fetch", "replay", "ready", "verify")
        if k in (v.get("rto_phases") or {})
    }
    if phases:
        lines.append(
            "  RTO "
            + f"{sum(phases.values()):.1f}s: "
            + ", ".join(f"{k} {val:.1f}s" for k, val in phases.items())
        )
    rates = v.get("throughput") or {}
    if rates.get("restore_mb_per_s"):
        lines.append(
            f"  restore {rates['restore_mb_per_s']} MB/s of database, fetch "
            f"{rates.get('fetch_mb_per_s')} MB/s stored"
        )
    if v.get("tables") is not None:
        from pgdrill.verify_backup.tables import describe_changes

        lines.append(
            f"  {len(v['tables'])} tables fingerprinted; " + describe_changes(v.get("changes"))
        )
    for reason in evidence.get("reasons") or []:
        lines.append(f"  why not passed: {reason}")
    lines.append(f"  evidence: {evidence.get('run_dir')}")
    return "\n".join(lines)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def register(sub) -> None:
    """Add `verify-backup` to the `pgdrill` subcommands."""
    parser = sub.add_parser(
        "verify-backup",
        help="restore a bucket's backup into a throwaway local PostgreSQL of "
        "its major and prove it (no cluster needed)",
    )
    bucket_arguments(parser)
    parser.add_argument(
        "--backup-id",
        default="latest",
        help="the backup to restore (default latest: the newest completed)",
    )
    parser.add_argument(
        "--target-time",
        default=None,
        help="replay WAL up to this time (ISO-8601 with offset); default: the end of the archive",
    )
    parser.add_argument(
        "--checklist",
        default=None,
        metavar="FILE",
        help="your Restore Verification Checklist (YAML); default: the built-in generic one",
    )
    parser.add_argument(
        "--no-amcheck", action="store_true", help="skip pg_amcheck --heapallindexed"
    )
    parser.add_argument(
        "--work-dir",
        default=None,
        help="where the throwaway copy lives (default: a new temporary folder, removed afterwards)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600,
        help="seconds for the fetch and for the replay (default 3600)",
    )
    parser.add_argument(
        "--wal-max-parallel",
        type=_positive,
        default=8,
        metavar="N",
        help="fetch WAL N segments at a time, as CNPG's wal.maxParallel "
        "(default 8; 1: one barman-cloud-wal-restore per segment)",
    )
    parser.add_argument("--json", action="store_true", help="print the evidence as JSON")
    reports_arg(parser)
    parser.set_defaults(func=run)
