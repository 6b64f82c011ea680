"""WAL continuity and the recoverable window of a barman-cloud bucket, computed from what the
bucket holds (pure: no I/O; the caller lists the bucket and reads the history files).

Input: the objects under `<destinationPath>/<serverName>/` as (key relative to that folder,
size in bytes), e.g. ("wals/0000000100000000/000000010000000000000002.gz", 1234), or as
(key, size, LastModified) when the listing has the upload times; the base
backups as `pgdrill.core.model.Backup`; the text of the timeline history files by timeline; the
cluster's `wal_segment_size`.

Rules:
- A segment is an object under `wals/` whose file name, once a compression suffix (.gz .bz2
  .xz .snappy .zst .lz4) is stripped, is 24 hex digits TTTTTTTTXXXXXXXXYYYYYYYY. `.partial`
  and `<segment>.<offset>.backup` files are not segments; `TTTTTTTT.history` are histories;
  everything else (base/…) is ignored here. A zero-byte segment object counts as missing.
- Timelines: the newest timeline seen (in segments, history files, backups or the history
  texts) is followed through its history, exactly as `pgdrill.restore.walscan.plan_segments` does:
  segment n is read from the newest timeline whose range covers n and whose file is there.
  So the segment holding a switch is wanted on the new timeline (the old timeline's copy
  would also do, as in plan_segments, but is not required), and an old timeline's segments
  past its switch are neither needed nor counted.
- The WAL needed runs from the oldest completed backup's begin_wal to the newest archived
  segment (or the newest backup's end_wal, if later). Every run of segments missing there is
  a Gap. Gaps before the oldest backup do not matter and are not looked at.
- A backup can be restored only if every segment from its begin_wal to its end_wal is there;
  it can then recover up to the end of the last segment before the first gap after its
  end_wal (or the newest archived segment when there is none). Only completed backups count.
- The bucket holds no per-segment commit times: windows end at a segment and its end LSN.
  When the listing gives LastModified, a segment's upload time ("archived at") is an upper
  bound of the last commit it holds: a gap's sentence then names the last recoverable
  instant as "at the latest" that time, and says why it is only a bound. Without times the
  sentence ends at the missing segments. That sentence (`Gap.problem`) is THE message for a
  gap: `pgdrill bucket-report` lists it and a restore to latest across the gap is refused
  with it (`WalChain.restore_problems`). The overall window starts, as the barman-cloud plugin's
  `serverRecoveryWindow.firstRecoverabilityPoint` does, at the end of the oldest backup (here:
  the oldest that can be restored) and ends at the newest WAL reachable without a gap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from pgdrill.core.model import Backup
from pgdrill.restore.position import lsn_to_int
from pgdrill.restore.walscan import (
    covering_timelines,
    format_lsn,
    parse_history,
    segment_file,
    timeline_ranges,
)

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".snappy", ".zst", ".lz4")
SEGMENT = re.compile(r"^[0-9A-F]{24}$")
HISTORY = re.compile(r"^([0-9A-Fa-f]{8})\.history$")

Ranges = list[tuple[int, int, int | None]]
Listing = Iterable[tuple[str, int] | tuple[str, int, datetime | None]]


# --- names -------------------------------------------------------------------------------


def strip_compression(name: str) -> str:
    """'000000010000000000000002.gz' -> '000000010000000000000002'."""
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def wal_file_name(key: str) -> str | None:
    """The file name of a `wals/...` key without its compression suffix; None otherwise."""
    if not key.startswith("wals/"):
        return None
    return strip_compression(key.rsplit("/", 1)[-1])


def segment_of(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[int, int] | None:
    """(timeline, segment number) of a 24-hex segment name; None when it is not one."""
    name = name.upper()
    if not SEGMENT.match(name):
        return None
    per_id = 0x100000000 // segment_size
    log, seg = int(name[8:16], 16), int(name[16:24], 16)
    if seg >= per_id:
        return None
    return int(name[:8], 16), log * per_id + seg


def segment_end_lsn(segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    """The LSN where segment `segno` ends (the next one begins)."""
    return format_lsn((segno + 1) * segment_size)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _backups_phrase(ids: list[str]) -> str:
    return ("backup " if len(ids) == 1 else "backups ") + ", ".join(ids)


def iso_time(when: datetime | None) -> str | None:
    """An aware time as ISO-8601 in UTC, whole seconds kept as they are ('...+00:00')."""
    return when.astimezone(UTC).isoformat() if when else None


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineWal:
    """The segments one timeline has in the bucket (non-empty ones in `segments`)."""

    timeline: int
    segments: list[str]
    empty: list[str] = field(default_factory=list)
    history: bool = False  # its TTTTTTTT.history is in the bucket

    @property
    def first(self) -> str | None:
        return self.segments[0] if self.segments else None

    @property
    def last(self) -> str | None:
        return self.segments[-1] if self.segments else None

    def to_dict(self) -> dict:
        return {
            "timeline": self.timeline,
            "segments": len(self.segments),
            "first": self.first,
            "last": self.last,
            "empty": list(self.empty),
            "history": self.history,
        }


@dataclass(frozen=True)
class Gap:
    """A run of segments needed but missing (or zero bytes) in the bucket."""

    first_missing: str  # the file wanted for the run's first segment
    last_missing: str
    segments: int
    empty: list[str]  # of these, the ones whose object exists with zero bytes
    last_recoverable: str | None  # the segment just before the run, None if none is needed
    affected: list[str]  # backups whose point-in-time recovery stops here
    broken: list[str]  # backups that cannot be restored at all because of it
    last_lsn: str | None = None  # where replay ends: the end of last_recoverable
    last_archived_at: datetime | None = None  # LastModified of last_recoverable, if listed
    problem: str | None = None  # THE sentence for this gap (when it cuts a window)
    # the timeline that begins right after the run, when the run is the old timeline's last
    # segments before a switch: a failover hole (see `failover_phrase`)
    switch_to: int | None = None

    def missing_phrase(self) -> str:
        what = "an empty (zero-byte) object" if self.first_missing in self.empty else "missing"
        return f"{self.first_missing} is {what} ({_plural(self.segments, 'segment')})"

    def to_dict(self) -> dict:
        return {
            "first_missing": self.first_missing,
            "last_missing": self.last_missing,
            "segments": self.segments,
            "empty": list(self.empty),
            "last_recoverable": self.last_recoverable,
            "last_lsn": self.last_lsn,
            "last_archived_at": iso_time(self.last_archived_at),
            "affected_backups": list(self.affected),
            "unrestorable_backups": list(self.broken),
            "problem": self.problem,
            "failover_hole": self.switch_to is not None,
            "before_switch_to_timeline": self.switch_to,
        }


@dataclass(frozen=True)
class BackupWindow:
    """What one backup can recover to: from its end to `last_segment` (None: not at all)."""

    backup: str
    begin_wal: str | None
    end_wal: str | None
    end_time: datetime | None
    restorable: bool
    last_segment: str | None = None
    last_lsn: str | None = None
    reaches_newest: bool = False

    def to_dict(self) -> dict:
        return {
            "backup": self.backup,
            "begin_wal": self.begin_wal,
            "end_wal": self.end_wal,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "restorable": self.restorable,
            "last_segment": self.last_segment,
            "last_lsn": self.last_lsn,
            "reaches_newest": self.reaches_newest,
        }


@dataclass(frozen=True)
class RecoveryWindow:
    """The server's recoverable window (serverRecoveryWindow's view, with WAL positions):
    from the end of the oldest restorable backup to the newest WAL reachable without a gap."""

    first_backup: str
    first_recoverability_point: datetime | None  # that backup's end_time
    first_wal: str | None  # that backup's end_wal
    last_successful_backup_time: datetime | None  # the newest completed backup's end_time
    last_segment: str
    last_lsn: str
    timeline: int  # the timeline of last_segment
    reaches_newest: bool

    def to_dict(self) -> dict:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "first_backup": self.first_backup,
            "first_recoverability_point": iso(self.first_recoverability_point),
            "first_wal": self.first_wal,
            "last_successful_backup_time": iso(self.last_successful_backup_time),
            "last_segment": self.last_segment,
            "last_lsn": self.last_lsn,
            "timeline": self.timeline,
            "reaches_newest": self.reaches_newest,
        }


@dataclass(frozen=True)
class WalChain:
    timeline: int  # the newest timeline, whose history is followed
    timelines: list[TimelineWal]
    first_needed: str | None  # the oldest backup's begin_wal
    newest: str | None  # the newest segment needed (archived or a backup's end)
    gaps: list[Gap]
    backups: list[BackupWindow]
    window: RecoveryWindow | None
    problems: list[str]
    ranges: Ranges = field(default_factory=list)  # the followed history, oldest first
    # backup id -> the sentence why a restore of it cannot replay to the newest WAL: the
    # gap's `problem`, or why it cannot be restored at all (the same text as in `problems`)
    restore_problems: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "timeline": self.timeline,
            "timelines": [t.to_dict() for t in self.timelines],
            "first_needed": self.first_needed,
            "newest": self.newest,
            "gaps": [g.to_dict() for g in self.gaps],
            "backups": [b.to_dict() for b in self.backups],
            "window": self.window.to_dict() if self.window else None,
            "problems": list(self.problems),
            "history": [
                {
                    "timeline": tli,
                    "begin_lsn": format_lsn(begin),
                    "end_lsn": format_lsn(end) if end is not None else None,
                }
                for tli, begin, end in self.ranges
            ],
            "restore_problems": dict(self.restore_problems),
        }


# --- the computation ---------------------------------------------------------------------


def read_listing(
    objects: Listing, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> tuple[dict[int, dict[int, int]], set[int]]:
    """({timeline: {segment number: size}}, timelines with a history file) of a listing."""
    segments: dict[int, dict[int, int]] = {}
    histories: set[int] = set()
    for key, size, *_ in objects:
        name = wal_file_name(key)
        if name is None:
            continue
        history = HISTORY.match(name)
        if history:
            histories.add(int(history.group(1), 16))
            continue
        found = segment_of(name, segment_size)
        if found:
            tli, segno = found
            seen = segments.setdefault(tli, {})
            seen[segno] = max(seen.get(segno, 0), int(size or 0))
    return segments, histories


def segment_times(
    objects: Listing, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> dict[str, datetime]:
    """Segment file name (24 hex digits) -> when its non-empty object was uploaded
    (LastModified), for listings that carry times; the newest upload when several objects
    hold the same segment (e.g. .gz and uncompressed)."""
    times: dict[str, datetime] = {}
    for key, size, *rest in objects:
        when = rest[0] if rest else None
        name = wal_file_name(key)
        if when is None or not size or name is None or segment_of(name, segment_size) is None:
            continue
        name = name.upper()
        times[name] = max(times[name], when) if name in times else when
    return times


def _backup_segments(backup: Backup, segment_size: int) -> tuple[int | None, int | None]:
    """(begin, end) segment numbers of a backup, from begin_wal/end_wal or else the LSNs."""

    def one(wal: str | None, lsn: str | None) -> int | None:
        found = segment_of(wal, segment_size) if wal else None
        if found:
            return found[1]
        return lsn_to_int(lsn) // segment_size if lsn else None

    begin = one(backup.begin_wal, backup.begin_lsn)
    end = one(backup.end_wal, backup.end_lsn)
    return begin, end if end is not None else begin


def analyse_wal_chain(
    objects: Iterable[tuple[str, int]],
    backups: Iterable[Backup],
    histories: dict[int, str] | None = None,
    wal_segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> WalChain:
    """WAL continuity and the recoverable window of one server's folder in the bucket (see
    the module docstring for the rules). `histories`: timeline -> its history file's text."""
    size = wal_segment_size
    histories = histories or {}
    objects = list(objects)
    segments, history_files = read_listing(objects, size)
    archived_at = segment_times(objects, size)
    done = sorted(
        (b for b in backups if b.completed), key=lambda b: (b.end_time is None, b.end_time, b.id)
    )
    current = max(
        [1, *segments, *history_files, *histories, *(b.timeline for b in done if b.timeline)]
    )
    problems: list[str] = []
    history: list[tuple[int, int]] = []
    if current > 1:
        if current in histories:
            history = parse_history(histories[current])
        else:
            problems.append(
                f"the history of timeline {current} ({current:08X}.history) was "
                f"not given: the WAL of earlier timelines cannot be followed"
            )
    ranges = timeline_ranges(current, history)

    def wanted(segno: int) -> str:
        return segment_file(covering_timelines(ranges, segno, size)[0], segno, size)

    def present_file(segno: int) -> str | None:
        for tli in covering_timelines(ranges, segno, size):
            if segments.get(tli, {}).get(segno, 0) > 0:
                return segment_file(tli, segno, size)
        return None

    timelines = [
        TimelineWal(
            tli,
            [segment_file(tli, n, size) for n in sorted(seen) if seen[n]],
            [segment_file(tli, n, size) for n in sorted(seen) if not seen[n]],
            tli in history_files,
        )
        for tli, seen in sorted(segments.items())
    ]
    archived = [
        n
        for tli, seen in segments.items()
        for n in seen
        if tli in covering_timelines(ranges, n, size)
    ]
    spans = {b.id: _backup_segments(b, size) for b in done}
    for b in done:
        if spans[b.id][0] is None:
            problems.append(
                f"backup {b.id} names no begin WAL or LSN: whether it can be "
                f"restored cannot be told"
            )
    usable = [b for b in done if spans[b.id][0] is not None]
    if not usable:
        problems.insert(
            0,
            "the bucket holds no completed base backup: there is nothing to "
            "recover from" + (" (the WAL archive alone cannot be restored)" if archived else ""),
        )
        return WalChain(
            current,
            timelines,
            None,
            wanted(max(archived)) if archived else None,
            [],
            [],
            None,
            problems,
            ranges,
        )

    first = min(spans[b.id][0] for b in usable)
    last = max([*archived, *(spans[b.id][1] for b in usable)])
    runs: list[tuple[int, int]] = []
    for segno in range(first, last + 1):
        if present_file(segno) is None:
            if runs and runs[-1][1] == segno - 1:
                runs[-1] = (runs[-1][0], segno)
            else:
                runs.append((segno, segno))

    windows, first_gap = [], {}
    for b in usable:
        begin, end = spans[b.id]
        cut = next((run for run in runs if run[1] >= begin), None)
        first_gap[b.id] = cut
        if cut is not None and cut[0] <= end:
            windows.append(BackupWindow(b.id, b.begin_wal, b.end_wal, b.end_time, False))
            continue
        stop = cut[0] - 1 if cut else last
        windows.append(
            BackupWindow(
                b.id,
                b.begin_wal,
                b.end_wal,
                b.end_time,
                True,
                present_file(stop),
                segment_end_lsn(stop, size),
                cut is None,
            )
        )

    gaps, restore_problems = [], {}
    for run in runs:
        hit = [w for w in windows if first_gap[w.backup] == run]
        before = present_file(run[0] - 1) if run[0] > first else None
        gap = Gap(
            wanted(run[0]),
            wanted(run[1]),
            run[1] - run[0] + 1,
            [
                wanted(n)
                for n in range(run[0], run[1] + 1)
                if any(n in segments.get(t, {}) for t in covering_timelines(ranges, n, size))
            ],
            before,
            [w.backup for w in hit if w.restorable],
            [w.backup for w in hit if not w.restorable],
            segment_end_lsn(run[0] - 1, size) if before else None,
            archived_at.get(before) if before else None,
        )
        gap = replace(gap, switch_to=_switch_after(ranges, run[1], size))
        if gap.affected:
            gap = replace(gap, problem=gap_problem(gap))
        gaps.append(gap)
        for w in windows:
            if w.backup in gap.broken:
                sentence = _unrestorable(
                    w, gap, wanted(spans[w.backup][0]) if run[0] <= spans[w.backup][0] else None
                )
                problems.append(sentence)
                restore_problems[w.backup] = sentence
        if gap.problem:
            problems.append(gap.problem)
            restore_problems.update((backup_id, gap.problem) for backup_id in gap.affected)

    return WalChain(
        current,
        timelines,
        wanted(first),
        wanted(last),
        gaps,
        windows,
        _window(windows, done, spans, size),
        problems,
        ranges,
        restore_problems,
    )


