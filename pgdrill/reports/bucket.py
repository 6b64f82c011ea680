"""The part of a report about the source's WAL archive, as the restore found it (evidence
`bucket`, pgdrill.bucket.report): gaps with their sentence and cost, the recoverable window,
archive lag and backup age. Pure: evidence in, a `Section` out."""

from __future__ import annotations

from pgdrill.reports.document import MAX_LISTED, Code, Line, Section, Table, more, shown

# the bucket findings that fail a drill (pgdrill.evidence.build.BUCKET_GAP_KINDS)
GAP_KINDS = ("gap", "unrestorable")


def bucket_section(evidence: dict) -> Section | None:
    """Gaps, window, lag and age of the bucket; None when the run read no bucket."""
    bucket = evidence.get("bucket")
    if not bucket:
        return None
    findings = bucket.get("findings") or []
    gaps = [f for f in findings if f.get("kind") in GAP_KINDS]
    lines: list[Line] = [("archive ", Code(shown(bucket.get("archive"))), " listed at "
                          f"{shown(bucket.get('checked_at'))}: "
                          + (f"{len(gaps)} WAL problem(s), the drill fails" if gaps
                             else "the WAL is continuous from the oldest backup to the newest "
                                  "segment"))]
    for gap in bucket.get("gaps") or []:
        if gap.get("problem"):
            lines.append(f"GAP: {gap['problem']}")
        if gap.get("cost"):
            lines.append(f"what it costs: {gap['cost']}")
    lines += [f"WAL problem: {f.get('text')}" for f in gaps
              if f.get("kind") != "gap" or not any(g.get("problem") == f.get("text")
                                                   for g in bucket.get("gaps") or [])]
    window = bucket.get("window")
    if window:
        lines.append(f"recoverable window: from {shown(window.get('first_recoverability_point'))}"
                     f" (end of backup {shown(window.get('first_backup'))}) to LSN "
                     f"{shown(window.get('last_lsn'))} on timeline {shown(window.get('timeline'))}"
                     + (", the newest archived WAL" if window.get("reaches_newest")
                        else ", SHORT of the newest archived WAL"))
    else:
        lines.append("recoverable window: none, no backup can be restored")
    lag, age = bucket.get("archive_lag") or {}, bucket.get("backup_age") or {}
    lines.append(f"archive lag: newest segment {shown(lag.get('newest_segment'))} archived "
                 f"{shown(lag.get('archived_at'))}, {shown(lag.get('lag'))} before the listing "
                 f"(at most {shown(lag.get('max'))}: "
                 + ("stale" if lag.get("stale") else "fresh") + "; not judged in a drill)")
    lines.append(f"newest backup {shown(age.get('newest_backup'))} ended "
                 f"{shown(age.get('ended_at'))}, {shown(age.get('age'))} before the listing "
                 f"({shown(age.get('rule'))}: " + ("stale" if age.get("stale") else "fresh")
                 + "; not judged in a drill)")
    tables = []
    rows = [(Code(str(t.get("timeline"))), shown(t.get("from_lsn")), shown(t.get("from_time")),
             shown(t.get("to_lsn")), shown(t.get("to_archived_at")),
             "yes" if t.get("reaches_newest") else "no")
            for t in bucket.get("timeline_windows") or []]
    if rows:
        tables.append(Table(("timeline", "from LSN", "from", "to LSN", "to (archived at)",
                             "newest WAL"), tuple(rows)))
    backups, extra = more(list(reversed(bucket.get("backups") or [])), MAX_LISTED)
    if backups:
        tables.append(Table(
            ("backup" + extra, "status", "ended", "end LSN", "restorable to"),
            tuple((Code(shown(b.get("id"))), shown(b.get("status")), shown(b.get("end_time")),
                   shown(b.get("end_lsn")),
                   shown((b.get("recoverable_to") or {}).get("lsn")) if b.get("restorable")
                   else "NOT restorable") for b in backups),
            tuple("ok" if b.get("reaches_newest") else "bad" if not b.get("restorable")
                  else "warn" for b in backups)))
    return Section("bucket", "WAL archive and recoverable window", tuple(lines), tuple(tables))
