"""ScheduledBackup schedules read the way CloudNativePG reads them: a Python port of
`github.com/robfig/cron` v1.2.0 `cron.Parse`, the parser CNPG 1.30 uses in its
ScheduledBackup controller (`internal/controller/scheduledbackup_controller.go`) and webhook
(`internal/webhook/v1/scheduledbackup_webhook.go`).

What it accepts (anything else raises ScheduleError with robfig's reason):
- six fields `second minute hour day-of-month month day-of-week`, seconds FIRST; `*` `?`
  `a-b` `a/s` `a-b/s` `*/s` and comma lists; month names `jan`..`dec`, weekday names
  `sun`..`sat` (Sunday is 0; 7 is invalid); if day-of-month or day-of-week is `*`/`?` both
  must match, otherwise either;
- five fields, because v1 treats day-of-week as optional: still seconds first, so
  "0 2 * * *" is second 0, minute 2, every hour (hourly at :02), not crontab's "daily at
  02:00"; `Schedule.six_fields` shows that reading and `field_count` says 5;
- descriptors `@yearly` `@annually` `@monthly` `@weekly` `@daily` `@midnight` `@hourly` and
  `@every <Go duration>` (Go's `time.ParseDuration`, e.g. `@every 1h30m`; below one second
  means one second, sub-second parts are dropped; not anchored to the clock: CNPG runs it D
  after its previous check);
- no `TZ=`/`CRON_TZ=` prefix (v1 has none); times are UTC (the operator's clock).

`Schedule.next_after` is robfig's `Next` (the first run strictly after a time, None when
nothing matches within five years, as robfig gives up); `latest_at_or_before`, `period` and
`latest_due` are the backward search and the interval arithmetic the backup assessment
(`pgdrill.targets.cnpg.backup_health`) needs.

Why not croniter: the question is what the CNPG operator will actually run, and croniter
answers a different one. It reads five fields crontab-style (minute first) and takes seconds
as an optional sixth field LAST, so it would read "0 0 2 * * *" (daily at 02:00 for CNPG) as
something else and "0 2 * * *" as daily at 02:00 where CNPG runs it hourly; it has no `@every`;
and it accepts syntax robfig v1 rejects (e.g. `L`, `#`, 7 for Sunday), so a schedule it
approves may be one CNPG refuses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from pgdrill.core.times import to_utc

SEARCH_YEARS = 5  # robfig's Next gives up after five years; so does the backward search
_SECOND = timedelta(seconds=1)
_TICK = timedelta(microseconds=1)


class ScheduleError(ValueError):
    """The schedule is not one CNPG accepts; the message follows robfig/cron's wording."""


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


