"""The ack log: one line `client_id,seq,acked_at,sent_at` per write whose COMMIT returned to
the load generator, appended right after it returned. It is the ground truth that RPO and
lost-write counts are measured against, so it must never claim a write that did not commit.

`sent_at` is when the transaction's INSERT was sent (before `execute`), `acked_at` when its
COMMIT returned. Together they give a happens-before order that needs no clock jitter: a
transaction sent after another's COMMIT returned committed after it, so a copy that holds
the later one and lacks the earlier has a hole (pgdrill.verification.rpo). Logs written
before `sent_at` existed have three fields; they still read (`sent_at` None). A client_id
never contains a comma.

Rules that keep it exact (the load generator's side is in `pgdrill/load/locustfile.py`):

- A line is appended only after the COMMIT of its transaction returned. A transaction of
  several rows (one multi-row INSERT in autocommit) is acknowledged by all its lines at once,
  with the same `acked_at`, in one append: they committed atomically. A write whose outcome
  is unknown (an error, a broken connection, a user stopped while waiting for the server) is
  never logged, and its seq is never reused.
- Each append is one `write(2)` on an O_APPEND descriptor (repeated for the rest after a short
  write, which only a signal or a full disk causes), with no cooperative switch in between, so
  a reader sees whole lines except possibly the very last one (a write in progress, or a
  process killed mid-write). A last line without its newline is not trusted and skipped. One
  process writes a log at a time (the runner refuses a second load in the same run).
- After a failed append the writer is `broken` and appends nothing more: a torn line followed
  by a later one could read as a bogus ack.

Buffering, deliberately none in user space and no fsync: a `write(2)` per transaction costs a
few microseconds against the transaction's ~1 ms (measured on the sandbox: the ack log is
not where a drill's load spends its time). The kernel holds what was written, so a crash or
SIGKILL of the load process loses no ack it wrote; a buffer inside the process would lose
its tail there, and would also delay the acks that pollers (the first-ack wait, the failover
outage) read while the load runs. The cost of not calling fsync: a crash of the whole
machine can lose the log's tail. Losing a tail (either way) only under-counts acks: every
line still in the log is a committed write, so lost-write counts can never be inflated, but
a write whose ack was lost is not checked, so a loss of exactly those writes would go
unnoticed. That is accepted; an ack log that claimed more than was committed would not be."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from pgdrill.core.errors import BadInput


@dataclass(frozen=True)
class Ack:
    """One acknowledged write: `(client_id, seq)` is its key in `pgdrill_ledger`."""

    client_id: str
    seq: int
    acked_at: float  # epoch seconds, taken right after the COMMIT returned
    sent_at: float | None = None  # epoch seconds, taken before the INSERT was sent


def format_ack(client_id: str, seq: int, acked_at: float, sent_at: float | None = None) -> str:
    if sent_at is None:
        return f"{client_id},{seq},{acked_at:.6f}\n"
    return f"{client_id},{seq},{acked_at:.6f},{sent_at:.6f}\n"


class AckLogBroken(RuntimeError):
    """An append to the ack log failed: the log may end in a torn line, nothing more is written."""


class AckWriter:
    """Appends acks to the log; one per process, shared by all its users."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.broken: OSError | None = None

    def ack(
        self, client_id: str, seq: int, acked_at: float | None = None, sent_at: float | None = None
    ) -> None:
        self.ack_many(client_id, (seq,), acked_at, sent_at)

    def ack_many(
        self, client_id: str, seqs, acked_at: float | None = None, sent_at: float | None = None
    ) -> None:
        """Acknowledge every row `(client_id, seq)` of one committed transaction, in one
        append. Call it only once the transaction's COMMIT returned; `sent_at`: when the
        transaction was sent."""
        if "," in client_id or not client_id:
            raise ValueError(f"a client_id is non-empty and has no comma: {client_id!r}")
        when = time.time() if acked_at is None else acked_at
        self._append("".join(format_ack(client_id, seq, when, sent_at) for seq in seqs).encode())

    def _append(self, data: bytes) -> None:
        if self.broken is not None:
            raise AckLogBroken(
                f"the ack log {self.path} is broken since an append failed "
                f"({self.broken}); acks are no longer recorded"
            )
        if self._fd < 0:
            raise AckLogBroken(f"the ack log {self.path} is closed")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.broken = exc
            raise AckLogBroken(f"appending to the ack log {self.path} failed: {exc}") from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_acks(path: str | os.PathLike, start: int = 0) -> list[Ack]:
    """Every complete line of the ack log, in file order, from byte offset `start` (a line
    boundary, e.g. the log's size when a load started). Blank lines are skipped; a final
    line without a trailing newline (truncated) is ignored. A malformed complete line means
    the file is not an ack log: BadInput names it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise BadInput(
            f"no ack log at {path}", fix="start the load with actions.load.start_load"
        ) from None
    lines = text.split("\n")
    lines.pop()  # text after the last newline: "" or a truncated line
    acks = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            acks.append(parse_ack(line))
        except ValueError as exc:
            raise BadInput(
                f"{path}:{number} is not an ack line "
                f"(client_id,seq,acked_at[,sent_at]): {line[:80]!r} ({exc})"
            ) from None
    return acks


def parse_ack(line: str) -> Ack:
    """One line: `client_id,seq,acked_at,sent_at`, or the older `client_id,seq,acked_at`."""
    parts = line.split(",")
    if len(parts) not in (3, 4) or not parts[0]:
        raise ValueError(f"{len(parts)} fields" if parts[0] else "empty client_id")
    sent_at = float(parts[3]) if len(parts) == 4 else None
    return Ack(parts[0], int(parts[1]), float(parts[2]), sent_at)


def complete_size(path: str | os.PathLike) -> int:
    """The log's size up to its last newline, after cutting off a truncated last line (left
    by a writer killed mid-line) so that new lines do not get glued to it. 0 if missing."""
    try:
        with open(path, "rb+") as f:
            end = f.seek(0, os.SEEK_END)
            pos = end
            while pos > 0:
                start = max(0, pos - 4096)
                f.seek(start)
                chunk = f.read(pos - start)
                if b"\n" in chunk:
                    cut = start + chunk.rfind(b"\n") + 1
                    break
                pos = start
            else:
                cut = 0
            if cut != end:
                f.truncate(cut)
            return cut
    except FileNotFoundError:
        return 0


def count_acks(path: str | os.PathLike) -> int:
    """Number of complete ack lines so far (0 if the log does not exist yet); cheap enough
    to poll."""
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0
