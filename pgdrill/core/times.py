"""ISO-8601 / RFC 3339 times as Python sees them, one rule for every reader: an aware datetime,
a time without an offset taken as UTC (as Chaos Toolkit writes them), None for anything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


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


def human_span(span: timedelta) -> str:
    """3h 5m 2s; '0s' for nothing; a leading '-' when negative."""
    seconds = int(span.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return sign + (" ".join(parts) if parts else "0s")