def _switch_after(ranges: Ranges, segno: int, size: int) -> int | None:
    """The timeline that begins in segment `segno + 1`, when `segno`'s timeline (as
    recovery wants it) ends there: `segno` is that timeline's last segment before a switch."""
    tli = covering_timelines(ranges, segno, size)[0]
    for (old, _, end), (new, _, _) in zip(ranges, ranges[1:]):
        if old == tli and end is not None and end // size == segno + 1:
            return new
    return None


def failover_phrase(gap: Gap) -> str:
    """Why a hole right before a timeline switch is there, and what closes it."""
    return (
        f"these are the last segments of timeline {int(gap.first_missing[:8], 16)} "
        f"before the switch to timeline {gap.switch_to} (a failover): the primary that "
        f"was lost had not archived them yet, and PostgreSQL never archives WAL that the "
        f"promoted replica received by streaming (archive_mode=on); while they are still "
        f"in the new primary's pg_wal, pgdrill's backfill-wal-archive action "
        f"(actions.backup.backfill_wal_archive) has PostgreSQL archive them, otherwise only "
        f"a new backup restores past the failover"
    )


def gap_problem(gap: Gap) -> str:
    """The one sentence for a gap that cuts point-in-time recovery short: the last
    recoverable segment, the backups it stops, what is missing, and (when the listing had
    upload times) where replay ends and the last recoverable instant, honestly as a bound;
    for a failover hole, why it is there and what closes it."""
    sentence = (
        f"point-in-time recovery past {gap.last_recoverable} is impossible for "
        f"{_backups_phrase(gap.affected)}: {gap.missing_phrase()}"
    )
    if gap.last_archived_at is not None:
        sentence = (
            f"{sentence}; replay ends at LSN {gap.last_lsn}, so the last recoverable "
            f"instant is at the latest {iso_time(gap.last_archived_at)}, when "
            f"{gap.last_recoverable} was archived (the bucket keeps no commit times: "
            f"the segment's upload time bounds the last commit it holds)"
        )
    return f"{sentence}; {failover_phrase(gap)}" if gap.switch_to is not None else sentence


