"""Start and stop the Locust write load as a subprocess of the drill.

Locust runs as `python -m locust -f pgdrill/load/locustfile.py --headless ...` in its own
session, logging to `<run_dir>/locust.log`. This process never imports Locust (importing it
monkey-patches everything with gevent).

Stopping: SIGTERM. Locust 2.x installs a handler for it (`sig_term_handler` → `shutdown()`):
it stops the users, writes `--json-file` with the final statistics, closes its CSV files and
exits 0. SIGINT reaches the same shutdown only as a KeyboardInterrupt thrown into whichever
greenlet happens to run, and is ignored by children that non-interactive shells start in
the background, so SIGTERM is the dependable signal (both verified with Locust 2.47).
After a deadline the process gets SIGKILL. With `--stop-timeout`, a user in the middle of a
transaction when the load stops finishes it (and logs its ack) instead of being killed while
waiting for its COMMIT, and users between transactions start no new one (see the
locustfile): a clean stop leaves no committed row unacknowledged.

Statistics: the `--csv` files are rewritten by a greenlet once a second, so the
`_stats.csv` "Aggregated" row lags the end of the run by up to a second (measured: ~10% of
the requests of a 6 s run were missing). The summary therefore comes from the `--json-file`
written during shutdown, after the users stopped, aggregated exactly as Locust aggregates
its "Aggregated" row; the CSV row is the fallback when Locust was killed before writing it.
Write counts come from the ack log, which is exact by construction.

Rate: the users commit `batch` rows per transaction on a schedule that adds up to `rate`
acknowledged writes per second for the whole load (`pgdrill.load.pacing`); the summary
gives the rate asked for beside the rate acknowledged.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import psycopg
from psycopg import sql

from pgdrill.core.errors import BadInput, DeadlineExceeded, TargetError
from pgdrill.core.procs import pid_alive, process_start
from pgdrill.core.waiting import poll_until
from pgdrill.load.acklog import complete_size, count_acks, read_acks
from pgdrill.load.pacing import DEFAULT_BATCH, DEFAULT_RATE, DEFAULT_USERS, LoadPlan

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SAFETY_RUN_TIME = 3600  # seconds: the cap when no duration is given
START_TIMEOUT = 30.0  # seconds until the first acknowledged write
STOP_GRACE = 20.0  # seconds Locust gets to shut down after SIGTERM
USER_STOP_TIMEOUT = 5.0  # seconds a stopping user gets to finish its transaction (--stop-timeout)

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS pgdrill_ledger ("
    "client_id text NOT NULL, seq bigint NOT NULL, "
    "written_at timestamptz NOT NULL DEFAULT clock_timestamp(), payload text, "
    "PRIMARY KEY (client_id, seq))"
)

# Popen objects of the loads this process started, so that stop() can reap them.
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class LoadHandle:
    """A running (or finished) load; `to_dict`/`from_dict` round-trip it through JSON."""

    pid: int
    started_at: float  # epoch seconds
    run_dir: str
    ack_log: str
    ack_offset: int  # bytes of the ack log written before this load started
    locust_log: str
    csv_prefix: str
    json_file: str
    users: int
    spawn_rate: float
    run_time: float  # the --run-time given to Locust (duration or the safety cap)
    proc_start: str | None = None  # /proc/<pid>/stat start time: guards against pid reuse
    rate: float | None = None  # acknowledged writes/s asked for (None: unpaced)
    batch: int = 1  # rows per transaction

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LoadHandle:
        names = {f.name for f in fields(cls)}
        missing = {f.name for f in fields(cls) if f.default is MISSING} - set(data)
        if missing:
            raise BadInput(f"not a load handle: missing {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in names})


def create_ledger(conn: psycopg.Connection) -> None:
    """Create `pgdrill_ledger` if it does not exist (autocommit connection)."""
    conn.execute(LEDGER_DDL)


# libpq environment variables a LoadConnection may carry, as connection keywords
_LIBPQ_ENV = {
    "PGPASSWORD": "password",
    "PGUSER": "user",
    "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
}


def ledger_writable(connection, admin: psycopg.Connection) -> dict:
    """Make sure the role the load writes as can write `pgdrill_ledger`: created over the
    load's own connection (so that role owns it: CNPG's `app` owns only its database and
    gets no other grant), and, when an older table belongs to someone else, SELECT and
    INSERT granted to that role over `admin` (the superuser). Returns {role, owner,
    granted}; TargetError when the load's role cannot connect or still cannot write."""
    kwargs = {_LIBPQ_ENV[k]: v for k, v in (connection.env or {}).items() if k in _LIBPQ_ENV}
    try:
        with psycopg.connect(connection.conninfo, autocommit=True, **kwargs) as conn:
            try:
                create_ledger(conn)
            except psycopg.errors.InsufficientPrivilege:
                pass  # the superuser creates it below, and grants
            role = conn.execute("SELECT current_user").fetchone()[0]
    except psycopg.OperationalError as exc:
        secret = [v for k, v in (connection.env or {}).items() if k == "PGPASSWORD"]
        from pgdrill.credentials.secret import redact

        raise TargetError(
            f"the load cannot connect as the application user: {redact(str(exc).strip(), secret)}",
            fix="check the <cluster>-app Secret and pg_hba",
        ) from None
    create_ledger(admin)
    owner, can = admin.execute(
        "SELECT pg_get_userbyid(c.relowner), has_table_privilege(%s, c.oid, 'INSERT') AND "
        "has_table_privilege(%s, c.oid, 'SELECT') FROM pg_class c "
        "WHERE c.oid = 'pgdrill_ledger'::regclass",
        (role, role),
    ).fetchone()
    granted = False
    if not can:
        admin.execute(
            sql.SQL("GRANT SELECT, INSERT ON pgdrill_ledger TO {}").format(sql.Identifier(role))
        )
        granted = True
    return {"role": role, "owner": owner, "granted": granted}


