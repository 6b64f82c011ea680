"""Where recovery actually stopped, and whether that is where it was asked to stop. Pure.

On promotion PostgreSQL writes the new timeline's history file `pg_wal/<TLI>.history`; its
last line is `<parent timeline>\\t<switch LSN>\\t<reason>`, where the switch LSN is the end of
the last record replayed and the reason says why replay stopped:

    no recovery target specified          (replayed to the end of the archive)
    at restore point "name"
    before|after LSN 0/5000060
    before|after 2026-11-30 20:15:27.547253+00   (the commit timestamp it stopped at)
    before|after transaction 1234
    reached consistency                   (recovery_target = 'immediate')

A restore is proven only when that stop matches the request: a restore point's record ends
exactly at the LSN pg_create_restore_point returned; an LSN target stops at a record at or
after it; a time target stops at a commit no earlier than the target (within a tolerance);
"latest" stops at the end of the archive.

"No recovery target specified" is not proof of "latest" on its own: PostgreSQL says the same
when replay ends early at a record it cannot read (a damaged segment in the middle of the
chain), then promotes. So a restore to latest is also compared with the end of the archive
as listed when the restore started (`archive_end_mismatch`): recovery must reach at least
the beginning of the last segment listed then."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from pgdrill.core.errors import TargetError
from pgdrill.core.model import RecoveryTarget

# commit timestamps are microseconds; a stop "before" the target by more than this fails
TIME_TOLERANCE = timedelta(seconds=1)

_REASONS = (
    ("latest", re.compile(r"^no recovery target specified$")),
    ("restore_point", re.compile(r'^at restore point "(?P<value>.*)"$')),
    ("lsn", re.compile(r"^(?P<edge>before|after) LSN (?P<value>[0-9A-Fa-f]+/[0-9A-Fa-f]+)$")),
    ("xid", re.compile(r"^(?P<edge>before|after) transaction (?P<value>\d+)$")),
    ("immediate", re.compile(r"^reached consistency$")),
    ("time", re.compile(r"^(?P<edge>before|after) (?P<value>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d.*)$")),
)


def lsn_to_int(lsn: str) -> int:
    """'16/B374D848' -> 0x16B374D848."""
    try:
        high, low = lsn.strip().split("/")
        return (int(high, 16) << 32) | int(low, 16)
    except (AttributeError, ValueError):
        raise TargetError(f"{lsn!r} is not a PostgreSQL LSN (expected e.g. 0/5000060)") from None


@dataclass(frozen=True)
class ReachedPosition:
    """The stop recorded in the history file of the timeline recovery created."""

    timeline: int
    parent_timeline: int
    lsn: str
    reason: str
    stop_kind: str  # latest | restore_point | lsn | time | xid | immediate | unknown
    stop_value: str | None = None  # the restore point name, LSN, time or xid
    stop_edge: str | None = None  # before | after (lsn, time, xid)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.lsn} on timeline {self.parent_timeline} ({self.reason})"


def parse_history(text: str, timeline: int) -> ReachedPosition:
    """The last switch of the history file of `timeline` (the one promotion created)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise TargetError(f"the history file of timeline {timeline} has no switch line")
    parts = lines[-1].split("\t", 2)
    if len(parts) != 3:
        raise TargetError(f"cannot read the history line {lines[-1]!r} of timeline {timeline}")
    parent, lsn, reason = parts[0].strip(), parts[1].strip(), parts[2].strip()
    lsn_to_int(lsn)
    kind, value, edge = "unknown", None, None
    for name, pattern in _REASONS:
        match = pattern.match(reason)
        if match:
            kind = name
            value = match.groupdict().get("value")
            edge = match.groupdict().get("edge")
            break
    return ReachedPosition(
        timeline=timeline,
        parent_timeline=int(parent),
        lsn=lsn,
        reason=reason,
        stop_kind=kind,
        stop_value=value,
        stop_edge=edge,
    )


def _pg_time(value: str) -> datetime:
    # PostgreSQL's timestamptz_to_str: '2026-11-30 20:15:27.547253+00' (offset without minutes)
    text = value.strip()
    if re.search(r"[+-]\d\d$", text):
        text += ":00"
    return datetime.fromisoformat(text)


def position_mismatch(
    requested: RecoveryTarget,
    reached: ReachedPosition,
    expected_lsn: str | None = None,
    real_name: str | None = None,
) -> str | None:
    """Why `reached` is not the position `requested` asked for, or None when it is.

    `expected_lsn`: for a restore point, the LSN pg_create_restore_point returned (when the
    point was made in this run); `real_name`: the name actually written into the WAL."""
    kind = requested.kind
    where = f"recovery stopped at {reached.describe()}"
    if kind == "latest":
        if reached.stop_kind != "latest":
            return f"{where}, but the restore asked for the end of the archive"
        return None
    if kind == "restore_point":
        name = real_name or requested.name
        if reached.stop_kind != "restore_point" or reached.stop_value != name:
            return f"{where}, not at restore point {name!r}"
        if expected_lsn and lsn_to_int(reached.lsn) != lsn_to_int(expected_lsn):
            return (
                f"{where}: restore point {name!r} was created at {expected_lsn}, but "
                f"recovery stopped at {reached.lsn} — another restore point of the same "
                "name comes first in the WAL"
            )
        return None
    if kind == "lsn":
        if reached.stop_kind != "lsn":
            return f"{where}, not at LSN {requested.lsn}"
        if lsn_to_int(reached.stop_value) < lsn_to_int(requested.lsn):
            return f"{where}, before the requested LSN {requested.lsn}"
        return None
    if kind == "time":
        if reached.stop_kind != "time":
            return f"{where}, not at the recovery target time {requested.time.isoformat()}"
        stopped = _pg_time(reached.stop_value)
        if stopped < requested.time - TIME_TOLERANCE:
            return (
                f"{where}: {(requested.time - stopped).total_seconds():.3f}s before the "
                f"recovery target time {requested.time.isoformat()}"
            )
        return None
    return f"{where}: cannot judge a recovery target of kind {kind!r}"


def archive_end_mismatch(reached: ReachedPosition, archive_end: dict | None) -> str | None:
    """Why a restore to latest stopped short of the archive listed when it started
    (`archive_end`: pgdrill.bucket.restore_gate.archive_end), or None. Replay that reached
    the last listed segment replayed every segment before it; one that stopped earlier hit a
    segment it could not read and promoted anyway."""
    if not archive_end or not archive_end.get("begins_at"):
        return None
    if lsn_to_int(reached.lsn) >= lsn_to_int(archive_end["begins_at"]):
        return None
    return (
        f"recovery stopped at {reached.describe()}, before the end of the archive as "
        f"listed when the restore started (segment {archive_end['segment']}, from "
        f"{archive_end['begins_at']}): replay ended early at WAL it could not read — a "
        f"damaged or unreadable segment before {archive_end['segment']} — and promoted "
        f"as if it were the end"
    )
