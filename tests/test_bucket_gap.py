"""Acceptance 3 of issue 11, end to end on a real sandbox of its own (it deletes a WAL
segment from its bucket, so never the session's sandbox): `pgdrill bucket-report` passes on
a continuous archive; once one segment between the latest backup and the newest WAL is
deleted it fails naming the gap and the last recoverable instant, and a drill's restore to
latest is refused with the same sentence before restore-test is touched (PostgreSQL itself
would stop replay at the gap and promote, quietly)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess

import pytest
from chaoslib.exceptions import ActivityFailed

from actions.restore import restore_latest_backup
from pgdrill.bucket.walchain import wal_file_name
from pgdrill.core.waiting import poll_until
from pgdrill.evidence.runcontext import RUN_DIR_KEY
from pgdrill.targets.sandbox.state import RESTORE_NAME
from tests.conftest import PGDRILL, REPO, running_sandbox

pytestmark = pytest.mark.sandbox


def switch_and_archive(target, n: int) -> str:
    """Write, switch to a new WAL segment and wait until the finished one is archived;
    return its name."""
    primary = target.primary()
    with target.connect(primary, "postgres") as conn:
        conn.autocommit = True
        conn.execute("CREATE TABLE IF NOT EXISTS gap_probe (n int)")
        conn.execute("INSERT INTO gap_probe VALUES (%s)", (n,))
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal() - 1)").fetchone()[0]

        def archived() -> bool:
            (last,) = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            return last is not None and last >= segment

        poll_until(archived, timeout=60, what=f"WAL segment {segment} to be archived")
    return segment


def bucket_report(target, tmp_path) -> subprocess.CompletedProcess:
    location = target.bucket_location()
    env = {**os.environ, "PGDRILL_REPORTS": str(tmp_path / "reports")}
    return subprocess.run(
        [
            PGDRILL,
            "bucket-report",
            location.destination_path,
            "--server-name",
            location.server_name,
            "--credentials",
            str(target.layout.credentials_file),
            "--age-identity",
            str(target.layout.age_key_file),
            "--json",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def segment_object(target, segment: str):
    """(location, client, key) of the one object holding `segment` in the sandbox's bucket."""
    location = target.bucket_location()
    s3 = location.client()
    folder = f"{location.prefix}wals/{segment[:16]}/"
    listed = s3.list_objects_v2(Bucket=location.bucket, Prefix=folder + segment)
    [key] = [
        o["Key"]
        for o in listed.get("Contents", [])
        if wal_file_name(o["Key"][len(location.prefix) :]) == segment
    ]
    return location, s3, key


def delete_segment(target, segment: str) -> str:
    """Delete the one object holding `segment` from the sandbox's bucket; return its key."""
    location, s3, key = segment_object(target, segment)
    s3.delete_object(Bucket=location.bucket, Key=key)
    return key


def test_a_deleted_segment_fails_bucket_report_and_a_restore_to_latest(tmp_path):
    with running_sandbox() as target:
        backup = target.backup(timeout=300)
        segments = [switch_and_archive(target, n) for n in range(3)]
        assert backup.end_wal < segments[0]

        ok = bucket_report(target, tmp_path)
        assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr
        clean = json.loads(ok.stdout)
        assert clean["verdict"] == "passed" and clean["gaps"] == []
        assert clean["window"]["reaches_newest"] is True
        assert backup.id in [b["id"] for b in clean["backups"]]
        # no credential value in what the command prints
        for value in target.s3_credentials().secret_values():
            assert value not in ok.stdout + ok.stderr

        victim = segments[1]  # after the latest backup, before the newest WAL
        delete_segment(target, victim)

        failed = bucket_report(target, tmp_path)
        assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr
        report = json.loads(failed.stdout)
        assert report["verdict"] == "failed"
        [gap] = report["gaps"]
        assert (gap["first_missing"], gap["segments"], gap["last_recoverable"]) == (
            victim,
            1,
            segments[0],
        )
        sentence = gap["problem"]
        assert backup.id in gap["affected_backups"]
        assert f"{victim} is missing (1 segment)" in sentence
        assert (
            f"the last recoverable instant is at the latest {gap['last_archived_at']}, "
            f"when {segments[0]} was archived"
        ) in sentence
        assert sentence in report["reasons"]
        assert gap["cost"].startswith("a restore to latest loses every commit after ")
        assert sentence in failed.stderr

        run_dir = tmp_path / "run"
        run_dir.mkdir()
        cfg = {RUN_DIR_KEY: str(run_dir), "sandbox_home": str(target.layout.home)}
        with pytest.raises(ActivityFailed) as err:
            restore_latest_backup(timeout_seconds=300, configuration=cfg)
        message = str(err.value)
        assert sentence in message
        assert message.startswith(
            f"the restore of backup {backup.id} to the end of the "
            f"archive is refused before restore-test is touched"
        )
        assert target.restored_instance() is None
        assert not target.layout.data_dir(RESTORE_NAME).exists()
        context = json.loads((run_dir / "context.json").read_text())
        assert context["wal_chain"]["refused"] is True
        assert context["wal_chain"]["problem"] == sentence
        assert context["bucket"]["gaps"][0]["problem"] == sentence
        assert "restore" not in context


def damage_segment(target, segment: str) -> str:
    """Overwrite the first records of `segment` in the sandbox's bucket with garbage, keeping
    its size and name: the listing stays continuous, the segment cannot be replayed."""
    location, s3, key = segment_object(target, segment)
    stored = s3.get_object(Bucket=location.bucket, Key=key)["Body"].read()
    gzipped = key.endswith(".gz")  # the sandbox archives as CNPG's wal.compression: gzip
    body = bytearray(gzip.decompress(stored) if gzipped else stored)
    assert len(body) == 16 * 1024 * 1024
    # the first records after the segment's long page header (40 bytes): their CRCs fail
    body[64:4096] = bytes((i * 7 + 13) % 256 for i in range(4096 - 64))
    s3.put_object(
        Bucket=location.bucket, Key=key, Body=gzip.compress(bytes(body)) if gzipped else bytes(body)
    )
    return key


def test_a_damaged_mid_chain_segment_fails_a_restore_to_latest(tmp_path):
    """The listing is continuous, so the gate lets the restore go; PostgreSQL stops replay
    at the damaged segment, promotes and writes "no recovery target specified" — the same
    words as a restore that reached the end. The proof compares the reached LSN with the end
    of the archive listed when the restore started, and fails."""
    with running_sandbox() as target:
        target.backup(timeout=300)
        segments = [switch_and_archive(target, n) for n in range(3)]
        damage_segment(target, segments[1])
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        cfg = {RUN_DIR_KEY: str(run_dir), "sandbox_home": str(target.layout.home)}
        try:
            with pytest.raises(ActivityFailed) as err:
                restore_latest_backup(timeout_seconds=300, configuration=cfg)
            context = json.loads((run_dir / "context.json").read_text())
            restore = context["restore"]
            assert context["wal_chain"]["refused"] is False  # the listing has no gap
            assert "reached" in restore, str(err.value)
            assert restore["reached"]["reason"] == "no recovery target specified"
            assert restore["position_ok"] is False
            assert restore["archive_end"]["segment"] == segments[2]
            assert (
                f"before the end of the archive as listed when the restore started "
                f"(segment {segments[2]}" in restore["position_error"]
            )
            assert "did not stop where it was asked to" in str(err.value)
            assert restore["source_flush_lsn"] is not None
        finally:
            target.cleanup_restore()