def _unrestorable(window: BackupWindow, gap: Gap, begin: str | None) -> str:
    """The sentence for a backup a gap leaves unrestorable; `begin`: its first segment's
    file when that one is missing itself."""
    if begin is not None:
        what = "an empty (zero-byte) object" if begin in gap.empty else "missing"
        return (
            f"backup {window.backup} cannot be restored at all: its first WAL segment "
            f"{begin} is {what}"
        )
    return (
        f"backup {window.backup} cannot be restored at all: {gap.missing_phrase()}, "
        f"needed to reach the backup's end ({window.end_wal})"
    )


def _window(
    windows: list[BackupWindow],
    done: list[Backup],
    spans: dict[str, tuple[int | None, int | None]],
    size: int,
) -> RecoveryWindow | None:
    """The overall window: the oldest restorable backup's end to the furthest WAL any
    restorable backup reaches without a gap."""
    ok = [w for w in windows if w.restorable]
    if not ok:
        return None
    oldest = min(ok, key=lambda w: (spans[w.backup][1], w.end_time is None, w.end_time))
    furthest = max(ok, key=lambda w: lsn_to_int(w.last_lsn))
    times = [b.end_time for b in done if b.end_time]
    return RecoveryWindow(
        oldest.backup,
        oldest.end_time,
        oldest.end_wal,
        max(times) if times else None,
        furthest.last_segment,
        furthest.last_lsn,
        int(furthest.last_segment[:8], 16),
        furthest.reaches_newest,
    )
