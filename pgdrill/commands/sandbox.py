"""`pgdrill sandbox up|status|down|reset`: the local sandbox target."""

from __future__ import annotations

import argparse
import json
import sys

from pgdrill.core.errors import BadInput

RESET_FIX = "pgdrill sandbox reset --yes"


def run(args: argparse.Namespace) -> int:
    from pgdrill.targets.sandbox.target import SandboxTarget

    target = SandboxTarget(home=args.home, cluster=args.cluster)
    if args.action == "up":
        target.up()
        print_status(target.status(), as_json=False)
    elif args.action == "down":
        target.down()
    elif args.action == "reset":
        if not args.yes:
            confirm_reset(target)
        target.reset()
        print_status(target.status(), as_json=False)
    elif args.action == "status":
        status = target.status()
        print_status(status, as_json=args.json)
        return 0 if status.get("up") else 1
    return 0


def confirm_reset(target) -> None:
    """Ask on a terminal; without one, refuse (nothing is discarded without --yes)."""
    state = target.layout.read()
    if state is None:
        return  # nothing to discard
    if not sys.stdin.isatty():
        raise BadInput(
            f"`pgdrill sandbox reset` discards sandbox {state.cluster!r} in "
            f"{target.layout.home} and there is no terminal to confirm it on; "
            f"nothing was discarded",
            fix=f"pass --yes: `{RESET_FIX}`",
        )
    print(
        f"This discards sandbox {state.cluster!r} in {target.layout.home}: both data "
        f"directories, every backup and the WAL archive, then builds a new one.",
        file=sys.stderr,
    )
    try:
        answer = input(f"Type the cluster name ({state.cluster}) to confirm: ")
    except EOFError:
        answer = ""
    if answer.strip() != state.cluster:
        raise BadInput("not confirmed: nothing was discarded", fix=f"`{RESET_FIX}`")


def print_status(status: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, indent=2, default=str))
        return
    if not status.get("up") and "instances" not in status:
        print(f"sandbox: not up ({status['home']})")
        return
    print(
        f"sandbox {status['cluster']!r}: {'up' if status['up'] else 'DEGRADED'} ({status['home']})"
    )
    s3 = status["s3"]
    print(
        f"  object store  {s3['endpoint']}  {s3['destination_path']}{s3['server_name']}/"
        f"  {'running' if s3['running'] else 'STOPPED'}"
    )
    if s3.get("store_lost"):
        print(f"  object store  EMPTIED: {s3['store_lost']}")
        print(f"                fix: `{RESET_FIX}` discards this sandbox and builds a new one")
    print(
        f"  supervisor    pid {status['supervisor']['pid']}  "
        f"{'running' if status['supervisor']['running'] else 'STOPPED'}"
    )
    for inst in status["instances"]:
        state = "running" if inst["running"] else "DOWN"
        extra = ""
        if inst["role"] == "replica":
            extra = "  streaming" if inst.get("streaming") else "  not streaming"
        print(
            f"  {inst['name']:<14}{inst['role']:<9}{inst['host']}:{inst['port']:<6} {state:<8}"
            f"lsn {inst.get('lsn') or '-'}{extra}"
        )
    arch = status.get("archiver") or {}
    if "error" in arch:
        print(f"  archiver      {arch['error']}")
    elif arch:
        print(
            f"  archiver      {arch['archived_count']} archived, last {arch['last_archived_wal']}"
            f" at {arch['last_archived_time']}; {arch['failed_count']} failed"
        )
    latest = status.get("latest_backup")
    if latest and "error" not in latest:
        print(
            f"  latest backup {latest['id']} {latest['status']} ended {latest['end_time']}"
            f" ({status['backup_count']} in total)"
        )
    elif latest:
        print(f"  backups       {latest['error']}")
    else:
        print("  backups       none")
    if status.get("restore_test"):
        rt = status["restore_test"]
        print(f"  restore-test  {rt['host']}:{rt['port']}")


def register(sub) -> None:
    sandbox = sub.add_parser(
        "sandbox",
        help="the local sandbox target (PostgreSQL + S3 + barman)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="up      create the sandbox, or repair a stopped/broken one in place "
        "(never discards it)\n"
        "status  instances, roles, ports, LSNs, archiver, latest backup\n"
        "down    stop every process and remove the state: DISCARDS the sandbox (data, "
        "backups, archive)\n"
        "reset   discard the sandbox and build a new one (asks first; --yes to skip)",
    )
    sandbox.add_argument("action", choices=["up", "status", "down", "reset"])
    sandbox.add_argument(
        "--yes",
        action="store_true",
        help="reset: discard without asking (needed without a terminal)",
    )
    sandbox.add_argument("--json", action="store_true", help="status as JSON")
    sandbox.add_argument(
        "--home", default=None, help="state directory (default $PGDRILL_HOME or ./.pgdrill)"
    )
    sandbox.add_argument("--cluster", default="sandbox", help="cluster name (default sandbox)")
    sandbox.set_defaults(func=run)
