"""The bucket report: what one server's folder of a barman-cloud bucket can restore, judged
from the folder alone (pure: `build_report` takes a `listing.ServerFolder` and the time).

It holds:
- every base backup: id, status, timeline, begin/end LSN and time, size, and how far it can
  recover (the end of its WAL window, and when that segment was archived);
- WAL continuity (`walchain.analyse_wal_chain`) from the oldest completed backup's begin WAL
  to the newest archived segment, along the newest timeline's history: each gap with its one
  sentence (`Gap.problem`: the last recoverable segment and instant) and what it costs (the
  span no restore can reach);
- the recoverable window, overall (as the barman-cloud plugin's `serverRecoveryWindow`:
  firstRecoverabilityPoint = the end of the oldest restorable backup, lastSuccessfulBackupTime)
  and per timeline of the followed history;
- archive lag: the newest segment's upload time (LastModified) against now;
- backup age: the newest completed backup's end against now, bounded by `--schedule`
  (the schedule's period, as CNPG reads a ScheduledBackup, plus a grace) or by
  `--max-backup-age` (default 25 h).

The last recoverable instant: the bucket keeps no commit times, so it is the upload time of
the last recoverable segment, an upper bound of the last commit that segment holds. Every
sentence that states it says so.

Verdict: `failed` when anything in `findings` — a gap, a backup its WAL cannot restore, WAL
that cannot be followed (a history file missing), no completed backup, an archive lag above
`max_archive_lag`, or a newest backup older than allowed; otherwise `passed`. Each finding
has a `kind` ("gap", "unrestorable", "wal", "archive_lag", "backup_age"), so a drill can judge
by the WAL alone (`GAP_KINDS`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pgdrill.bucket.listing import ServerFolder
from pgdrill.bucket.walchain import (
    HISTORY,
    Gap,
    WalChain,
    analyse_wal_chain,
    iso_time,
    segment_of,
    segment_times,
    wal_file_name,
)
from pgdrill.core.model import Backup
from pgdrill.core.times import human_span
from pgdrill.restore.position import lsn_to_int
from pgdrill.restore.walscan import covering_timelines, format_lsn, segment_file
from pgdrill.targets.cnpg.cron import Schedule

DEFAULT_MAX_ARCHIVE_LAG = timedelta(minutes=30)
DEFAULT_MAX_BACKUP_AGE = timedelta(hours=25)
DEFAULT_SCHEDULE_GRACE = timedelta(hours=1)  # as pgdrill.targets.cnpg.backup_health
GAP_KINDS = ("gap", "unrestorable")  # the findings that break recovery itself


# -- words ---------------------------------------------------------------------------------
def size_text(n: int | None) -> str:
    """Bytes as B/KiB/MiB/GiB/TiB; '-' when unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


# -- the policy and the result ---------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """What is stale: archive lag above `max_archive_lag`; a newest backup older than the
    schedule's period plus `grace` (with `schedule`), else than `max_backup_age`."""

    max_archive_lag: timedelta = DEFAULT_MAX_ARCHIVE_LAG
    max_backup_age: timedelta | None = None
    schedule: Schedule | None = None
    grace: timedelta = DEFAULT_SCHEDULE_GRACE

    def backup_bound(self, now: datetime) -> tuple[timedelta, str]:
        """(the allowed age of the newest backup, where that bound comes from)."""
        if self.schedule is not None:
            period = self.schedule.period(now)
            if period is not None:
                return period + self.grace, (
                    f"the schedule '{self.schedule.spec}' runs every {human_span(period)}, plus "
                    f"{human_span(self.grace)} grace"
                )
        bound = self.max_backup_age or DEFAULT_MAX_BACKUP_AGE
        return bound, f"max backup age {human_span(bound)}"

    def to_dict(self) -> dict:
        return {
            "max_archive_lag_seconds": int(self.max_archive_lag.total_seconds()),
            "max_backup_age_seconds": (
                int(self.max_backup_age.total_seconds()) if self.max_backup_age else None
            ),
            "schedule": self.schedule.spec if self.schedule else None,
            "schedule_grace_seconds": int(self.grace.total_seconds()),
        }


