"""Logs saved beside the evidence: only the drill's lines, never a credential."""

from __future__ import annotations

from datetime import UTC, datetime

from pgdrill.evidence.logs import line_time, lines_since, save_log

SINCE = datetime(2026, 12, 1, 3, 0, 0, tzinfo=UTC)


def test_postgres_and_rfc3339_stamps_are_read_as_utc():
    assert line_time("2026-12-01 03:00:01.123 UTC [42] LOG:  x") == datetime(
        2026, 12, 1, 3, 0, 1, 123000, tzinfo=UTC
    )
    assert line_time('2026-12-01T04:00:00.5+01:00 {"msg":"x"}') == datetime(
        2026, 12, 1, 3, 0, 0, 500000, tzinfo=UTC
    )
    assert line_time("\tcontinuation") is None


def test_only_lines_from_the_start_on_with_their_continuations():
    text = (
        "2026-12-01 02:59:59.000 UTC [1] LOG:  before\n\tDETAIL: before too\n"
        "2026-12-01 03:00:00.000 UTC [1] LOG:  at the start\n\tDETAIL: kept\n"
        "2026-12-01T03:00:05Z promoted\n"
    )
    assert lines_since(text, SINCE).splitlines() == [
        "2026-12-01 03:00:00.000 UTC [1] LOG:  at the start",
        "\tDETAIL: kept",
        "2026-12-01T03:00:05Z promoted",
    ]


def test_saved_logs_are_redacted_and_nothing_is_written_without_lines(tmp_path):
    text = "2026-12-01T03:00:01Z connecting with password s3cr3t-value\n"
    path = save_log(tmp_path / "logs", "staging/app-db-1.log", text, SINCE, ["s3cr3t-value"])
    assert path.name == "staging_app-db-1.log"
    assert path.read_text() == "2026-12-01T03:00:01Z connecting with password <redacted>\n"
    assert save_log(tmp_path / "logs", "old.log", "2026-11-30T00:00:00Z x\n", SINCE, []) is None