def start(
    conninfo: str,
    run_dir: Path,
    users: int = DEFAULT_USERS,
    spawn_rate: float = 4,
    duration: float | None = None,
    *,
    rate: float | None = DEFAULT_RATE,
    batch: int = DEFAULT_BATCH,
    stop_with_parent: bool = True,
    start_timeout: float = START_TIMEOUT,
    extra_env: dict[str, str] | None = None,
) -> LoadHandle:
    """Start Locust and return once its first write was acknowledged.

    `rate`: acknowledged writes (rows) per second wanted from the whole load, None for no
    pacing (users commit back to back: a benchmark of the ceiling, not a drill's load);
    `batch`: rows per transaction (see `pgdrill.load.pacing`).
    `duration`: seconds after which Locust stops by itself; None means "until stop()", with
    a safety cap of SAFETY_RUN_TIME seconds. `stop_with_parent`: Locust also stops when this
    process exits (a drill that died without stopping its load).
    Raises TargetError naming the Locust log if Locust exits or nothing is acknowledged
    within `start_timeout` seconds (Locust is then stopped). `extra_env`: the target's
    environment for libpq (PGPASSWORD…), passed to Locust only, never recorded."""
    plan = LoadPlan(users=int(users), rate=None if rate is None else float(rate), batch=int(batch))
    users, spawn_rate = plan.users, float(spawn_rate)
    if spawn_rate <= 0:
        raise BadInput(f"spawn_rate ({spawn_rate}) must be positive")
    if duration is not None and float(duration) <= 0:
        raise BadInput(f"duration {duration} must be positive (or None for no limit)")
    run_time = float(duration) if duration is not None else float(SAFETY_RUN_TIME)
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    ack_log, locust_log = run_dir / "acks.csv", run_dir / "locust.log"
    csv_prefix, json_base = run_dir / "locust", run_dir / "locust_final"
    json_file = Path(f"{json_base}.json")  # Locust appends ".json" to --json-file
    json_file.unlink(missing_ok=True)
    ack_offset = complete_size(ack_log)
    initial = count_acks(ack_log)

    # reproducible (no LOCUST_* settings), and no cloud credentials: the load never needs them
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "AWS_"))}
    env |= {
        **(extra_env or {}),
        "PGDRILL_LOAD_CONNINFO": conninfo,
        "PGDRILL_ACK_LOG": str(ack_log),
        "PGDRILL_LOAD_BATCH": str(plan.batch),
        "PGDRILL_LOAD_INTERVAL": repr(plan.interval),
    }
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    if stop_with_parent:
        env["PGDRILL_LOAD_PARENT_PID"] = str(os.getpid())
    else:
        env.pop("PGDRILL_LOAD_PARENT_PID", None)
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        f"{spawn_rate:g}",
        "--run-time",
        f"{max(1, round(run_time))}s",
        "--csv",
        str(csv_prefix),
        "--json-file",
        str(json_base),
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--stop-timeout",
        f"{USER_STOP_TIMEOUT:g}",
    ]
    with open(locust_log, "ab") as log:
        log.write(f"\n# pgdrill: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=run_dir,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    handle = LoadHandle(
        pid=proc.pid,
        started_at=time.time(),
        run_dir=str(run_dir),
        ack_log=str(ack_log),
        ack_offset=ack_offset,
        locust_log=str(locust_log),
        csv_prefix=str(csv_prefix),
        json_file=str(json_file),
        users=users,
        spawn_rate=spawn_rate,
        run_time=run_time,
        proc_start=process_start(proc.pid),
        rate=plan.rate,
        batch=plan.batch,
    )

    def first_ack() -> bool:
        if proc.poll() is not None:
            raise TargetError(
                f"Locust exited with code {proc.returncode} before any write was "
                f"acknowledged{_log_tail(locust_log)}",
                fix=f"read {locust_log}",
            )
        return count_acks(ack_log) > initial

    try:
        poll_until(
            first_ack,
            timeout=start_timeout,
            interval=0.1,
            what="the load's first acknowledged write",
        )
    except DeadlineExceeded:
        _terminate(handle)
        raise TargetError(
            f"no write of the load was acknowledged within {start_timeout:.0f}s"
            f"{_failures_hint(handle)}",
            fix=f"check that the database accepts writes; read {locust_log}",
        ) from None
    except BaseException:
        _terminate(handle)
        raise
    return handle