@dataclass(frozen=True)
class Finding:
    """One reason the verdict fails; `kind` groups them (module docstring)."""

    kind: str
    text: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text}


@dataclass(frozen=True)
class BucketReport:
    archive: str
    endpoint: str
    checked_at: datetime
    wal_segment_size: int
    chain: WalChain
    backups: tuple[dict, ...]
    gaps: tuple[dict, ...]
    timelines: tuple[dict, ...]
    archive_lag: dict
    backup_age: dict
    findings: tuple[Finding, ...]
    policy: Policy = field(default_factory=Policy)
    notes: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        return "failed" if self.findings else "passed"

    @property
    def gap_findings(self) -> list[str]:
        """The sentences of the findings that break recovery itself (GAP_KINDS)."""
        return [f.text for f in self.findings if f.kind in GAP_KINDS]

    def to_dict(self) -> dict:
        """JSON-ready; no credential value (the report never holds one)."""
        chain = self.chain.to_dict()
        return {
            "archive": self.archive,
            "endpoint": self.endpoint,
            "checked_at": iso_time(self.checked_at),
            "verdict": self.verdict,
            "reasons": [f.text for f in self.findings],
            "findings": [f.to_dict() for f in self.findings],
            "wal_segment_size": self.wal_segment_size,
            "backups": list(self.backups),
            "wal": {
                k: chain[k]
                for k in ("timeline", "timelines", "history", "first_needed", "newest", "problems")
            },
            "gaps": list(self.gaps),
            "window": chain["window"],
            "timeline_windows": list(self.timelines),
            "archive_lag": self.archive_lag,
            "backup_age": self.backup_age,
            "policy": self.policy.to_dict(),
            "notes": list(self.notes),
        }


# -- building ----------------------------------------------------------------------------------
def build_report(folder: ServerFolder, now: datetime, policy: Policy | None = None) -> BucketReport:
    """The report of one listed server folder at `now` (see the module docstring)."""
    policy = policy or Policy()
    size = folder.wal_segment_size
    listing = folder.listing()
    chain = analyse_wal_chain(listing, folder.backups, folder.histories, size)
    times = segment_times(listing, size)
    findings = _chain_findings(chain)
    lag, lag_finding = archive_lag(times, now, policy.max_archive_lag)
    age, age_finding = backup_age(folder.backups, now, policy)
    findings += [f for f in (lag_finding, age_finding) if f]
    notes = list(folder.notes)
    if policy.schedule is not None and policy.schedule.field_count == 5:
        notes.append(
            f"the schedule '{policy.schedule.spec}' has 5 fields: CNPG reads it "
            f"seconds first, as '{policy.schedule.six_fields}'"
        )
    notes += [
        f"backup {b.id} is {b.status} (not completed): it is not restorable"
        for b in folder.backups
        if not b.completed
    ]
    if times:
        notes.append(
            'the bucket keeps no commit times: a segment\'s "archived at" is its '
            "upload time (LastModified), an upper bound of the last commit it holds"
        )
    return BucketReport(
        archive=folder.archive,
        endpoint=folder.endpoint,
        checked_at=now,
        wal_segment_size=size,
        chain=chain,
        backups=tuple(_backup_rows(folder.backups, chain, times)),
        gaps=tuple(_gap_row(g, chain, times, size) for g in chain.gaps),
        timelines=tuple(timeline_windows(chain, times, folder, size)),
        archive_lag=lag,
        backup_age=age,
        findings=tuple(findings),
        policy=policy,
        notes=tuple(notes),
    )


def _chain_findings(chain: WalChain) -> list[Finding]:
    """The WAL chain's problems, in its order, each with its kind."""
    gap_sentences = {g.problem for g in chain.gaps if g.problem}
    unrestorable = {text for text in chain.restore_problems.values() if text not in gap_sentences}
    return [
        Finding(
            "gap" if text in gap_sentences else "unrestorable" if text in unrestorable else "wal",
            text,
        )
        for text in chain.problems
    ]


