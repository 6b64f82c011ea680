"""The bucket report (pure): backups, WAL gaps with their sentence and cost, the recoverable
window, archive lag, backup age against a CNPG schedule; the verdict; the restore gate's
decision; the drill's evidence and report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pgdrill.bucket import restore_gate
from pgdrill.bucket.listing import ServerFolder, StoredObject, decompress
from pgdrill.bucket.report import (
    DEFAULT_MAX_BACKUP_AGE,
    GAP_KINDS,
    Policy,
    build_report,
    render_markdown,
)
from pgdrill.bucket.restore_gate import refusal_message, report_bucket, wal_gap_refusal
from pgdrill.core.model import Backup, RecoveryTarget
from pgdrill.evidence.build import BUCKET_GAP_KINDS, build_evidence, judge
from pgdrill.reports.bucket import GAP_KINDS as REPORT_GAP_KINDS
from pgdrill.reports.bucket import bucket_section
from pgdrill.targets.cnpg.cron import parse_schedule
from tests.test_evidence import context, journal, validate

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
B1 = "20261201T000000"
B2 = "20261201T060000"
B3 = "20261201T120000"


def seg(n: int, tli: int = 1) -> str:
    return f"{tli:08X}{0:08X}{n:08X}"


def wal(n: int, minute: float, tli: int = 1, size: int = 1000) -> StoredObject:
    """Segment n of timeline tli, uploaded `minute` minutes after T0."""
    return StoredObject(
        f"wals/{seg(n, tli)[:16]}/{seg(n, tli)}.gz", size, T0 + timedelta(minutes=minute)
    )


def backup(
    ident: str,
    begin: int,
    end: int | None = None,
    hour: float = 0,
    tli: int = 1,
    status: str = "DONE",
) -> Backup:
    end = begin if end is None else end
    return Backup(
        id=ident,
        status=status,
        begin_time=T0 + timedelta(hours=hour),
        end_time=T0 + timedelta(hours=hour, minutes=5),
        begin_wal=seg(begin, tli),
        end_wal=seg(end, tli),
        timeline=tli,
        begin_lsn=f"0/{begin:X}000028",
        end_lsn=f"0/{end:X}000100",
        size=5_000_000,
    )


def folder(objects, backups, histories=None) -> ServerFolder:
    infos = [StoredObject(f"base/{b.id}/backup.info", 900, b.end_time) for b in backups]
    return ServerFolder(
        "s3://bucket/path/srv/",
        "http://s3.example",
        tuple(infos + objects),
        tuple(backups),
        histories or {},
    )


def hourly_wal(first: int, last: int, skip=()) -> list[StoredObject]:
    """Segments first..last, segment n uploaded at minute 10 * n."""
    return [wal(n, 10 * n) for n in range(first, last + 1) if n not in skip]


# -- verdict, archive lag, backup age ------------------------------------------------------------
def test_a_continuous_fresh_bucket_passes_and_shows_its_window():
    f = folder(hourly_wal(1, 12), [backup(B1, 2), backup(B2, 6, hour=1)])
    report = build_report(f, T0 + timedelta(minutes=125))
    assert report.verdict == "passed" and report.findings == ()
    data = report.to_dict()
    json.dumps(data)
    assert data["archive_lag"] == {
        "newest_segment": seg(12),
        "archived_at": "2026-12-01T02:00:00+00:00",
        "lag_seconds": 300,
        "lag": "5m",
        "max_seconds": 1800,
        "max": "30m",
        "stale": False,
    }
    assert data["backup_age"]["newest_backup"] == B2 and data["backup_age"]["age"] == "1h"
    assert data["backup_age"]["age_seconds"] == 3600 and not data["backup_age"]["stale"]
    assert data["window"]["first_backup"] == B1 and data["window"]["reaches_newest"]
    [tl] = data["timeline_windows"]
    assert (
        tl["timeline"],
        tl["from_lsn"],
        tl["to_lsn"],
        tl["to_segment"],
        tl["reaches_newest"],
        tl["backups"],
    ) == (1, "0/2000100", "0/D000000", seg(12), True, [B1, B2])
    assert [
        (b["id"], b["restorable"], b["recoverable_to"]["segment"]) for b in data["backups"]
    ] == [(B1, True, seg(12)), (B2, True, seg(12))]
    text = render_markdown(report)
    assert text.startswith("# Bucket report: s3://bucket/path/srv/: PASSED")
    assert "archive lag: newest segment" in text and "ok" in text


def test_archive_lag_above_the_limit_fails_and_the_limit_is_configurable():
    f = folder(hourly_wal(1, 6), [backup(B1, 2)])
    now = T0 + timedelta(minutes=60 + 45)  # newest segment (6) uploaded at minute 60
    report = build_report(f, now)
    assert report.verdict == "failed"
    [finding] = report.findings
    assert finding.kind == "archive_lag"
    assert finding.text == (
        f"the archive is stale: the newest WAL segment, {seg(6)}, was archived at "
        f"2026-12-01T01:00:00+00:00, 45m ago, more than the 30m allowed: WAL archiving has "
        f"stopped, or the cluster wrote nothing since (PostgreSQL switches segments on "
        f"archive_timeout only after a write)"
    )
    assert report.gap_findings == []
    relaxed = build_report(f, now, Policy(max_archive_lag=timedelta(hours=1)))
    assert relaxed.verdict == "passed"


def test_a_bucket_without_wal_fails_its_archive_lag():
    report = build_report(folder([], [backup(B1, 2)]), T0)
    kinds = [f.kind for f in report.findings]
    assert "archive_lag" in kinds
    assert report.archive_lag["newest_segment"] is None and report.archive_lag["stale"]


def test_backup_age_against_the_default_the_maximum_and_a_cron_schedule():
    f = folder(hourly_wal(1, 4), [backup(B1, 2)])  # B1 ended at 00:05
    now = T0 + timedelta(hours=26)
    lag = Policy(max_archive_lag=timedelta(days=2))
    report = build_report(f, now, lag)
    assert DEFAULT_MAX_BACKUP_AGE == timedelta(hours=25)
    [finding] = report.findings
    assert finding.kind == "backup_age"
    assert finding.text == (
        f"the newest completed backup, {B1}, ended at "
        f"2026-12-01T00:05:00+00:00, 1d 1h 55m ago, older than allowed "
        f"(max backup age 1d 1h): scheduled backups are not completing"
    )
    wider = Policy(max_archive_lag=timedelta(days=2), max_backup_age=timedelta(hours=30))
    assert build_report(f, now, wider).verdict == "passed"
    # CNPG's reading of a daily schedule (seconds first): period 1d + 1h grace = 25h
    daily = Policy(max_archive_lag=timedelta(days=2), schedule=parse_schedule("0 0 2 * * *"))
    assert build_report(f, now, daily).backup_age["rule"] == (
        "the schedule '0 0 2 * * *' runs every 1d, plus 1h grace"
    )
    assert build_report(f, now, daily).verdict == "failed"
    assert build_report(f, T0 + timedelta(hours=24), daily).verdict == "passed"
    every6h = Policy(max_archive_lag=timedelta(days=2), schedule=parse_schedule("@every 6h"))
    assert build_report(f, T0 + timedelta(hours=7, minutes=6), every6h).verdict == "failed"
    assert build_report(f, T0 + timedelta(hours=7, minutes=5), every6h).verdict == "passed"
    weekly = Policy(max_archive_lag=timedelta(days=2), schedule=parse_schedule("@weekly"))
    assert build_report(f, now, weekly).verdict == "passed"


def test_a_five_field_schedule_is_read_as_cnpg_does_and_noted():
    f = folder(hourly_wal(1, 4), [backup(B1, 2)])
    report = build_report(
        f,
        T0 + timedelta(hours=3),
        Policy(max_archive_lag=timedelta(days=1), schedule=parse_schedule("0 2 * * *")),
    )
    # hourly at :02 for CNPG, so a backup 2h55m old is stale
    assert [f.kind for f in report.findings] == ["backup_age"]
    assert any("CNPG reads it seconds first" in n for n in report.notes)


def test_no_completed_backup_fails():
    f = folder(hourly_wal(1, 4), [backup(B1, 2, status="FAILED")])
    report = build_report(f, T0 + timedelta(minutes=45))
    assert [(x.kind, x.text) for x in report.findings] == [
        (
            "wal",
            (
                "the bucket holds no completed base backup: there is nothing to recover "
                "from (the WAL archive alone cannot be restored)"
            ),
        ),
        ("backup_age", "there is no completed base backup in the bucket"),
    ]
    assert f"backup {B1} is FAILED (not completed): it is not restorable" in report.notes


# -- gaps -------------------------------------------------------------------------------------
def test_a_gap_after_the_newest_backup_names_the_last_recoverable_instant_and_its_cost():
    f = folder(hourly_wal(1, 12, skip={9}), [backup(B1, 2), backup(B2, 6, hour=1)])
    report = build_report(f, T0 + timedelta(minutes=125))
    sentence = (
        f"point-in-time recovery past {seg(8)} is impossible for backups {B1}, {B2}: "
        f"{seg(9)} is missing (1 segment); replay ends at LSN 0/9000000, so the last "
        f"recoverable instant is at the latest 2026-12-01T01:20:00+00:00, when {seg(8)} "
        f"was archived (the bucket keeps no commit times: the segment's upload time "
        f"bounds the last commit it holds)"
    )
    assert report.verdict == "failed"
    assert [(x.kind, x.text) for x in report.findings] == [("gap", sentence)]
    assert report.gap_findings == [sentence]
    [gap] = report.to_dict()["gaps"]
    assert gap["problem"] == sentence and gap["last_archived_at"] == "2026-12-01T01:20:00+00:00"
    assert gap["cost"] == (
        f"a restore to latest loses every commit after 2026-12-01T01:20:00+00:00: the 3 "
        f"segments archived after the gap (up to {seg(12)}, archived at "
        f"2026-12-01T02:00:00+00:00, 40m of archived WAL) cannot be replayed"
    )
    assert [b["reaches_newest"] for b in report.backups] == [False, False]
    assert report.to_dict()["window"]["last_segment"] == seg(8)
    text = render_markdown(report)
    assert sentence in text and "what it costs: a restore to latest" in text
    assert "STOPS SHORT of the newest archived WAL" in text


def test_a_gap_before_the_newest_backup_costs_the_span_up_to_that_backup():
    f = folder(
        hourly_wal(1, 12, skip={4}), [backup(B1, 2), backup(B2, 6, hour=1), backup(B3, 9, hour=2)]
    )
    report = build_report(f, T0 + timedelta(minutes=125))
    [gap] = report.gaps
    assert gap["affected_backups"] == [B1]
    assert gap["cost"] == (
        f"no restore reaches a point after 2026-12-01T00:30:00+00:00 and "
        f"before the end of backup {B2} (2026-12-01T01:05:00+00:00), the "
        f"first backup after the gap"
    )
    assert report.verdict == "failed" and report.findings[0].kind == "gap"
    assert report.to_dict()["window"]["reaches_newest"]


def test_a_backup_whose_own_wal_has_a_hole_is_unrestorable():
    f = folder(hourly_wal(1, 8, skip={3}), [backup(B1, 2, 4), backup(B2, 6, hour=1)])
    report = build_report(f, T0 + timedelta(minutes=85))
    assert [x.kind for x in report.findings] == ["unrestorable"]
    assert report.findings[0].text.startswith(f"backup {B1} cannot be restored at all")
    assert report.gaps[0]["cost"] == f"backup {B1} cannot be restored at all"
    assert [b["restorable"] for b in report.backups] == [False, True]


def test_windows_follow_the_timeline_history():
    objects = (
        hourly_wal(1, 5)
        + [StoredObject("wals/00000002.history.gz", 60, T0 + timedelta(minutes=55))]
        + [wal(n, 10 * n, tli=2) for n in range(6, 9)]
    )
    f = folder(objects, [backup(B1, 2)], {2: "1\t0/6000028\tno recovery target specified\n"})
    report = build_report(f, T0 + timedelta(minutes=85))
    assert report.verdict == "passed"
    assert [
        (t["timeline"], t["from_lsn"], t["to_lsn"], t["reaches_newest"]) for t in report.timelines
    ] == [(1, "0/2000100", "0/6000028", False), (2, "0/6000028", "0/9000000", True)]
    assert report.timelines[1]["from_time"] == "2026-12-01T00:55:00+00:00"
    assert report.timelines[1]["from_source"] == (
        "the switch to timeline 2 (00000002.history archived)"
    )


def test_history_files_are_decompressed():
    import gzip

    assert (
        decompress("wals/00000002.history.gz", gzip.compress(b"1\t0/6000028\tx\n"))
        == "1\t0/6000028\tx\n"
    )
    assert decompress("wals/00000002.history", b"1\t0/1\tx\n") == "1\t0/1\tx\n"
    assert decompress("wals/00000002.history.gz", b"not gzip") is None


# -- the restore gate -------------------------------------------------------------------------
GAPPY = folder(hourly_wal(1, 12, skip={9}), [backup(B1, 2), backup(B2, 6, hour=1)])


@pytest.fixture
def gappy():
    return build_report(GAPPY, T0 + timedelta(minutes=125))


def test_a_restore_to_latest_across_a_gap_is_refused_with_the_reports_sentence(gappy):
    b2 = GAPPY.backups[1]
    sentence = wal_gap_refusal(gappy, b2, RecoveryTarget())
    assert sentence == gappy.gap_findings[0]
    message = refusal_message(b2, RecoveryTarget(), sentence)
    assert message == (
        f"the restore of backup {B2} to the end of the archive is refused "
        f"before restore-test is touched, because the WAL archive cannot take "
        f"it there: {sentence}"
    )


def test_targets_before_the_gap_go_ahead_and_targets_past_it_are_refused(gappy):
    b2 = GAPPY.backups[1]
    instant = T0 + timedelta(minutes=80)
    assert wal_gap_refusal(gappy, b2, RecoveryTarget(time=instant)) is None
    assert (
        wal_gap_refusal(gappy, b2, RecoveryTarget(time=instant + timedelta(seconds=1)))
        == gappy.gap_findings[0]
    )
    assert wal_gap_refusal(gappy, b2, RecoveryTarget(lsn="0/8FFFFFF")) is None
    assert wal_gap_refusal(gappy, b2, RecoveryTarget(lsn="0/9000001")) == gappy.gap_findings[0]
    point = RecoveryTarget(name="p@run")
    assert wal_gap_refusal(gappy, b2, point) is None  # LSN unknown
    assert wal_gap_refusal(gappy, b2, point, expected_lsn="0/A000000") == gappy.gap_findings[0]


def test_the_gate_lets_a_restore_go_when_the_gap_is_before_its_backup():
    f = folder(hourly_wal(1, 12, skip={4}), [backup(B1, 2), backup(B2, 6, hour=1)])
    report = build_report(f, T0 + timedelta(minutes=125))
    assert wal_gap_refusal(report, f.backups[1], RecoveryTarget()) is None
    assert wal_gap_refusal(report, f.backups[0], RecoveryTarget()) == report.gap_findings[0]


def test_a_gap_is_listed_again_before_it_counts(monkeypatch):
    listings = [GAPPY, folder(hourly_wal(1, 12), list(GAPPY.backups))]
    monkeypatch.setattr(
        "pgdrill.bucket.listing.read_server_folder", lambda location: listings.pop(0)
    )
    pauses = []
    report = report_bucket(object(), recheck_seconds=7, sleep=pauses.append)
    assert pauses == [7] and report.gap_findings == []  # the second listing counts
    listings = [folder(hourly_wal(1, 12), list(GAPPY.backups))]
    report_bucket(object(), recheck_seconds=7, sleep=pauses.append)
    assert pauses == [7]  # no gap: no second listing


def test_the_gate_goes_ahead_when_the_bucket_cannot_be_read(monkeypatch):
    from pgdrill.core.errors import TargetError

    class Target:
        def bucket_location(self):
            raise TargetError("cannot reach the S3 endpoint http://x")

    said = []
    monkeypatch.setattr(restore_gate, "say", said.append)
    gate = restore_gate.check_wal_chain(Target(), GAPPY.backups[1], RecoveryTarget())
    assert gate.refusal is None and gate.report is None
    assert gate.record["checked"] is False
    assert gate.record["note"] == "cannot reach the S3 endpoint http://x"
    assert said and "PostgreSQL's replay will tell" in said[0]


# -- the drill's evidence and report ----------------------------------------------------------
def test_a_gap_in_the_drills_bucket_fails_its_verdict_but_staleness_does_not(gappy):
    assert BUCKET_GAP_KINDS == GAP_KINDS == REPORT_GAP_KINDS
    ctx = context()
    ctx["bucket"] = gappy.to_dict()
    verdict, reasons = judge(journal(), ctx)
    assert verdict == "failed"
    assert reasons == [f"the WAL archive s3://bucket/path/srv/ has a gap: {gappy.gap_findings[0]}"]
    stale = build_report(folder(hourly_wal(1, 6), [backup(B1, 2)]), T0 + timedelta(days=3))
    assert {f.kind for f in stale.findings} == {"archive_lag", "backup_age"}
    ctx["bucket"] = stale.to_dict()
    assert judge(journal(), ctx) == ("passed", [])


def test_the_bucket_report_is_in_the_evidence_its_schema_and_the_human_report(gappy):
    ctx = context()
    ctx["bucket"] = gappy.to_dict()
    evidence = build_evidence(
        journal(), ctx, experiment="x", target="sandbox", environment="develop"
    )
    assert evidence["bucket"]["gaps"][0]["problem"] == gappy.gap_findings[0]
    validate(evidence)
    section = bucket_section(evidence)
    assert section.key == "bucket"
    assert f"GAP: {gappy.gap_findings[0]}" in section.lines
    assert any(
        isinstance(line, str) and line.startswith("what it costs: ") for line in section.lines
    )
    from pgdrill.reports.human import build_report as human_report
    from pgdrill.reports.human import render_markdown as md

    text = md(human_report(evidence, journal(), "run-1"), None)
    assert "## WAL archive and recoverable window" in text
    assert bucket_section({"bucket": None}) is None