def running(handle: LoadHandle) -> bool:
    """Whether the handle's Locust process still runs (and is that process)."""
    proc = _CHILDREN.get(handle.pid)
    if proc is not None:
        return proc.poll() is None
    if not pid_alive(handle.pid):
        return False
    return handle.proc_start is None or process_start(handle.pid) == handle.proc_start


def stop(handle: LoadHandle, *, grace: float = STOP_GRACE) -> dict:
    """Stop Locust (SIGTERM, then SIGKILL after `grace` seconds) and summarise the run:
    requests, failures, writes_acknowledged, writes_per_second, latency_ms {p50,p95,p99}
    (every request), write_latency_ms (write transactions only), duration_seconds, users,
    target_writes_per_second and rows_per_transaction (plus stats_source: where the request
    statistics came from). Safe to call on a load that already ended."""
    stopped = _terminate(handle, grace=grace)
    stats, source = _final_stats(handle)
    writes, _ = _final_stats(handle, name="write")
    acks = (
        read_acks(handle.ack_log, start=handle.ack_offset) if Path(handle.ack_log).exists() else []
    )
    span = (acks[-1].acked_at - acks[0].acked_at) if len(acks) > 1 else 0.0
    return {
        "requests": stats["requests"],
        "failures": stats["failures"],
        "writes_acknowledged": len(acks),
        "writes_per_second": round(len(acks) / span, 1) if span > 0 else 0.0,
        "latency_ms": stats["latency_ms"],
        "write_latency_ms": writes["latency_ms"],
        "duration_seconds": round(max(0.0, stopped - handle.started_at), 3),
        "users": handle.users,
        "target_writes_per_second": handle.rate,
        "rows_per_transaction": handle.batch,
        "stats_source": source,
    }