def archive_lag(
    times: dict[str, datetime], now: datetime, bound: timedelta
) -> tuple[dict, Finding | None]:
    """The newest archived segment's upload time against `now`; stale above `bound`."""
    fact = {
        "newest_segment": None,
        "archived_at": None,
        "lag_seconds": None,
        "lag": None,
        "max_seconds": int(bound.total_seconds()),
        "max": human_span(bound),
        "stale": True,
    }
    if not times:
        return fact, Finding(
            "archive_lag",
            "no WAL segment is archived in the bucket: WAL "
            "archiving has never worked for this serverName",
        )
    name = max(times, key=lambda n: (times[n], n))
    lag = max(now - times[name], timedelta(0))
    fact.update(
        newest_segment=name,
        archived_at=iso_time(times[name]),
        lag_seconds=int(lag.total_seconds()),
        lag=human_span(lag),
        stale=lag > bound,
    )
    if lag <= bound:
        return fact, None
    return fact, Finding(
        "archive_lag",
        (
            f"the archive is stale: the newest WAL segment, {name}, was archived at "
            f"{iso_time(times[name])}, {human_span(lag)} ago, more than the "
            f"{human_span(bound)} allowed: WAL "
            f"archiving has stopped, or the cluster wrote nothing since (PostgreSQL switches "
            f"segments on archive_timeout only after a write)"
        ),
    )


def backup_age(backups, now: datetime, policy: Policy) -> tuple[dict, Finding | None]:
    """The newest completed backup's end against `now`, bounded by the policy."""
    bound, rule = policy.backup_bound(now)
    fact = {
        "newest_backup": None,
        "ended_at": None,
        "age_seconds": None,
        "age": None,
        "max_seconds": int(bound.total_seconds()),
        "max": human_span(bound),
        "rule": rule,
        "stale": True,
    }
    done = [b for b in backups if b.completed and b.end_time]
    if not done:
        return fact, Finding("backup_age", "there is no completed base backup in the bucket")
    newest = max(done, key=lambda b: b.end_time)
    age = max(now - newest.end_time, timedelta(0))
    fact.update(
        newest_backup=newest.id,
        ended_at=iso_time(newest.end_time),
        age_seconds=int(age.total_seconds()),
        age=human_span(age),
        stale=age > bound,
    )
    if age <= bound:
        return fact, None
    return fact, Finding(
        "backup_age",
        (
            f"the newest completed backup, {newest.id}, ended at {iso_time(newest.end_time)}, "
            f"{human_span(age)} ago, older than allowed ({rule}): scheduled backups are not "
            f"completing"
        ),
    )


def _backup_rows(backups, chain: WalChain, times: dict[str, datetime]) -> list[dict]:
    windows = {w.backup: w for w in chain.backups}
    rows = []
    for b in backups:
        w = windows.get(b.id)
        rows.append(
            {
                **b.to_dict(),
                "restorable": bool(w and w.restorable),
                "recoverable_to": (
                    {
                        "segment": w.last_segment,
                        "lsn": w.last_lsn,
                        "archived_at": iso_time(times.get(w.last_segment)),
                    }
                    if w and w.restorable
                    else None
                ),
                "reaches_newest": bool(w and w.reaches_newest),
                "problem": chain.restore_problems.get(b.id),
            }
        )
    return rows


def _gap_row(gap: Gap, chain: WalChain, times: dict[str, datetime], size: int) -> dict:
    return {**gap.to_dict(), "cost": gap_cost(gap, chain, times, size)}


