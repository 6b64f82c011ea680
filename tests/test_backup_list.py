"""barman-cloud-backup-list --format json (barman 3.20.1) into Backup: times, WAL, LSNs, size.
(Sizes measured in the bucket are checked against real S3 in tests/test_ledger_cli.py.)"""

import json
from datetime import UTC, datetime

from pgdrill.targets.sandbox.barman import parse_backup_list

# one item as barman-cloud-backup-list 3.20.1 printed it on a sandbox (copy_stats trimmed):
# every backup.info field, LSNs as begin_xlog/end_xlog, `size` null (barman-cloud-backup
# never fills it)
REAL_ITEM = {
    "backup_label": "'START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\\n'",
    "begin_offset": 40,
    "begin_time": "Mon Nov 30 22:39:12 2026",
    "begin_wal": "000000010000000000000004",
    "begin_xlog": "0/4000028",
    "children_backup_ids": None,
    "cluster_size": 46551840,
    "compression": None,
    "copy_stats": {"total_time": 4.751612, "number_of_workers": 2},
    "data_checksums": "on",
    "deduplicated_size": None,
    "encryption": None,
    "end_offset": 288,
    "end_time": "Mon Nov 30 22:39:15 2026",
    "end_wal": "000000010000000000000004",
    "end_xlog": "0/4000120",
    "error": None,
    "mode": None,
    "parent_backup_id": None,
    "server_name": "cloud",
    "size": None,
    "status": "DONE",
    "summarize_wal": "off",
    "systemid": "7714097768629908191",
    "tablespaces": None,
    "timeline": 1,
    "version": 180006,
    "xlog_segment_size": 16777216,
    "backup_id": "20261130T223912",
    "begin_time_iso": "2026-11-30T22:39:12.366109+00:00",
    "end_time_iso": "2026-11-30T22:39:15.908022+00:00",
}
STARTED = {
    "backup_id": "20261130T224500",
    "status": "STARTED",
    "begin_xlog": None,
    "end_xlog": None,
    "begin_time_iso": "2026-11-30T22:45:00+00:00",
    "end_time_iso": None,
    "size": None,
}


def test_parse_backup_list_reads_lsns_and_keeps_the_old_fields():
    started, done = parse_backup_list(json.dumps({"backups_list": [STARTED, REAL_ITEM]}))[::-1]
    assert [done.id, started.id] == ["20261130T223912", "20261130T224500"]  # oldest first
    assert done.completed and not started.completed
    assert (done.begin_lsn, done.end_lsn) == ("0/4000028", "0/4000120")
    assert (done.begin_wal, done.end_wal, done.timeline) == (
        "000000010000000000000004",
        "000000010000000000000004",
        1,
    )
    assert done.end_time == datetime(2026, 11, 30, 22, 39, 15, 908022, tzinfo=UTC)
    assert done.size is None and started.begin_lsn is None and started.end_time is None
    as_dict = done.to_dict()
    assert as_dict["begin_lsn"] == "0/4000028" and as_dict["size"] is None
    assert {
        "id",
        "status",
        "begin_time",
        "end_time",
        "begin_wal",
        "end_wal",
        "timeline",
        "name",
    } <= set(as_dict)


def test_a_size_in_the_list_is_kept():
    (b,) = parse_backup_list(json.dumps({"backups_list": [{**REAL_ITEM, "size": 123}]}))
    assert b.size == 123
    assert parse_backup_list("") == []
