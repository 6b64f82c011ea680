"""Runs that died without finishing (SIGKILL, a crashed machine): each run holds a lock file
`run.lock` in its folder with its PID; the next drill or `pgdrill` command that finds a lock
whose process is gone finishes the run's evidence as `interrupted`, records it in the ledger,
and removes what it left behind (its load, its restore-test copy)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pgdrill.core.console import say
from pgdrill.core.errors import PgdrillError
from pgdrill.core.procs import process_start, same_process_alive
from pgdrill.evidence.runcontext import RunContext
from pgdrill.runs.finish import RUN_LOCK, finish_run, journal_from_log


def write_lock(run_dir: Path, target: dict) -> None:
    """Claim `run_dir` for this process; `target` says how to reach what the run may leave
    behind (target kind, cluster, sandbox home)."""
    pid = os.getpid()
    lock = {
        "pid": pid,
        "proc_start": process_start(pid),
        "run_id": run_dir.name,
        "started_at": datetime.now(UTC).isoformat(),
        "target": target,
    }
    (run_dir / RUN_LOCK).write_text(json.dumps(lock, indent=2) + "\n")


def _read_lock(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stale_runs(reports: Path) -> list[Path]:
    """Run folders whose lock names a process that no longer runs."""
    found = []
    for path in sorted(Path(reports).glob(f"*/{RUN_LOCK}")):
        lock = _read_lock(path)
        if lock is None or not same_process_alive(int(lock.get("pid", 0)), lock.get("proc_start")):
            found.append(path.parent)
    return found


def live_runs(reports: Path) -> list[Path]:
    """Run folders whose process still runs."""
    stale = set(stale_runs(reports))
    return [p.parent for p in sorted(Path(reports).glob(f"*/{RUN_LOCK}")) if p.parent not in stale]


def recover_stale_runs(reports: Path) -> list[dict]:
    """Finish every stale run under `reports` as interrupted; return their evidence."""
    finished = []
    for run_dir in stale_runs(reports):
        finished.append(finish_stale_run(run_dir, reports))
    return finished


def finish_stale_run(run_dir: Path, reports: Path) -> dict:
    lock = _read_lock(run_dir / RUN_LOCK) or {}
    ctx = RunContext(run_dir)
    say(
        f"found run {run_dir.name} interrupted without finishing (its process "
        f"{lock.get('pid')} is gone): cleaning up and finishing its evidence as interrupted"
    )
    leftovers = _clean_leftovers(ctx, lock.get("target") or {}, reports, run_dir)
    ctx.update(found_dead=True, recovery_cleanup=leftovers)
    journal = journal_from_log(ctx.read(), "interrupted")
    journal["end"] = datetime.now(UTC).isoformat()
    evidence = finish_run(run_dir, journal)
    say(
        f"run {run_dir.name}: verdict {evidence['verdict'].upper()}; "
        + ("; ".join(leftovers) if leftovers else "nothing was left behind")
    )
    return evidence


def _clean_leftovers(ctx: RunContext, target_info: dict, reports: Path, run_dir: Path) -> list[str]:
    """Stop the run's load and remove its restore-test copy; return what was done."""
    from pgdrill.load import runner
    from pgdrill.targets import get_target

    if target_info.get("verify_scratch"):  # a killed `pgdrill verify-backup`
        from pgdrill.verify_backup.scratch import remove_leftover

        return [
            remove_leftover(
                Path(target_info["verify_scratch"]), Path(target_info.get("verify_bin_dir") or ".")
            )
        ]
    done = []
    data = ctx.read()
    load = data.get("load")
    if load and not load.get("stopped_at"):
        try:
            handle = runner.LoadHandle.from_dict(load)
            was_running = runner.running(handle)
            ctx.update(load_summary=runner.stop(handle))
            ctx.merge("load", stopped_at=datetime.now(UTC).timestamp())
            done.append("stopped its load" if was_running else "collected its load statistics")
        except PgdrillError as exc:
            done.append(f"could not stop its load: {exc.message}")
    others = [p for p in live_runs(reports) if p != run_dir]
    if others:
        done.append(f"left restore-test alone: run {others[0].name} is in progress")
        return done
    try:
        target = get_target(target_info)
        if target.restored_instance() is not None:
            target.cleanup_restore()
            done.append("removed its restore-test copy")
    except PgdrillError as exc:
        done.append(f"could not remove restore-test: {exc.message}")
    return done