def gap_cost(gap: Gap, chain: WalChain, times: dict[str, datetime], size: int) -> str:
    """What a gap costs: the backups it leaves unrestorable, and the span no restore can
    reach — up to the end of the first restorable backup that begins after it, or else
    everything archived after it."""
    parts = []
    if gap.broken:
        parts.append(
            ("backup " if len(gap.broken) == 1 else "backups ")
            + ", ".join(gap.broken)
            + " cannot be restored at all"
        )
    if not gap.affected:
        return "; ".join(parts)
    end = segment_of(gap.last_missing, size)[1]
    since = (
        f"after {iso_time(gap.last_archived_at)}"
        if gap.last_archived_at
        else f"past LSN {gap.last_lsn}"
    )
    later = [
        w
        for w in chain.backups
        if w.restorable and w.begin_wal and (segment_of(w.begin_wal, size) or (0, -1))[1] > end
    ]
    if later:
        first = min(later, key=lambda w: (w.end_time is None, w.end_time, w.backup))
        parts.append(
            f"no restore reaches a point {since} and before the end of backup "
            f"{first.backup} ({iso_time(first.end_time) or first.end_wal}), the first "
            f"backup after the gap"
        )
        return "; ".join(parts)
    after = sorted(
        (n, name)
        for name in times
        for tli, n in [segment_of(name, size)]
        if n > end and tli in covering_timelines(chain.ranges, n, size)
    )
    if not after:
        parts.append(f"no restore reaches a point {since}")
        return "; ".join(parts)
    newest = after[-1][1]
    span = (
        f", {human_span(times[newest] - gap.last_archived_at)} of archived WAL"
        if gap.last_archived_at
        else ""
    )
    parts.append(
        f"a restore to latest loses every commit {since}: the "
        f"{len(after)} segment{'s' if len(after) != 1 else ''} archived after the gap "
        f"(up to {newest}, archived at {iso_time(times[newest])}{span}) cannot be "
        f"replayed"
    )
    return "; ".join(parts)


def timeline_windows(
    chain: WalChain, times: dict[str, datetime], folder: ServerFolder, size: int
) -> list[dict]:
    """The recoverable window split along the followed timeline history: per timeline, from
    where recovery can first stop on it (the oldest restorable backup's end, or the switch
    to it) to where it last can (the switch to the next timeline, or the window's end)."""
    window = chain.window
    if window is None:
        return []
    starts = {w.backup: w for w in chain.backups}
    first = starts[window.first_backup]
    backup = next((b for b in folder.backups if b.id == window.first_backup), None)
    low = _backup_end_lsn(backup, first.end_wal, size)
    high = lsn_to_int(window.last_lsn)
    history_times = {}
    for obj in folder.objects:
        found = HISTORY.match(wal_file_name(obj.key) or "")
        if found and obj.size:
            history_times[int(found.group(1), 16)] = obj.modified
    restorable = {w.backup for w in chain.backups if w.restorable}
    rows = []
    for tli, begin, end in chain.ranges:
        lo, hi = max(begin, low), high if end is None else min(end, high)
        if lo > hi:
            continue
        last_seg = max(hi - 1, lo) // size
        last_file = segment_file(
            covering_timelines(chain.ranges, last_seg, size)[0], last_seg, size
        )
        starts_here = lo == low
        rows.append(
            {
                "timeline": tli,
                "begin_lsn": format_lsn(begin),
                "end_lsn": format_lsn(end) if end is not None else None,
                "from_lsn": format_lsn(lo),
                "from_time": (
                    iso_time(window.first_recoverability_point)
                    if starts_here
                    else iso_time(history_times.get(tli))
                ),
                "from_source": (
                    f"the end of backup {window.first_backup}"
                    if starts_here
                    else f"the switch to timeline {tli} ({tli:08X}.history archived)"
                ),
                "to_lsn": format_lsn(hi),
                "to_segment": last_file,
                "to_archived_at": iso_time(times.get(last_file)),
                "reaches_newest": end is None and window.reaches_newest,
                "backups": [
                    b.id for b in folder.backups if b.timeline == tli and b.id in restorable
                ],
            }
        )
    return rows


def _backup_end_lsn(backup: Backup | None, end_wal: str | None, size: int) -> int:
    if backup is not None and backup.end_lsn:
        return lsn_to_int(backup.end_lsn)
    found = segment_of(end_wal, size) if end_wal else None
    return found[1] * size if found else 0