# -- stopping ----------------------------------------------------------------------------
def _terminate(handle: LoadHandle, grace: float = STOP_GRACE) -> float:
    """Stop the process if it runs; return when it ended (epoch seconds, best known)."""
    proc = _CHILDREN.get(handle.pid)
    if not running(handle):
        _reap(handle.pid)
        return _ended_at(handle)
    _signal(handle.pid, signal.SIGTERM)
    try:
        poll_until(
            lambda: not running(handle),
            timeout=grace,
            interval=0.1,
            what=f"Locust (pid {handle.pid}) to shut down after SIGTERM",
        )
    except DeadlineExceeded:
        _signal(handle.pid, signal.SIGKILL)
        poll_until(
            lambda: not running(handle),
            timeout=10,
            interval=0.1,
            what=f"Locust (pid {handle.pid}) to die after SIGKILL",
            fix=f"kill -9 {handle.pid}",
        )
    ended = time.time()
    if proc is not None:
        _reap(handle.pid)
    return ended


def _ended_at(handle: LoadHandle) -> float:
    """For a load that ended by itself: when Locust last wrote its statistics."""
    times = [
        Path(p).stat().st_mtime
        for p in (handle.json_file, f"{handle.csv_prefix}_stats.csv")
        if Path(p).exists()
    ]
    return max(times) if times else time.time()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


# -- statistics --------------------------------------------------------------------------
def _final_stats(handle: LoadHandle, name: str | None = None) -> tuple[dict, str]:
    """Every request's statistics, or only those of requests called `name`."""
    json_file = Path(handle.json_file)
    if json_file.exists():
        try:
            entries = json.loads(json_file.read_text())
            if name is not None:
                entries = [e for e in entries if e.get("name") == name]
            return stats_from_json(entries), "locust json"
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    row = aggregated_row(Path(f"{handle.csv_prefix}_stats.csv"), name or "Aggregated")
    if row is not None:
        return stats_from_csv_row(row), "locust csv (may lag the end by ~1s)"
    return {
        "requests": 0,
        "failures": 0,
        "latency_ms": {"p50": None, "p95": None, "p99": None},
    }, "none"


def percentile(response_times: dict[int, int], total: int, percent: float) -> int:
    """Locust's own percentile (locust.stats.calculate_response_time_percentile)."""
    wanted = int(total * percent)
    processed = 0
    for value in sorted(response_times, reverse=True):
        processed += response_times[value]
        if total - processed <= wanted:
            return value
    return 0


def stats_from_json(entries: list[dict]) -> dict:
    """Aggregate Locust's --json-file entries the way its "Aggregated" row does."""
    merged: dict[int, int] = {}
    requests = failures = 0
    for entry in entries:
        requests += int(entry["num_requests"])
        failures += int(entry["num_failures"])
        for value, count in entry["response_times"].items():
            key = int(float(value))
            merged[key] = merged.get(key, 0) + int(count)
    timed = sum(merged.values())
    latency = {
        name: (percentile(merged, timed, p) if timed else None)
        for name, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }
    return {"requests": requests, "failures": failures, "latency_ms": latency}


def aggregated_row(path: Path, name: str = "Aggregated") -> dict | None:
    """The row `name` (by default Locust's "Aggregated" one) of a `_stats.csv`."""
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("Name") == name:
                    return row
    except FileNotFoundError:
        return None
    return None


def stats_from_csv_row(row: dict) -> dict:
    def number(key: str) -> float | None:
        value = row.get(key)
        try:
            return float(value) if value not in (None, "", "N/A") else None
        except ValueError:
            return None

    requests = int(number("Request Count") or 0)
    return {
        "requests": requests,
        "failures": int(number("Failure Count") or 0),
        "latency_ms": {
            k: (number(col) if requests else None)
            for k, col in (("p50", "50%"), ("p95", "95%"), ("p99", "99%"))
        },
    }


# -- diagnostics -------------------------------------------------------------------------
def _log_tail(log: Path, lines: int = 5) -> str:
    try:
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    tail = tail[-lines:]
    return (":\n    " + "\n    ".join(tail)) if tail else ""


def _failures_hint(handle: LoadHandle) -> str:
    """The most frequent failure so far (Locust's _failures.csv), if any."""
    try:
        with open(f"{handle.csv_prefix}_failures.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return ""
    if not rows:
        return ""
    top = max(rows, key=lambda r: int(r.get("Occurrences") or 0))
    error = " ".join((top.get("Error") or "?").split())
    return f"; most frequent failure: {error[:300]}"