_SECONDS = _Bounds(0, 59)
_MINUTES = _Bounds(0, 59)
_HOURS = _Bounds(0, 23)
_DOM = _Bounds(1, 31)
_MONTHS = _Bounds(
    1,
    12,
    {
        n: i + 1
        for i, n in enumerate(
            ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
        )
    },
)
_DOW = _Bounds(
    0, 6, {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
)
_FIELDS = (_SECONDS, _MINUTES, _HOURS, _DOM, _MONTHS, _DOW)
_DEFAULTS = ("0", "0", "0", "*", "*", "*")
_DESCRIPTORS = {  # robfig v1 parseDescriptor, as 6-field specs
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_INT = re.compile(r"^[+-]?[0-9]+$")  # Go strconv.Atoi


@dataclass(frozen=True)
class Schedule:
    """A parsed ScheduledBackup `spec.schedule`. Either a calendar (`every` None: allowed
    values per field, sorted) or a constant delay (`@every`). `field_count` is 6 or 5 for
    field schedules, 0 for descriptors. All times are UTC."""

    spec: str
    field_count: int
    seconds: tuple[int, ...] = ()
    minutes: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    days: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    weekdays: tuple[int, ...] = ()  # 0 = Sunday
    dom_star: bool = False
    dow_star: bool = False
    every: timedelta | None = None
    six_fields: str = ""  # how CNPG reads a field schedule, as six fields

    # -- the calendar ----------------------------------------------------------------------

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        return (dom and dow) if (self.dom_star or self.dow_star) else (dom or dow)

    def _time_at_or_after(self, hms: tuple[int, int, int]) -> tuple[int, int, int] | None:
        h0, m0, s0 = hms
        for h in self.hours:
            if h < h0:
                continue
            for m in self.minutes:
                if h == h0 and m < m0:
                    continue
                for s in self.seconds:
                    if h == h0 and m == m0 and s < s0:
                        continue
                    return h, m, s
        return None

    def _time_at_or_before(self, hms: tuple[int, int, int]) -> tuple[int, int, int] | None:
        h0, m0, s0 = hms
        for h in reversed(self.hours):
            if h > h0:
                continue
            for m in reversed(self.minutes):
                if h == h0 and m > m0:
                    continue
                for s in reversed(self.seconds):
                    if h == h0 and m == m0 and s > s0:
                        continue
                    return h, m, s
        return None

    def next_after(self, when: datetime) -> datetime | None:
        """The first run strictly after `when` (robfig's `Next`), None if there is none within
        five years (CNPG then schedules nothing)."""
        try:
            start = _floor_second(to_utc(when))
            if self.every is not None:
                return start + self.every
            start += _SECOND
            day, last_year = start.date(), start.year + SEARCH_YEARS
            while day.year <= last_year:
                if self._day_matches(day):
                    hms = self._time_at_or_after(
                        (start.hour, start.minute, start.second)
                        if day == start.date()
                        else (0, 0, 0)
                    )
                    if hms:
                        return datetime(day.year, day.month, day.day, *hms, tzinfo=UTC)
                day += timedelta(days=1)
        except (OverflowError, ValueError):
            pass
        return None

    def latest_at_or_before(self, when: datetime) -> datetime | None:
        """The last run at or before `when` (calendar schedules only; None for `@every`, which
        has no fixed slots, and when nothing ran within five years)."""
        if self.every is not None:
            return None
        try:
            end = _floor_second(to_utc(when))
            day, first_year = end.date(), end.year - SEARCH_YEARS
            while day.year >= first_year:
                if self._day_matches(day):
                    hms = self._time_at_or_before(
                        (end.hour, end.minute, end.second) if day == end.date() else (23, 59, 59)
                    )
                    if hms:
                        return datetime(day.year, day.month, day.day, *hms, tzinfo=UTC)
                day -= timedelta(days=1)
        except (OverflowError, ValueError):
            pass
        return None

    def period(self, now: datetime) -> timedelta | None:
        """The interval a backup is expected within: `@every`'s delay; for a calendar, the
        longer of the two intervals around the latest run at or before `now` (so a weekday
        schedule allows the weekend gap on Monday morning)."""
        if self.every is not None:
            return self.every
        latest = self.latest_at_or_before(now)
        gaps = []
        if latest is not None:
            before = self.latest_at_or_before(latest - _SECOND)
            after = self.next_after(latest)
            gaps = [latest - before if before else None, after - latest if after else None]
        else:
            first = self.next_after(now)
            second = self.next_after(first) if first else None
            gaps = [second - first if second else None]
        gaps = [g for g in gaps if g is not None]
        return max(gaps) if gaps else None

    def latest_due(self, first_due: datetime, until: datetime) -> datetime:
        """The latest run in [first_due, until) (first_due is a run before `until`)."""
        if self.every is not None:
            steps = (until - _TICK - first_due) // self.every
            return first_due + steps * self.every
        return self.latest_at_or_before(until - _TICK) or first_due


def parse_schedule(spec: str) -> Schedule:
    """Parse a ScheduledBackup `spec.schedule` as CNPG does (robfig/cron v1.2.0 `cron.Parse`).
    Raises ScheduleError with robfig's reason."""
    if not isinstance(spec, str):
        raise ScheduleError(f"the schedule is not a string: {spec!r}")
    if not spec:
        raise ScheduleError("Empty spec string")
    if spec[0] == "@":
        if spec in _DESCRIPTORS:
            return _calendar(spec, _DESCRIPTORS[spec].split(), field_count=0)
        if spec.startswith("@every "):
            try:
                duration = _go_duration(spec[len("@every ") :])
            except ScheduleError as err:
                raise ScheduleError(f"Failed to parse duration {spec}: {err}") from None
            # robfig Every(): below a second means a second; sub-second parts are dropped
            seconds = max(duration // 10**9, 1) if duration >= 10**9 else 1
            return Schedule(spec=spec, field_count=0, every=timedelta(seconds=seconds))
        raise ScheduleError(f"Unrecognized descriptor: {spec}")
    fields = spec.split()
    if not 5 <= len(fields) <= 6:
        raise ScheduleError(f"Expected 5 to 6 fields, found {len(fields)}: {spec}")
    return _calendar(spec, fields + list(_DEFAULTS[len(fields) :]), field_count=len(fields))


def _calendar(spec: str, fields: list[str], *, field_count: int) -> Schedule:
    values, stars = [], []
    for text, bounds in zip(fields, _FIELDS, strict=True):
        allowed, star = _field(text, bounds)
        values.append(tuple(sorted(allowed)))
        stars.append(star)
    return Schedule(
        spec=spec,
        field_count=field_count,
        seconds=values[0],
        minutes=values[1],
        hours=values[2],
        days=values[3],
        months=values[4],
        weekdays=values[5],
        dom_star=stars[3],
        dow_star=stars[5],
        six_fields=" ".join(fields),
    )


def _field(text: str, bounds: _Bounds) -> tuple[set[int], bool]:
    """robfig getField: a comma-separated list of ranges (empty items are skipped)."""
    allowed: set[int] = set()
    star = False
    for expr in (part for part in text.split(",") if part):
        values, is_star = _range(expr, bounds)
        allowed |= values
        star = star or is_star
    return allowed, star


def _range(expr: str, bounds: _Bounds) -> tuple[set[int], bool]:
    """robfig getRange: `*`|`?`|number|number-number, optionally `/step`."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    star = low_and_high[0] in ("*", "?")
    if star:
        start, end = bounds.low, bounds.high
    else:
        start = _int_or_name(low_and_high[0], bounds.names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _int_or_name(low_and_high[1], bounds.names)
        else:
            raise ScheduleError(f"Too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _atoi(range_and_step[1])
        if len(low_and_high) == 1:  # "N/step" means "N-max/step"
            end = bounds.high
    else:
        raise ScheduleError(f"Too many slashes: {expr}")
    if start < bounds.low:
        raise ScheduleError(f"Beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise ScheduleError(f"End of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise ScheduleError(f"Beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ScheduleError(f"Step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _int_or_name(expr: str, names: dict[str, int] | None) -> int:
    if names and expr.lower() in names:
        return names[expr.lower()]
    return _atoi(expr)


def _atoi(expr: str) -> int:
    if not _INT.match(expr):
        raise ScheduleError(f"Failed to parse int from {expr}: invalid syntax")
    number = int(expr)
    if number < 0:
        raise ScheduleError(f"Negative number ({number}) not allowed: {expr}")
    return number


_GO_UNITS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}


def _go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds: e.g. "1h30m", "1.5h", "90s", "-5m", "0"."""
    original, negative = text, False
    if text[:1] in ("-", "+"):
        negative, text = text[0] == "-", text[1:]
    if text == "0":
        return 0
    if not text:
        raise ScheduleError(f'time: invalid duration "{original}"')
    total = Fraction(0)
    while text:
        number = re.match(r"([0-9]*)(?:\.([0-9]*))?", text)
        whole, fraction = number.group(1), number.group(2)
        if not whole and not fraction:
            raise ScheduleError(f'time: invalid duration "{original}"')
        text = text[number.end() :]
        unit = re.match(r"[^0-9.]*", text).group(0)
        text = text[len(unit) :]
        if not unit:
            raise ScheduleError(f'time: missing unit in duration "{original}"')
        if unit not in _GO_UNITS:
            raise ScheduleError(f'time: unknown unit "{unit}" in duration "{original}"')
        value = Fraction(int(whole or "0"))
        if fraction:
            value += Fraction(int(fraction), 10 ** len(fraction))
        total += value * _GO_UNITS[unit]
        if total > 2**63 - 1:
            raise ScheduleError(f'time: invalid duration "{original}"')
    nanoseconds = int(total)
    return -nanoseconds if negative else nanoseconds


def _floor_second(when: datetime) -> datetime:
    return when.replace(microsecond=0)