# -- rendering ---------------------------------------------------------------------------------
def render_markdown(report: BucketReport) -> str:
    """The report as Markdown (plain text that reads well in a terminal)."""
    data = report.to_dict()
    lines = [
        f"# Bucket report: {report.archive}: {report.verdict.upper()}",
        "",
        (
            f"checked {data['checked_at']} at {report.endpoint}; WAL segments of "
            f"{size_text(report.wal_segment_size)}"
        ),
        "",
    ]
    if report.findings:
        lines += ["## Why it failed", ""] + [f"- {f.text}" for f in report.findings] + [""]
    lines += ["## Backups", ""]
    if report.backups:
        lines += [
            (
                "| backup | status | timeline | begin LSN | end LSN | began | ended | size "
                "| recoverable to |"
            ),
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for b in report.backups:
            to = b["recoverable_to"]
            reach = (
                "NOT restorable"
                if not b["restorable"]
                else f"{to['segment']} (LSN {to['lsn']}"
                + (f", archived {to['archived_at']}" if to["archived_at"] else "")
                + ")"
                + (" = newest WAL" if b["reaches_newest"] else "")
            )
            lines.append(
                f"| {b['id']} | {b['status']} | {b['timeline'] or '-'} | "
                f"{b['begin_lsn'] or '-'} | {b['end_lsn'] or '-'} | "
                f"{b['begin_time'] or '-'} | {b['end_time'] or '-'} | "
                f"{size_text(b['size'])} | {reach} |"
            )
    else:
        lines.append("no base backup in the bucket")
    lines += ["", "## WAL continuity", ""]
    wal = data["wal"]
    for t in wal["timelines"]:
        lines.append(
            f"- timeline {t['timeline']}: {t['segments']} segments, {t['first'] or '-'}"
            f" to {t['last'] or '-'}"
            + (", history file archived" if t["history"] else "")
            + (f"; empty objects: {', '.join(t['empty'])}" if t["empty"] else "")
        )
    if wal["first_needed"]:
        lines.append(
            f"- needed: {wal['first_needed']} (the oldest backup's begin) to "
            f"{wal['newest']}: " + (f"{len(report.gaps)} gap(s)" if report.gaps else "continuous")
        )
    for g in report.gaps:
        lines.append(
            f"- gap {g['first_missing']}"
            + (f" to {g['last_missing']}" if g["segments"] > 1 else "")
            + f" ({g['segments']} segment{'s' if g['segments'] != 1 else ''})"
        )
        if g["problem"]:
            lines.append(f"  - {g['problem']}")
        if g["cost"]:
            lines.append(f"  - what it costs: {g['cost']}")
    lines += ["", "## Recoverable window", ""]
    window = data["window"]
    if window:
        lines.append(
            f"- from {window['first_recoverability_point'] or '-'} (the end of backup "
            f"{window['first_backup']}, {window['first_wal']}) to LSN "
            f"{window['last_lsn']} on timeline {window['timeline']} "
            f"({window['last_segment']}) — "
            + (
                "the newest archived WAL"
                if window["reaches_newest"]
                else "STOPS SHORT of the newest archived WAL"
            )
        )
        lines.append(f"- last successful backup: {window['last_successful_backup_time'] or '-'}")
        for t in report.timelines:
            lines.append(
                f"- timeline {t['timeline']}: LSN {t['from_lsn']} "
                f"({t['from_time'] or 'time unknown'}, {t['from_source']}) to LSN "
                f"{t['to_lsn']} ({t['to_segment']}, archived "
                f"{t['to_archived_at'] or '-'})"
                + (", the newest WAL" if t["reaches_newest"] else "")
            )
    else:
        lines.append("- nothing is recoverable: no backup can be restored")
    lag, age = report.archive_lag, report.backup_age
    lines += ["", "## Freshness", ""]
    lines.append(
        "- archive lag: "
        + (
            f"newest segment {lag['newest_segment']} archived {lag['archived_at']}, {lag['lag']} "
            f"ago (at most {lag['max']}): " + ("STALE" if lag["stale"] else "ok")
            if lag["newest_segment"]
            else "no WAL archived"
        )
    )
    lines.append(
        "- backup age: "
        + (
            f"newest completed backup {age['newest_backup']} ended {age['ended_at']}, {age['age']} "
            f"ago ({age['rule']}): " + ("STALE" if age["stale"] else "ok")
            if age["newest_backup"]
            else "no completed backup"
        )
    )
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"
