"""Marking WAL segments for PostgreSQL's own archiver: `pg_wal/archive_status`.

A segment the archiver should upload has `<segment>.ready` there; one it has done (or that
arrived by streaming under archive_mode=on) has `<segment>.done`. The shell script below
re-marks segments `.ready`; it runs with $PGDATA set (in a CNPG pod by exec, or on the
sandbox as PostgreSQL's OS user). Pure here: the script, its argv, the reading of its output
(pgdrill.bucket.backfill uses them to close a failover's archive hole)."""

from __future__ import annotations

import re
from collections.abc import Callable

from pgdrill.core.errors import TargetError

SEGMENT_NAME = re.compile(r"^[0-9A-F]{24}$")

# $1..: segment file names, all complete (a hole lies before the switch segment). One line
# per segment: "<status> <segment>", status one of requeued (its .done renamed .ready),
# queued (already .ready), marked (no status file: .ready created, as PostgreSQL's own
# checkpointer does for such a file), absent (not in pg_wal any more: recycled or removed).
REQUEUE_SCRIPT = r"""
cd "$PGDATA/pg_wal" || { echo "no pg_wal under PGDATA=$PGDATA" >&2; exit 3; }
for s in "$@"; do
  if [ ! -f "$s" ]; then echo "absent $s"
  elif [ -f "archive_status/$s.ready" ]; then echo "queued $s"
  elif [ -f "archive_status/$s.done" ]; then
    mv "archive_status/$s.done" "archive_status/$s.ready" || exit 4
    echo "requeued $s"
  else : > "archive_status/$s.ready" || exit 4
    echo "marked $s"; fi
done
"""

STATUSES = ("requeued", "queued", "marked", "absent")
ARCHIVABLE = ("requeued", "queued", "marked")


def requeue_command(segments: list[str]) -> list[str]:
    """The argv that runs REQUEUE_SCRIPT for `segments` (validated: 24 hex digits each)."""
    bad = [s for s in segments if not SEGMENT_NAME.match(s)]
    if bad:
        raise ValueError(f"not WAL segment names: {', '.join(bad)}")
    return ["sh", "-c", REQUEUE_SCRIPT, "sh", *segments]


def parse_requeue(stdout: str, segments: list[str]) -> dict[str, str]:
    """segment -> status from the script's output; a segment it did not report is
    'unreported' (the script stopped early)."""
    seen = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in STATUSES:
            seen[parts[1]] = parts[0]
    return {s: seen.get(s, "unreported") for s in segments}


class ArchiverStalled(TargetError):
    """pg_stat_archiver's newest archived segment stood still while a later one was awaited."""


class ArchiverWatch:
    """Waiting for PostgreSQL's archiver to reach `segment`, judged from the successive values
    of pg_stat_archiver.last_archived_wal: a backlog that moves is waited for (after a 1 GB
    load the archiver may need minutes), one that stands still for `stall` seconds is a
    failure that names where it stopped. Pure: the clock is given."""

    def __init__(self, segment: str, stall: float, clock: Callable[[], float]) -> None:
        self.segment = segment
        self.stall = stall
        self.clock = clock
        self.last: str | None = None
        self.since = clock()

    def reached(self, last_archived: str | None) -> bool:
        """True once `last_archived` is `segment` or later; ArchiverStalled when it has not
        moved for `stall` seconds."""
        last = last_archived[:24] if last_archived else None
        if last is not None and last >= self.segment:
            return True
        now = self.clock()
        if last != self.last:
            self.last, self.since = last, now
        elif now - self.since > self.stall:
            raise ArchiverStalled(
                f"WAL archiving made no progress for {self.stall:.0f}s: the newest archived "
                f"segment is still {last or 'none'}, {self.segment} is awaited",
                fix="check the archive_command (the instance's log, pg_stat_archiver's "
                "last_failed_wal) and that the object store is reachable",
            )
        return False
