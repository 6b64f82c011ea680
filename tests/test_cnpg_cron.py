"""The ScheduledBackup schedule parser, a port of robfig/cron v1.2.0 `cron.Parse` as CNPG uses
it: seconds first, robfig's day-of-month/day-of-week rule, descriptors, and `@every` with Go
durations. The assessment's use of it is in test_cnpg_backup_health.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgdrill.targets.cnpg.cron import ScheduleError, parse_schedule


def test_the_parser_reads_seconds_first_and_the_day_rules_of_robfig():
    at = datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)
    assert parse_schedule("30 15 3 * * *").next_after(at) == datetime(
        2026, 12, 1, 3, 15, 30, tzinfo=UTC
    )
    # day-of-month and day-of-week both restricted: either matches (Nov 29 is a Sunday)
    either = parse_schedule("0 0 0 1,15 * sun")
    assert either.latest_at_or_before(at) == datetime(2026, 11, 29, tzinfo=UTC)
    assert either.next_after(at) == datetime(2026, 12, 1, tzinfo=UTC)
    # one of them '*' or '?': both must match
    assert parse_schedule("0 0 0 ? * MON-FRI").next_after(
        datetime(2026, 12, 4, 1, tzinfo=UTC)
    ) == datetime(2026, 12, 7, tzinfo=UTC)
    assert parse_schedule("*/15 * * * * *").latest_at_or_before(at) == at.replace(second=45)
    assert parse_schedule("@weekly").six_fields == "0 0 0 * * 0"


def test_every_durations_follow_go_and_robfig():
    assert parse_schedule("@every 1.5h").every == timedelta(minutes=90)
    assert parse_schedule("@every 1500ms").every == timedelta(seconds=1)  # truncated
    assert parse_schedule("@every 0s").every == timedelta(seconds=1)  # at least a second
    with pytest.raises(ScheduleError, match="unknown unit"):
        parse_schedule("@every 1d")
