"""ISO-8601 / RFC 3339 times as Python sees them, one rule for every reader: an aware datetime,
a time without an offset taken as UTC (as Chaos Toolkit writes them), None for anything else."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value) -> datetime | None:
    """`value` (str, datetime or None) as an aware datetime, or None when it is not a time."""
    if not value:
        return None
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def to_utc(when: datetime) -> datetime:
    """`when` in UTC; a naive datetime is taken as UTC already."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
