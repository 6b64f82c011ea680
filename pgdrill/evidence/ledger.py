"""The run ledger: `reports/ledger.jsonl`, one tamper-evident JSON line per finished drill run.

Every line is the canonical JSON (sorted keys, no spaces) of one run's record plus:

- `seq`: its 1-based line number;
- `evidence_sha256`, `journal_sha256`: sha256 of the run folder's evidence.json/journal.json
  (None when the file was absent);
- `prev_sha256`: sha256 of the previous line's bytes (64 zeros on the first line), chaining
  every line to the one before it;
- `recorded_at`: when the line was appended;
- `line_sha256`: sha256 of the canonical JSON of everything else on the line.

Each run folder also gets `ledger-receipt.json` holding the exact line appended for it, so the
deletion or rewriting of the *last* lines is caught as long as the run folder is kept.

The guardrails (pgdrill.evidence.policy) read the ledger only through `verified_entries`,
which refuses a ledger that does not verify."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pgdrill.core.errors import BadInput, PgdrillError
from pgdrill.core.files import fsync_dir, write_atomically

LEDGER_NAME = "ledger.jsonl"
LOCK_NAME = "ledger.lock"
RECEIPT_NAME = "ledger-receipt.json"
RECEIPT_SCHEMA = "pgdrill.ledger-receipt/1"
EVIDENCE_FILES = {"evidence_sha256": "evidence.json", "journal_sha256": "journal.json"}
ZERO_SHA256 = "0" * 64
VERDICTS = ("passed", "failed", "interrupted", "refused")
REQUIRED = (
    "run_id",
    "experiment",
    "environment",
    "target",
    "cluster",
    "verdict",
    "started_at",
    "ended_at",
)
OPTIONAL = ("cluster_identity", "backup", "rto_seconds", "lost_writes", "restore_reached")
ADDED = ("seq", "evidence_sha256", "journal_sha256", "prev_sha256", "recorded_at", "line_sha256")


class LedgerTampered(PgdrillError):
    """The run ledger (or a run folder it vouches for) changed after it was recorded."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One verification failure: the 1-based ledger line it concerns (None when it concerns
    no line) and what is wrong."""

    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


# -- paths and hashing ----------------------------------------------------------------------
def ledger_path(reports_dir: str | os.PathLike) -> Path:
    """Where the ledger of `reports_dir` lives."""
    return Path(reports_dir) / LEDGER_NAME


def default_reports_dir(configuration: dict | None = None) -> Path:
    """The reports folder: `configuration["reports_dir"]`, else $PGDRILL_REPORTS, else
    ./reports."""
    configured = (configuration or {}).get("reports_dir")
    return Path(configured or os.environ.get("PGDRILL_REPORTS") or "reports")


def canonical_json(data: dict) -> str:
    """The one serialisation the ledger hashes and writes: sorted keys, no whitespace."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256_hex(data: bytes) -> str:
    """sha256 of `data`, as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def line_hash(entry: dict) -> str:
    """The `line_sha256` an entry must carry: the hash of its canonical JSON without it."""
    body = {k: v for k, v in entry.items() if k != "line_sha256"}
    return sha256_hex(canonical_json(body).encode())


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, or None when it does not exist."""
    try:
        return sha256_hex(path.read_bytes())
    except FileNotFoundError:
        return None


def _safe_run_id(run_id: object) -> bool:
    return (
        isinstance(run_id, str)
        and run_id not in ("", ".", "..")
        and "/" not in run_id
        and "\\" not in run_id
        and "\0" not in run_id
    )


