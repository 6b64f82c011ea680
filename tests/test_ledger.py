"""The run ledger: canonical hash-chained lines, receipts, and every kind of tampering named by
its first bad line. Pure: real files in tmp dirs."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import pytest

from pgdrill.core.errors import BadInput, PgdrillError
from pgdrill.evidence import ledger
from pgdrill.evidence.ledger import LedgerTampered, Problem, append_run, verified_entries, verify


def record(run_id: str, **overrides) -> dict:
    base = {
        "run_id": run_id,
        "experiment": "pvc-loss",
        "environment": "staging",
        "target": "cnpg",
        "cluster": "pg-main",
        "cluster_identity": "7714097768629908191",
        "backup": {
            "id": "20261130T223912",
            "begin_lsn": "0/4000028",
            "end_lsn": "0/4000120",
            "end_time": "2026-11-30T22:39:15.908022+00:00",
        },
        "verdict": "passed",
        "started_at": "2026-11-30T22:00:00+00:00",
        "ended_at": "2026-11-30T22:10:00+00:00",
        "rto_seconds": 42.5,
        "lost_writes": 0,
        "restore_reached": {"kind": "latest", "lsn": "0/5000000"},
    }
    return {**base, **overrides}


def record_run(reports: Path, run_id: str, **overrides) -> dict:
    run_dir = reports / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "evidence.json").write_text(json.dumps({"verdict": "passed", "run": run_id}))
    (run_dir / "journal.json").write_text(json.dumps({"status": "completed"}))
    return append_run(reports, run_dir, record(run_id, **overrides))


@pytest.fixture
def reports(tmp_path) -> Path:
    """A reports folder holding a ledger of three runs."""
    path = tmp_path / "reports"
    for i in (1, 2, 3):
        record_run(path, f"20261130T22000{i}Z-pvc-loss")
    return path


def lines_of(reports: Path) -> list[str]:
    return ledger.ledger_path(reports).read_text().splitlines()


def write_lines(reports: Path, lines: list[str]) -> None:
    ledger.ledger_path(reports).write_text("".join(line + "\n" for line in lines))


def rehashed(line: str, **changes) -> str:
    """The line an editor who knows the format would write: changed, line_sha256 recomputed."""
    entry = {**json.loads(line), **changes}
    entry["line_sha256"] = ledger.line_hash(entry)
    return ledger.canonical_json(entry)


def first_bad_line(reports: Path) -> int | None:
    problems = verify(reports)
    assert problems, "the tampering went unnoticed"
    with pytest.raises(LedgerTampered) as exc:
        verified_entries(reports)
    assert f"line {problems[0].line} " in exc.value.message
    return problems[0].line


# -- the format ---------------------------------------------------------------------------------
def test_an_untouched_ledger_verifies_and_chains_every_line(reports):
    assert verify(reports) == []
    entries = verified_entries(reports)
    assert [e["seq"] for e in entries] == [1, 2, 3]
    raw = lines_of(reports)
    assert entries[0]["prev_sha256"] == "0" * 64
    for n in (1, 2):
        assert entries[n]["prev_sha256"] == hashlib.sha256(raw[n - 1].encode()).hexdigest()
    for line, entry in zip(raw, entries):
        assert line == json.dumps(entry, sort_keys=True, separators=(",", ":"))
        body = {k: v for k, v in entry.items() if k != "line_sha256"}
        assert (
            entry["line_sha256"]
            == hashlib.sha256(
                json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
        )
        run_dir = reports / entry["run_id"]
        assert (
            entry["evidence_sha256"]
            == hashlib.sha256((run_dir / "evidence.json").read_bytes()).hexdigest()
        )
        assert (
            entry["journal_sha256"]
            == hashlib.sha256((run_dir / "journal.json").read_bytes()).hexdigest()
        )
        receipt = json.loads((run_dir / "ledger-receipt.json").read_text())
        assert receipt["seq"] == entry["seq"] and receipt["line"] == line


def test_append_returns_the_entry_written(tmp_path):
    entry = record_run(tmp_path, "r1")
    assert entry == verified_entries(tmp_path)[0]
    assert entry["backup"]["id"] == "20261130T223912" and entry["recorded_at"]


def test_an_absent_ledger_is_empty_and_valid(tmp_path):
    assert verify(tmp_path) == [] and verified_entries(tmp_path) == []
    assert verify(tmp_path / "no-such-folder") == []


def test_a_missing_file_hashes_as_none(tmp_path):
    run_dir = tmp_path / "refused-run"
    run_dir.mkdir()
    (run_dir / "journal.json").write_text("{}")
    entry = append_run(tmp_path, run_dir, record("refused-run", verdict="refused", backup=None))
    assert entry["evidence_sha256"] is None and entry["journal_sha256"]
    assert verify(tmp_path) == []


def test_concurrent_appends_are_serialised(tmp_path):
    errors = []

    def one(i: int) -> None:
        try:
            record_run(tmp_path, f"run-{i}")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    entries = verified_entries(tmp_path)
    assert [e["seq"] for e in entries] == list(range(1, 13))
    assert {e["run_id"] for e in entries} == {f"run-{i}" for i in range(12)}


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"verdict": "maybe"}, "verdict"),
        ({"ended_at": None}, "ended_at"),
        ({"started_at": "2026-11-30T22:00:00"}, "offset"),
        ({"seq": 7}, "seq"),
        ({"backup": {"lsn": "0/1"}}, "backup"),
        ({"rto_seconds": float("nan")}, "plain JSON"),
        ({"restore_reached": {"at": object()}}, "plain JSON"),
    ],
)
def test_bad_records_are_refused(tmp_path, bad, match):
    (tmp_path / "r1").mkdir()
    with pytest.raises(BadInput, match=match):
        append_run(tmp_path, tmp_path / "r1", record("r1", **bad))
    assert not ledger.ledger_path(tmp_path).exists() or verify(tmp_path) == []


def test_the_run_folder_must_be_the_runs_own(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(BadInput, match="is not"):
        append_run(tmp_path, tmp_path / "other", record("r1"))


def test_a_run_is_recorded_once(tmp_path):
    record_run(tmp_path, "r1")
    with pytest.raises(BadInput, match="already in the ledger"):
        append_run(tmp_path, tmp_path / "r1", record("r1"))


# -- tampering ----------------------------------------------------------------------------------
def test_an_edited_line_is_named(reports):
    lines = lines_of(reports)
    lines[1] = lines[1].replace('"verdict":"passed"', '"verdict":"failed"')
    write_lines(reports, lines)
    assert first_bad_line(reports) == 2
    assert "line_sha256" in verify(reports)[0].message


def test_an_edit_that_recomputes_line_sha256_breaks_the_chain(reports):
    lines = lines_of(reports)
    lines[1] = rehashed(lines[1], lost_writes=0, rto_seconds=1.0)
    write_lines(reports, lines)
    assert first_bad_line(reports) == 2
    # even with the run folders pruned, the next line's prev_sha256 names it
    for entry_dir in [p for p in reports.iterdir() if p.is_dir()]:
        shutil.rmtree(entry_dir)
    assert first_bad_line(reports) == 2
    assert "prev_sha256" in verify(reports)[0].message and "edited" in verify(reports)[0].message


def test_an_edit_of_the_last_line_is_caught_by_its_receipt(reports):
    lines = lines_of(reports)
    lines[2] = rehashed(lines[2], verdict="passed", lost_writes=None)
    write_lines(reports, lines)
    assert first_bad_line(reports) == 3
    assert "receipt" in verify(reports)[0].message


def test_a_line_that_is_no_json_is_named(reports):
    lines = lines_of(reports)
    lines[0] = lines[0][:-5]
    write_lines(reports, lines)
    assert first_bad_line(reports) == 1


def test_a_whitespace_only_rewrite_is_named(reports):
    lines = lines_of(reports)
    lines[2] = json.dumps(json.loads(lines[2]), sort_keys=True)
    write_lines(reports, lines)
    assert first_bad_line(reports) == 3


def test_a_deleted_middle_line_is_named(reports):
    lines = lines_of(reports)
    write_lines(reports, [lines[0], lines[2]])
    assert first_bad_line(reports) == 2
    assert "seq 3, expected 2" in verify(reports)[0].message


def test_a_deleted_first_line_is_named(reports):
    lines = lines_of(reports)
    write_lines(reports, lines[1:])
    assert first_bad_line(reports) == 1


def test_a_deleted_last_line_is_caught_by_its_receipt(reports):
    lines = lines_of(reports)
    write_lines(reports, lines[:2])
    assert first_bad_line(reports) == 3
    assert "has 2 lines" in verify(reports)[0].message


def test_a_deleted_ledger_is_caught_by_the_receipts(reports):
    ledger.ledger_path(reports).unlink()
    assert first_bad_line(reports) == 1


def test_an_inserted_line_is_named(reports):
    lines = lines_of(reports)
    forged = rehashed(
        lines[0],
        run_id="20261130T220009Z-pvc-loss",
        seq=2,
        prev_sha256=hashlib.sha256(lines[0].encode()).hexdigest(),
    )
    write_lines(reports, [lines[0], forged, *lines[1:]])
    # the forgery chains, but line 2's receipt holds another line (and line 3's seq is off)
    assert first_bad_line(reports) == 2
    assert "receipt" in verify(reports)[0].message
    write_lines(reports, [lines[0], rehashed(lines[0], run_id="x"), *lines[1:]])
    assert first_bad_line(reports) == 2


def test_swapped_lines_are_named(reports):
    lines = lines_of(reports)
    write_lines(reports, [lines[0], lines[2], lines[1]])
    assert first_bad_line(reports) == 2


def test_an_evidence_file_edited_after_the_run_is_named(reports):
    run_id = verified_entries(reports)[1]["run_id"]
    evidence = reports / run_id / "evidence.json"
    evidence.write_text(evidence.read_text().replace("passed", "PASSED"))
    assert first_bad_line(reports) == 2
    assert str(evidence) in verify(reports)[0].message
    assert "was changed" in verify(reports)[0].message


def test_a_removed_journal_is_named(reports):
    run_id = verified_entries(reports)[0]["run_id"]
    (reports / run_id / "journal.json").unlink()
    assert first_bad_line(reports) == 1
    assert "journal.json was removed" in verify(reports)[0].message


def test_pruned_run_folders_are_fine(reports):
    for entry in verified_entries(reports)[:2]:
        shutil.rmtree(reports / entry["run_id"])
    assert verify(reports) == [] and len(verified_entries(reports)) == 3


def test_a_torn_last_line_is_named_and_the_next_run_still_recorded(reports):
    path = ledger.ledger_path(reports)
    path.write_bytes(path.read_bytes() + b'{"seq":4,"run_id":"half')
    record_run(reports, "after-the-crash")
    assert lines_of(reports)[-1].startswith("{") and json.loads(lines_of(reports)[-1])
    problems = verify(reports)
    assert (
        problems[0] == Problem(4, problems[0].message) and "not a valid JSON" in problems[0].message
    )
    assert all(p.line in (4, 5) for p in problems)


def test_tampering_is_an_expected_failure_with_a_fix(reports):
    write_lines(reports, lines_of(reports)[:2])
    with pytest.raises(LedgerTampered) as exc:
        verified_entries(reports)
    assert isinstance(exc.value, PgdrillError) and exc.value.exit_code == 1
    assert "restore" in exc.value.fix and "re-run" in exc.value.fix
