"""A restore that cannot reach what it asks for is refused before restore-test is touched.

PostgreSQL restoring "to latest" with a WAL segment missing from the archive stops replay at
the gap, promotes, and reports success: the copy silently lacks everything after the gap.
So before a drill restores, pgdrill lists the source's bucket (`report_bucket`) and refuses
(`wal_gap_refusal`, pure):
- any restore of a backup whose own WAL (begin to end) has a hole: it cannot be restored;
- a restore to the end of the archive ("latest") that a gap stops short of;
- a restore to a time after the last recoverable instant (the upload time of the last
  recoverable segment, an upper bound of its last commit), or to an LSN past the gap (also a
  restore point whose LSN this run recorded): PostgreSQL would fail such a replay anyway, but
  later and less clearly.
The refusal carries the gap's one sentence (`walchain.Gap.problem`), the same text
`pgdrill bucket-report` prints. When the bucket cannot be read (a target without a bucket
location, an S3 error), the gate says so and lets the restore go ahead: PostgreSQL's replay
(and the position proof after it) is then the judge."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pgdrill.bucket.report import GAP_KINDS, BucketReport, Policy, build_report
from pgdrill.core.console import say
from pgdrill.core.errors import PgdrillError, PreflightRefused
from pgdrill.core.model import Backup, RecoveryTarget
from pgdrill.restore.position import lsn_to_int
from pgdrill.restore.walscan import format_lsn

# an upload in flight (CNPG archives WAL in parallel) can look like a gap for a moment: a
# listing with a gap is taken again after this pause, and the second one counts
RECHECK_SECONDS = 10.0


def report_bucket(
    location,
    policy: Policy | None = None,
    *,
    recheck_seconds: float = RECHECK_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    folder=None,
) -> BucketReport:
    """List `location` (a BucketLocation) and judge it; a report with a gap is made again
    from a second listing `recheck_seconds` later, which is the one returned. `folder`: a
    listing the caller already read (listing.ServerFolder), judged instead of a first one."""
    from pgdrill.bucket.listing import read_server_folder

    report = build_report(folder or read_server_folder(location), datetime.now(UTC), policy)
    if recheck_seconds > 0 and any(f.kind in GAP_KINDS for f in report.findings):
        sleep(recheck_seconds)
        report = build_report(read_server_folder(location), datetime.now(UTC), policy)
    return report


def wal_gap_refusal(
    report: BucketReport, backup: Backup, recovery: RecoveryTarget, expected_lsn: str | None = None
) -> str | None:
    """Why a restore of `backup` to `recovery` cannot reach it, as the bucket report's own
    sentence; None when the WAL does not stand in its way (or the report cannot tell:
    the backup is not in the listing, or a restore point's LSN is unknown)."""
    chain = report.chain
    window = next((w for w in chain.backups if w.backup == backup.id), None)
    problem = chain.restore_problems.get(backup.id)
    if window is None or problem is None:
        return None
    if not window.restorable or recovery.kind == "latest":
        return problem
    gap = next((g for g in chain.gaps if backup.id in g.affected), None)
    if gap is None:
        return None
    if recovery.kind == "time":
        return problem if gap.last_archived_at and recovery.time > gap.last_archived_at else None
    lsn = recovery.lsn if recovery.kind == "lsn" else expected_lsn
    if lsn and gap.last_lsn and lsn_to_int(lsn) > lsn_to_int(gap.last_lsn):
        return problem
    return None


def refusal_message(backup: Backup, recovery: RecoveryTarget, sentence: str) -> str:
    """The refusal: what was asked, then the bucket report's sentence unchanged."""
    asked = (
        "to the end of the archive" if recovery.kind == "latest" else f"to {recovery.describe()}"
    )
    return (
        f"the restore of backup {backup.id} {asked} is refused before restore-test is "
        f"touched, because the WAL archive cannot take it there: {sentence}"
    )


@dataclass
class GateResult:
    """What the gate found: `record` for the run context (`wal_chain`), the bucket report
    as a dict (`bucket`, None when the bucket could not be read), the refusal sentence."""

    record: dict
    report: dict | None
    refusal: str | None = None
    fix: str | None = None

    def error(self) -> PreflightRefused:
        return PreflightRefused(self.refusal or "", fix=self.fix)


def archive_end(row: dict, segment_size: int) -> dict | None:
    """The end of the archive a restore of this backup must reach, as listed now: the last
    segment of its gap-free WAL, and the LSN where that segment begins. Recovery "to latest"
    that stops before it stopped inside an earlier segment — one that is listed but could
    not be replayed (damaged, unreadable) — and PostgreSQL still says "no recovery target
    specified" (pgdrill.restore.position.archive_end_mismatch)."""
    reach = row.get("recoverable_to") or {}
    if not reach.get("segment") or not reach.get("lsn"):
        return None
    return {
        "segment": reach["segment"],
        "begins_at": format_lsn(lsn_to_int(reach["lsn"]) - segment_size),
        "ends_at": reach["lsn"],
    }


def check_wal_chain(
    target,
    backup: Backup,
    recovery: RecoveryTarget,
    expected_lsn: str | None = None,
    *,
    recheck_seconds: float = RECHECK_SECONDS,
    folder=None,
) -> GateResult:
    """List the target's bucket (or judge `folder`, a listing already read) and decide
    whether the restore may start (module docstring). Never raises for an unreadable bucket:
    it says so and records why."""
    record = {
        "checked": False,
        "backup_id": backup.id,
        "recovery": recovery.kind,
        "archive": None,
        "reaches_newest": None,
        "recoverable_to": None,
        "refused": False,
        "problem": None,
        "note": None,
    }
    try:
        location = target.bucket_location() if hasattr(target, "bucket_location") else None
        if location is None:
            raise PgdrillError("the target cannot name its bucket")
        record["archive"] = location.archive
        report = report_bucket(location, recheck_seconds=recheck_seconds, folder=folder)
    except PgdrillError as exc:
        record["note"] = exc.message
        say(
            f"cannot check the WAL archive before restoring ({exc.message}); PostgreSQL's "
            f"replay will tell"
        )
        return GateResult(record, None)
    row = next((b for b in report.backups if b["id"] == backup.id), None)
    record.update(
        checked=row is not None,
        reaches_newest=row and row["reaches_newest"],
        recoverable_to=row and row["recoverable_to"],
        archive_end=archive_end(row, report.wal_segment_size) if row else None,
    )
    if row is None:
        record["note"] = f"backup {backup.id} is not in the listing of {report.archive}"
        say(
            f"backup {backup.id} is not in the listing of {report.archive}: its WAL was not "
            f"checked before restoring"
        )
        return GateResult(record, report.to_dict())
    sentence = wal_gap_refusal(report, backup, recovery, expected_lsn)
    if sentence is None:
        say(
            f"the WAL archive {report.archive} can take backup {backup.id} to "
            + (
                "the newest archived WAL"
                if row["reaches_newest"]
                else f"{(row['recoverable_to'] or {}).get('lsn')}, enough for this restore"
            )
        )
        return GateResult(record, report.to_dict())
    record.update(refused=True, problem=sentence)
    gap = next((g for g in report.gaps if g["problem"] == sentence), None)
    return GateResult(
        record, report.to_dict(), refusal_message(backup, recovery, sentence), _fix(report, gap)
    )


def _fix(report: BucketReport, gap: dict | None) -> str:
    before = ""
    if gap and gap.get("last_lsn"):
        when = gap.get("last_archived_at")
        before = (
            f"restore to a point before the gap (target_lsn at or before "
            f"{gap['last_lsn']}"
            + (f", or a target_time well before {when}" if when else "")
            + "), or "
        )
    return (
        f"{before}take a new base backup (restores from it start after the gap); if the "
        f"missing segment still exists elsewhere (a pg_wal), copy it back into "
        f"{report.archive}wals/. `pgdrill bucket-report` shows the whole archive"
    )