@contextmanager
def _locked(reports: Path, exclusive: bool) -> Iterator[None]:
    """flock on reports/ledger.lock: appends are exclusive, verification shared, so a
    verification never sees a line without its receipt. Without a writable reports folder
    (a read-only copy) verification runs unlocked."""
    try:
        fd = os.open(reports / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if exclusive:
            raise
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _lines(data: bytes) -> list[bytes]:
    """The ledger's lines: exactly the bytes between newlines (a last line may lack one)."""
    lines = data.split(b"\n")
    return lines[:-1] if lines[-1] == b"" else lines


# -- appending ------------------------------------------------------------------------------
def _check_record(record: dict, reports: Path, run_dir: Path) -> dict:
    if not isinstance(record, dict):
        raise BadInput(f"a ledger record must be a dict, got {type(record).__name__}")
    missing = [k for k in REQUIRED if record.get(k) in (None, "")]
    if missing:
        raise BadInput(
            f"the ledger record lacks {', '.join(missing)}",
            fix=f"pass every one of {', '.join(REQUIRED)}",
        )
    reserved = [k for k in ADDED if k in record]
    if reserved:
        raise BadInput(
            f"the ledger record sets {', '.join(reserved)}, which append_run computes",
            fix="leave those keys out of the record",
        )
    run_id = record["run_id"]
    if not _safe_run_id(run_id):
        raise BadInput(f"run_id {run_id!r} is not a folder name")
    if run_dir.resolve() != (reports / run_id).resolve():
        raise BadInput(
            f"run folder {run_dir} is not {reports / run_id}",
            fix="pass run_dir = reports_dir / record['run_id']",
        )
    if not run_dir.is_dir():
        raise BadInput(f"run folder {run_dir} does not exist")
    if record["verdict"] not in VERDICTS:
        raise BadInput(f"verdict {record['verdict']!r} is not one of {', '.join(VERDICTS)}")
    for key in ("started_at", "ended_at"):
        try:
            when = datetime.fromisoformat(str(record[key]))
        except ValueError as exc:
            raise BadInput(f"{key} {record[key]!r} is not an ISO-8601 time") from exc
        if when.tzinfo is None:
            raise BadInput(
                f"{key} {record[key]!r} has no UTC offset", fix="use datetime.now(UTC).isoformat()"
            )
    backup = record.get("backup")
    if backup is not None and not (isinstance(backup, dict) and backup.get("id")):
        raise BadInput(f"the record's backup must be None or a dict with an id, got {backup!r}")
    return {**{k: None for k in OPTIONAL}, **record}


def append_run(reports_dir: str | os.PathLike, run_dir: str | os.PathLike, record: dict) -> dict:
    """Append one finished run to `reports_dir/ledger.jsonl` and return the entry written.

    `run_dir` must be `reports_dir / record["run_id"]`, already holding the run's
    evidence.json and journal.json, whose hashes the line records. Appends are serialised
    with an flock (two drills may finish together) and fsync'ed; the exact line is also
    written to `run_dir/ledger-receipt.json`. A run already in the ledger is refused
    (BadInput): one line per run."""
    reports, run = Path(reports_dir), Path(run_dir)
    entry = _check_record(record, reports, run)
    try:
        return _append(reports, run, entry)
    except OSError as exc:
        raise PgdrillError(
            f"cannot record run {entry['run_id']} in {ledger_path(reports)}: {exc}",
            fix=f"make {reports} writable",
        ) from exc


def _append(reports: Path, run: Path, entry: dict) -> dict:
    reports.mkdir(parents=True, exist_ok=True)
    path = ledger_path(reports)
    with _locked(reports, exclusive=True):
        existing = path.read_bytes() if path.exists() else b""
        lines = _lines(existing)
        for number, raw in enumerate(lines, 1):
            try:
                if json.loads(raw).get("run_id") == entry["run_id"]:
                    raise BadInput(
                        f"run {entry['run_id']} is already in the ledger (line {number})",
                        fix="record each run once",
                    )
            except (ValueError, AttributeError):
                continue  # a damaged line: `verify` names it; the new line is still recorded
        entry.update(
            seq=len(lines) + 1,
            prev_sha256=sha256_hex(lines[-1]) if lines else ZERO_SHA256,
            recorded_at=datetime.now(UTC).isoformat(),
            **{key: file_sha256(run / name) for key, name in EVIDENCE_FILES.items()},
        )
        try:
            entry["line_sha256"] = line_hash(entry)
            line = canonical_json(entry)
        except (TypeError, ValueError) as exc:
            raise BadInput(
                f"the ledger record of run {entry['run_id']} is not plain JSON: {exc}",
                fix="pass strings, numbers, booleans, None, lists "
                "and dicts only (times as ISO-8601 strings)",
            ) from exc
        # a torn last line (a crash mid-write) stays on its own line for `verify` to name
        data = (b"\n" if existing and not existing.endswith(b"\n") else b"") + line.encode()
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(reports)
        receipt = {"schema": RECEIPT_SCHEMA, "seq": entry["seq"], "line": line}
        write_atomically(run / RECEIPT_NAME, json.dumps(receipt, indent=2) + "\n", durable=True)
    return entry


# -- verifying ------------------------------------------------------------------------------
def _check_lines(reports: Path, lines: list[bytes]) -> tuple[list[Problem], list[dict | None]]:
    problems: list[Problem] = []
    entries: list[dict | None] = []
    seen: dict[str, int] = {}
    prev_seq = 0
    for n, raw in enumerate(lines, 1):
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            problems.append(Problem(n, "is not a valid JSON object: it was edited or torn"))
            entries.append(None)
            prev_seq = n
            continue
        entries.append(entry)
        seq = entry.get("seq")
        is_int = isinstance(seq, int) and not isinstance(seq, bool)
        # a seq equal to its line number, or continuing the line before (after a gap that
        # is already named), is fine: one deletion is named once, not on every later line
        seq_ok = is_int and seq in (n, prev_seq + 1)
        prev_seq = seq if is_int else n
        if not seq_ok:
            problems.append(
                Problem(
                    n, f"has seq {seq!r}, expected {n}: a line was deleted, inserted or moved here"
                )
            )
        expected_prev = sha256_hex(lines[n - 2]) if n > 1 else ZERO_SHA256
        if entry.get("prev_sha256") != expected_prev and seq_ok:
            if n == 1:
                problems.append(
                    Problem(
                        1,
                        "is not the first line that was recorded (its "
                        "prev_sha256 is not 64 zeros): lines were deleted",
                    )
                )
            else:
                problems.append(
                    Problem(
                        n - 1,
                        f"is not the line that line {n} chained to "
                        f"(line {n}'s prev_sha256 does not match): it "
                        f"was edited or moved after it was recorded",
                    )
                )
        if entry.get("line_sha256") != line_hash(entry):
            problems.append(Problem(n, "was edited: its line_sha256 does not match its content"))
        elif raw.decode("utf-8", "replace") != canonical_json(entry):
            problems.append(Problem(n, "was rewritten: it is not in canonical form"))
        run_id = entry.get("run_id")
        if not _safe_run_id(run_id):
            problems.append(Problem(n, f"has an invalid run_id {run_id!r}"))
            continue
        if run_id in seen:
            problems.append(
                Problem(n, f"repeats run {run_id}, already recorded at line {seen[run_id]}")
            )
        seen.setdefault(run_id, n)
        run_dir = reports / run_id
        if not run_dir.is_dir():
            continue  # pruned reports are fine
        for key, name in EVIDENCE_FILES.items():
            now = file_sha256(run_dir / name)
            recorded = entry.get(key)
            if now == recorded:
                continue
            if now is None:
                what = "was removed"
            elif recorded is None:
                what = "appeared"
            else:
                what = "was changed"
            problems.append(
                Problem(n, f"run {run_id}: {run_dir / name} {what} after the run was recorded")
            )
    return problems, entries


def _check_receipts(reports: Path, lines: list[bytes]) -> list[Problem]:
    problems = []
    for path in sorted(reports.glob(f"*/{RECEIPT_NAME}")):
        try:
            receipt = json.loads(path.read_text(encoding="utf-8"))
            seq, line = receipt["seq"], receipt["line"]
            if not isinstance(seq, int) or seq < 1 or not isinstance(line, str):
                raise ValueError("bad seq or line")
        except (OSError, ValueError, KeyError, TypeError):
            problems.append(Problem(None, f"receipt {path} is unreadable"))
            continue
        if seq > len(lines):
            problems.append(
                Problem(
                    seq,
                    f"is missing: receipt {path} names line {seq} but "
                    f"the ledger has {len(lines)} lines (lines were "
                    f"deleted)",
                )
            )
        elif lines[seq - 1] != line.encode():
            problems.append(
                Problem(
                    seq,
                    f"differs from the line receipt {path} holds: it was "
                    f"edited, or lines were deleted, inserted or moved",
                )
            )
    return problems


def _verify(reports: Path) -> tuple[list[Problem], list[dict | None]]:
    if not reports.is_dir():
        return [], []
    with _locked(reports, exclusive=False):
        path = ledger_path(reports)
        lines = _lines(path.read_bytes() if path.exists() else b"")
        problems, entries = _check_lines(reports, lines)
        problems += _check_receipts(reports, lines)
    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    return problems, entries


def verify(reports_dir: str | os.PathLike) -> list[Problem]:
    """Every problem with `reports_dir/ledger.jsonl`, first bad line first; [] when it verifies.

    Catches an edited line (bad JSON, line_sha256 mismatch, or — when the editor recomputed
    line_sha256 — the next line's prev_sha256 or, for the last line, its receipt), deleted,
    inserted or swapped lines (seq and prev_sha256 chain), deleted last lines (receipts naming
    lines the ledger no longer has), and evidence.json/journal.json changed after their run was
    recorded (when the run folder is still there; pruned folders are fine). An absent ledger
    is empty and valid."""
    return _verify(Path(reports_dir))[0]


def verified_entries(reports_dir: str | os.PathLike) -> list[dict]:
    """The ledger's entries, oldest first; raises LedgerTampered, naming the first bad line,
    when `verify` finds any problem."""
    reports = Path(reports_dir)
    problems, entries = _verify(reports)
    if problems:
        first = problems[0]
        more = (
            f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''};"
            f" `pgdrill ledger verify --reports {reports}` lists them)"
            if len(problems) > 1
            else ""
        )
        where = f"line {first.line} " if first.line is not None else ""
        raise LedgerTampered(
            f"the run ledger {ledger_path(reports)} does not verify: {where}{first.message}{more}",
            fix=f"restore {ledger_path(reports)} (and the run folders) from your backup or "
            f"version control; a drill re-run records a new line",
        )
    return [e for e in entries if e is not None]
