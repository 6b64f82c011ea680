"""Processes pgdrill starts: detached spawn, liveness, termination — always by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def spawn_detached(argv: list[str], log: Path, env: dict | None = None) -> int:
    """Start a helper in its own session, output appended to `log`; return its pid."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    return proc.pid


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def process_start(pid: int) -> str | None:
    """The start time of `pid` (field 22 of /proc/<pid>/stat, in clock ticks since boot):
    with the pid, it tells a process from a later one that reused its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def same_process_alive(pid: int, start: str | None) -> bool:
    """True while the process `pid` that started at `start` still runs."""
    return pid_alive(pid) and (start is None or process_start(pid) == start)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def terminate(pid: int | None, *, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if the process outlives `timeout`."""
    if not pid or not pid_alive(pid):
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.05)
