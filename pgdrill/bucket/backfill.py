"""Closing the WAL archive's hole at a failover.

When a primary is lost (its pod killed, its storage gone), the WAL segments it had completed
but not yet archived are missing from the bucket for good: the promoted replica received
them by streaming, and with archive_mode=on (CNPG's fixed setting) PostgreSQL's walreceiver
marks every streamed segment `.done` in pg_wal/archive_status, so the new primary's archiver
never uploads them. Promotion archives only the switch segment's `.partial` and the new
history file. Every backup taken before the failover then stops at the hole: a restore "to
latest" loses everything after it, and PITR into the window after it is impossible.
(Observed on the lab with the real operator; the same mechanism is described by
cloudnative-pg#5969 for a former primary, and by ubicloud#6279/#6450.)

While the new primary still holds those segments in pg_wal (CNPG's wal_keep_size keeps
them for a while), re-marking them `.ready` makes PostgreSQL's own archiver upload them
through the cluster's own archive_command (CNPG's wal-archive, in-tree or through the
barman-cloud plugin): no copy of pgdrill's, the cluster's compression and encryption apply.

Here: which gaps are failover holes and their segments (pure), and `backfill`, which has the
target re-mark them (pgdrill.pg.archive_status's script) and waits for the bucket to list
them. The action that uses it is actions.backup.backfill_wal_archive.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pgdrill.bucket.walchain import Gap, WalChain, segment_of
from pgdrill.pg.archive_status import ARCHIVABLE
from pgdrill.restore.walscan import segment_file


def failover_holes(chain: WalChain) -> list[Gap]:
    """The gaps that are an old timeline's last segments before a switch (walchain's
    `Gap.switch_to`): the ones a new primary may still hold in its pg_wal."""
    return [g for g in chain.gaps if g.switch_to is not None]


def hole_segments(gap: Gap, segment_size: int) -> list[str]:
    """Every segment file name of a gap, first to last (they share the gap's timeline)."""
    first, last = (
        segment_of(gap.first_missing, segment_size),
        segment_of(gap.last_missing, segment_size),
    )
    if first is None or last is None:
        raise ValueError(f"not a WAL segment range: {gap.first_missing}..{gap.last_missing}")
    return [segment_file(first[0], n, segment_size) for n in range(first[1], last[1] + 1)]


@dataclass(frozen=True)
class BackfillOutcome:
    """What the backfill found and did; `to_dict` is the run context's `wal_backfill`."""

    holes: list[dict]  # the failover holes as found (Gap.to_dict())
    instance: str | None = None  # the primary whose pg_wal was used
    segments: dict[str, str] | None = None  # segment -> requeue status
    closed: bool = False  # every hole is archived now
    seconds: float | None = None  # from the requeue to the bucket listing them all
    problem: str | None = None  # why a hole stays
    fix: str | None = None

    def to_dict(self) -> dict:
        return {
            "holes": self.holes,
            "hole_segments": sum(h["segments"] for h in self.holes),
            "instance": self.instance,
            "segments": self.segments,
            "closed": self.closed,
            "seconds": self.seconds,
            "problem": self.problem,
            "fix": self.fix,
        }


def unarchivable(statuses: dict[str, str]) -> list[str]:
    """The segments the new primary cannot archive (absent, unreported)."""
    return [s for s, status in statuses.items() if status not in ARCHIVABLE]


def permanent_hole_message(instance: str, statuses: dict[str, str], holes: list[Gap]) -> str:
    """Why the hole stays: which segments are gone from the new primary, and the cost."""
    missing = unarchivable(statuses)
    what = ", ".join(f"{s} ({statuses[s]})" for s in missing[:6])
    more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
    stops = "; ".join(g.problem or g.missing_phrase() for g in holes)
    return (
        f"the WAL archive's hole at the failover cannot be closed: {instance} no longer "
        f"holds {what}{more} in pg_wal. {stops}"
    )


def backfill(target, *, timeout: float, nudge=None, report=None) -> BackfillOutcome:
    """Find the failover holes in the target's bucket, re-queue their segments on the
    primary, and wait (at most `timeout` s) until the bucket lists every one. Never raises
    for a hole it cannot close: the outcome then has `closed` False, a `problem` and a
    `fix`. `nudge(target)` wakes the archiver (default: pg_switch_wal on the primary);
    `report(location, recheck_seconds)` lists and judges the bucket (restore_gate's)."""
    import time

    from pgdrill.bucket.restore_gate import report_bucket
    from pgdrill.core.console import say
    from pgdrill.core.errors import DeadlineExceeded
    from pgdrill.core.waiting import poll_until

    report = report or (lambda location, recheck: report_bucket(location, recheck_seconds=recheck))
    nudge = nudge or switch_wal
    location = target.bucket_location()
    first = report(location, 10.0)
    holes = failover_holes(first.chain)
    if not holes:
        say(f"the WAL archive {location.archive} has no hole at a timeline switch")
        return BackfillOutcome([], closed=True)
    size = first.wal_segment_size
    segments = [s for g in holes for s in hole_segments(g, size)]
    say(
        f"the WAL archive has a hole at the failover: {', '.join(segments)} "
        f"(never archived by the primary that was lost); re-queueing them on the new primary"
    )
    instance, statuses = target.requeue_wal(segments)
    found = BackfillOutcome([g.to_dict() for g in holes], instance, statuses)
    if unarchivable(statuses):
        return replace(
            found,
            problem=permanent_hole_message(instance, statuses, holes),
            fix="take a new backup now (only it restores past the failover); in "
            "production, keep archiving ahead of WAL generation "
            "(pg_stat_archiver on the primary)",
        )
    started = time.monotonic()
    nudge(target)

    def closed() -> bool:
        missing = {s for g in report(location, 0.0).chain.gaps for s in hole_segments(g, size)}
        return not missing & set(segments)

    try:
        poll_until(
            closed,
            timeout=timeout,
            interval=2.0,
            what=f"{instance}'s archiver to upload {', '.join(segments)}",
            fix=f"check archiving on {instance}: pg_stat_archiver (failed_count, "
            f"last_failed_wal) and its log",
        )
    except DeadlineExceeded as exc:
        return replace(found, problem=exc.message, fix=exc.fix)
    seconds = round(time.monotonic() - started, 3)
    say(
        f"{instance} archived the {len(segments)} missing segment(s) in {seconds:.1f}s: "
        f"backups taken before the failover restore past it again"
    )
    return replace(found, closed=True, seconds=seconds)


def switch_wal(target) -> None:
    """Wake the primary's archiver: pg_switch_wal() notifies it (it otherwise scans
    archive_status only every 60 s)."""
    with target.connect(target.primary(), "postgres") as conn:
        conn.execute("SELECT pg_switch_wal()")
