"""`pgdrill backups`: the object store's backups, each marked verified when the run ledger
holds a passing restore drill of it (no backup without restore)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from pgdrill.commands.ledger import reports_arg, reports_dir
from pgdrill.core.errors import BadInput
from pgdrill.evidence import ledger, policy


def backup_rows(backups, verified: dict[str, str]) -> list[dict]:
    """The backups (oldest first) as JSON-ready rows with `verified` and `verified_by`."""
    return [
        {**b.to_dict(), "verified": b.id in verified, "verified_by": verified.get(b.id)}
        for b in backups
    ]


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class BucketBackups:
    """A bucket's server folder seen as a target: its backups, and the system identifier
    its newest backup's backup.info names (what `pgdrill verify-backup` records)."""

    def __init__(self, location) -> None:
        self.location = location
        self._folder = None

    def _read(self):
        from pgdrill.verify_backup.source import read_folder

        if self._folder is None:  # read once: the backups and their backup.info
            self._folder = read_folder(self.location)
        return self._folder

    def list_backups(self):
        return list(self._read().backups)

    def cluster_identity(self) -> str | None:
        from pgdrill.verify_backup.source import facts_of

        done = [b for b in self.list_backups() if b.completed]
        return facts_of(self._read(), done[-1]).systemid if done else None


def _target(args: argparse.Namespace):
    """(target, cluster name): a bucket's server folder when one is named, the environment
    file's CNPG cluster when it names one, else the sandbox."""
    if args.destination:
        from pgdrill.commands.bucket_args import open_location

        if not args.server_name or not args.credentials:
            raise BadInput(
                "listing a bucket needs --server-name and --credentials",
                fix="pgdrill backups s3://BUCKET/PATH --server-name NAME "
                "--credentials FILE.sops.yaml",
            )
        location = open_location(args)
        return BucketBackups(location), location.server_name
    from pgdrill.credentials.environments import environment_configuration

    configuration = environment_configuration(args.environment_file)
    if configuration is not None:
        from pgdrill.targets import get_target, target_kind

        if target_kind(configuration) == "cnpg":
            target = get_target(configuration)
            target.check_ready()
            return target, configuration["cluster"]
    from pgdrill.targets.sandbox.target import SandboxTarget

    return SandboxTarget(home=args.home, cluster=args.cluster), args.cluster


def run(args: argparse.Namespace) -> int:
    """List backups; with --require-verified exit 1 when the backup gate fails."""
    if args.max_age_days is not None and not args.require_verified:
        raise BadInput(
            "--max-age-days only applies to --require-verified",
            fix="add --require-verified, or drop --max-age-days",
        )
    if args.max_age_days is not None and args.max_age_days <= 0:
        raise BadInput(f"--max-age-days must be positive, got {args.max_age_days:g}")
    entries = ledger.verified_entries(reports_dir(args))
    target, cluster = _target(args)
    backups = target.list_backups()
    identity = target.cluster_identity()
    verified = policy.verified_backups(entries, identity)
    rows = backup_rows(backups, verified)
    gate = None
    if args.require_verified:
        reason = policy.backup_gate(
            backups, verified, datetime.now(UTC), max_age_days=args.max_age_days
        )
        gate = {"passed": reason is None, "reason": reason}
    if args.json:
        print(
            json.dumps(
                {"cluster": cluster, "cluster_identity": identity, "backups": rows, "gate": gate},
                indent=2,
            )
        )
    else:
        print(
            f"cluster {cluster!r} (system identifier {identity}): "
            f"{len(rows)} backup{'s' if len(rows) != 1 else ''}"
        )
        for r in rows:
            mark = f"verified by {r['verified_by']}" if r["verified"] else "NOT verified"
            print(
                f"  {r['id']}  {r['status']:<7} tl {r['timeline'] or '-'}  "
                f"{r['begin_time'] or '-'} .. {r['end_time'] or '-'}  "
                f"lsn {r['begin_lsn'] or '-'} .. {r['end_lsn'] or '-'}  "
                f"{_size(r['size'])}  {mark}"
            )
        if gate is not None:
            print("gate: passed" if gate["passed"] else f"gate: FAILED: {gate['reason']}")
    if gate is not None and not gate["passed"]:
        if args.json:
            print(f"pgdrill: backup gate failed: {gate['reason']}", file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    """Add `backups` to the `pgdrill` subcommands."""
    parser = sub.add_parser(
        "backups", help="the object store's backups and which ones a passing restore drill verified"
    )
    parser.add_argument("--json", action="store_true", help="as JSON")
    parser.add_argument(
        "--require-verified",
        action="store_true",
        help="exit 1 unless the newest backup (or, with --max-age-days, one "
        "that recent) was restored by a passing drill",
    )
    parser.add_argument(
        "--max-age-days",
        type=float,
        default=None,
        help="with --require-verified: a verified backup must have ended within this many days",
    )
    reports_arg(parser)
    parser.add_argument(
        "destination",
        nargs="?",
        default=None,
        metavar="s3://BUCKET[/PATH]",
        help="list this bucket's backups (with --server-name and "
        "--credentials), as `pgdrill verify-backup` reads them",
    )
    parser.add_argument(
        "--server-name", default=None, help="with a bucket: the serverName the backups are under"
    )
    parser.add_argument(
        "--credentials",
        default=None,
        metavar="FILE.sops.yaml",
        help="with a bucket: the SOPS/age-encrypted cnpg-backup-s3 Secret",
    )
    parser.add_argument(
        "--age-identity", default=None, metavar="FILE", help="with a bucket: the age identity file"
    )
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="with a bucket: the S3 endpoint (default: the credentials' ENDPOINT)",
    )
    parser.add_argument(
        "--home", default=None, help="sandbox state directory (default $PGDRILL_HOME or ./.pgdrill)"
    )
    parser.add_argument("--cluster", default="sandbox", help="cluster name (default sandbox)")
    parser.add_argument(
        "--environment-file",
        metavar="FILE",
        default=None,
        help="a CNPG cluster's environment file (default "
        "$PGDRILL_ENVIRONMENT_FILE): list that cluster's backups from its "
        "object store instead of the sandbox's",
    )
    parser.set_defaults(func=run)
