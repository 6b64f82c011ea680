"""The part of a report about a `pgdrill verify-backup` run (evidence `verification`): which
archive and backup, the PostgreSQL build that restored it, where the time went, and every
table's row count and sha256 with what changed since the last verification. Pure: evidence
in, a `Section` out."""

from __future__ import annotations

from pgdrill.reports.document import Code, Line, Section, Table, more, num, secs, shown

PHASES = (("fetch", "base backup downloaded and unpacked"),
          ("replay", "WAL replayed from the bucket, copy promoted"),
          ("ready", "isolation, recovery position and system identifier checked"),
          ("verify", "checklist, pg_amcheck and table fingerprints"))


def bucket_backup_section(evidence: dict) -> Section | None:
    """None unless the run was a verification of a bucket's backup."""
    v = evidence.get("verification")
    if not v:
        return None
    facts = v.get("backup_facts") or {}
    build = v.get("postgresql") or {}
    lines: list[Line] = [
        ("archive ", Code(shown(v.get("archive"))), f" at {shown(v.get('endpoint'))}, "
         f"serverName ", Code(shown(v.get("server_name")))),
        f"backup written by PostgreSQL {shown(facts.get('major'))} (server_version_num "
        f"{shown(facts.get('version_num'))}, system identifier {shown(facts.get('systemid'))}),"
        f" restored with PostgreSQL {shown(build.get('version'))} from "
        f"{shown(build.get('bin_dir'))}",
        "the bucket was only read: barman-cloud-restore and barman-cloud-wal-restore, and a "
        "copy with archive_mode off",
    ]
    rates = v.get("throughput") or {}
    if rates:
        lines.append(f"restore throughput {shown(rates.get('restore_mb_per_s'))} MB/s of "
                     f"database ({shown(rates.get('database_bytes'))} bytes when backed up); "
                     f"fetch {shown(rates.get('fetch_mb_per_s'))} MB/s of stored backup "
                     f"({shown(rates.get('stored_bytes'))} bytes)")
    tables = []
    phases = v.get("rto_phases") or {}
    if phases:
        rows = tuple((name, what, secs(phases.get(name))) for name, what in PHASES)
        total = sum(x for x in phases.values() if isinstance(x, int | float))
        tables.append(Table(("phase", "what", "seconds"),
                            rows + (("total", "time to a proven copy", secs(total)),)))
    listed = v.get("tables")
    if listed is not None:
        changes = v.get("changes")
        changed = {c["table"]: c for c in (changes or {}).get("changed") or []}
        added = set((changes or {}).get("added") or [])
        lines.append(f"{len(listed)} tables fingerprinted; " + (
            "no earlier verification of this archive to compare with" if changes is None
            else f"compared with run {shown(v.get('compared_with'))}: {len(changed)} changed, "
                 f"{len(added)} new, {len((changes or {}).get('removed') or [])} gone "
                 + (("(" + ", ".join(changes["removed"][:5]) + ")") if changes.get("removed")
                    else "")))
        names, extra = more(sorted(listed), 50)
        tables.append(Table(
            ("table" + extra, "rows", "sha256", "since the last verification"),
            tuple((Code(name), num(listed[name].get("rows")),
                   Code(str(listed[name].get("sha256"))[:16] + "…"),
                   "-" if changes is None else "new" if name in added
                   else f"changed ({num(changed[name]['rows_before'])} → "
                        f"{num(changed[name]['rows_after'])} rows)" if name in changed
                   else "unchanged") for name in names),
            tuple(None if changes is None else "warn" if (name in changed or name in added)
                  else "ok" for name in names)))
    return Section("bucket-backup", "The backup, restored from the bucket alone", tuple(lines),
                   tuple(tables))
