"""Go value semantics the SOPS MAC depends on.

sops hashes `ToBytes(value)` of every leaf, where the value is what the Go code holds:
go-yaml v3 typing for clear YAML scalars (not YAML 1.1: `yes` is a string, `0777` an int,
an unquoted date a `time.Time`), `strconv` parsing for decrypted `int/float/bool/time` values,
and Go formatting for the bytes (`FormatFloat(v, 'f', -1, 64)`, `True`/`False`, RFC 3339 with
nanoseconds). Python's defaults differ (`str(7.0)` is `7.0`, Go's is `7`), hence this module.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1


class GoTime(datetime):
    """A `time.Time` as go-yaml v3 or sops decoded it: a datetime that keeps nanoseconds
    (Python keeps microseconds) so that it hashes exactly as Go's `MarshalText` does."""

    @classmethod
    def from_parts(cls, year, month, day, hour, minute, second, nanosecond, tzinfo) -> GoTime:
        self = cls(year, month, day, hour, minute, second, nanosecond // 1000, tzinfo=tzinfo)
        self._nanosecond = nanosecond
        return self

    @property
    def nanosecond(self) -> int:
        return getattr(self, "_nanosecond", self.microsecond * 1000)

    def go_text(self) -> str:
        """`time.Time.MarshalText`: RFC 3339 with nanoseconds, trailing zeros dropped."""
        nanos = self.nanosecond
        text = (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d}T"
            f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
        )
        if nanos:
            text += "." + f"{nanos:09d}".rstrip("0")
        return text + _zone(self)


def _zone(t: datetime) -> str:
    offset = t.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def rfc3339_seconds(t: datetime) -> str:
    """`t.Format(time.RFC3339)`: seconds precision, `Z` for UTC, else `±hh:mm`."""
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    ) + _zone(t)


def _make_time(year, month, day, hour, minute, second, fraction, zone) -> GoTime | None:
    nanos = int((fraction or "")[:9].ljust(9, "0")) if fraction else 0
    if zone in (None, "Z"):
        tz = UTC
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        delta = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-delta if zone[0] == "-" else delta)
    try:
        return GoTime.from_parts(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            nanos,
            tz,
        )
    except ValueError:  # out-of-range field: Go's time.Parse refuses it too
        return None


# go-yaml v3 resolve.go `allowedTimestampFormats` (layouts with 1-2 digit fields)
_TS_ZONED = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[Tt](\d{1,2}):(\d{1,2}):(\d{1,2})"
    r"(?:[.,](\d+))?(Z|[+-]\d{2}:\d{2})"
)
_TS_LOCAL = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d{1,2}):(\d{1,2})(?:[.,](\d+))?")
_TS_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(Z|[+-]\d{2}:\d{2})"
)


def parse_yaml_timestamp(s: str) -> GoTime | None:
    """go-yaml v3 `parseTimestamp`: what an unquoted scalar becomes a `time.Time` for."""
    if not re.match(r"\d{4}-", s):
        return None
    m = _TS_ZONED.fullmatch(s)
    if m:
        return _make_time(*m.groups())
    m = _TS_LOCAL.fullmatch(s)
    if m:
        return _make_time(*m.groups(), None)
    m = _TS_DATE.fullmatch(s)
    if m:
        return _make_time(*m.groups(), None, None, None, None, None)
    return None


def parse_rfc3339(s: str) -> GoTime | None:
    """Go's strict RFC 3339 parse (`time.Time.UnmarshalText`, `time.Parse(time.RFC3339)`)."""
    m = _RFC3339.fullmatch(s)
    return _make_time(*m.groups()) if m else None


# -- strconv ----------------------------------------------------------------------------------
def parse_uint(s: str, base: int = 0) -> int | None:
    """`strconv.ParseUint(s, base, 64)`, None on any error (syntax or range)."""
    if not s:
        return None
    base0 = base == 0
    if "_" in s and not (base0 and _underscore_ok(s)):
        return None
    if base0:
        base = 10
        if s[0] == "0":
            if len(s) >= 3 and s[1].lower() == "b":
                base, s = 2, s[2:]
            elif len(s) >= 3 and s[1].lower() == "o":
                base, s = 8, s[2:]
            elif len(s) >= 3 and s[1].lower() == "x":
                base, s = 16, s[2:]
            else:
                base, s = 8, s[1:]
    digits = s.replace("_", "")
    if not re.fullmatch(r"[0-9A-Za-z]*", digits):
        return None
    value = 0
    for c in digits:
        d = int(c, 36)
        if d >= base:
            return None
        value = value * base + d
    return value if value <= UINT64_MAX else None


def parse_int(s: str, base: int = 0) -> int | None:
    """`strconv.ParseInt(s, base, 64)`, None on any error."""
    if not s:
        return None
    negative = s[0] == "-"
    body = s[1:] if s[0] in "+-" else s
    value = parse_uint(body, base)
    if value is None:
        return None
    value = -value if negative else value
    return value if INT64_MIN <= value <= INT64_MAX else None


def atoi(s: str) -> int | None:
    """`strconv.Atoi`: decimal only, optional sign, int64 range."""
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        return None
    value = int(s)
    return value if INT64_MIN <= value <= INT64_MAX else None


def _underscore_ok(s: str) -> bool:
    """strconv `underscoreOK`: underscores only between digits (or after a base prefix)."""
    saw = "^"
    if s[:1] in ("+", "-"):
        s = s[1:]
    i = 0
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    for c in s[i:]:
        if c.isdigit() and c.isascii() or hexa and c.lower() in "abcdef":
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


_DEC_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")


def parse_float(s: str) -> float | None:
    """`strconv.ParseFloat(s, 64)`, None on syntax or range error."""
    low = s.lower()
    if low in ("inf", "+inf", "infinity", "+infinity"):
        return math.inf
    if low in ("-inf", "-infinity"):
        return -math.inf
    if low == "nan":
        return math.nan
    if "_" in s:
        if not _underscore_ok(s):
            return None
        s = s.replace("_", "")
    try:
        if _DEC_FLOAT.fullmatch(s):
            value = float(s)
        elif _HEX_FLOAT.fullmatch(s):
            value = float.fromhex(s)
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return None if math.isinf(value) else value


def parse_bool(s: str) -> bool | None:
    """`strconv.ParseBool`."""
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def format_float(f: float) -> str:
    """`strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits, never an exponent,
    no trailing `.0` (7.0 -> "7", 1e-05 -> "0.00001")."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    text = format(Decimal(repr(f)).normalize(), "f")
    if text == "0" and math.copysign(1.0, f) < 0:
        return "-0"
    return text


def to_bytes(value) -> bytes:
    """sops `ToBytes`: the bytes a leaf contributes to the MAC."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return format_float(value).encode()
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, GoTime):
        return value.go_text().encode()
    if isinstance(value, datetime):
        return (
            GoTime.from_parts(
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond * 1000,
                value.tzinfo or UTC,
            )
            .go_text()
            .encode()
        )
    raise TypeError(f"no Go byte form for {type(value).__name__}")


# -- go-yaml v3 scalar resolution ---------------------------------------------------------------
_RESOLVE_MAP = {
    "true": ("bool", True),
    "True": ("bool", True),
    "TRUE": ("bool", True),
    "false": ("bool", False),
    "False": ("bool", False),
    "FALSE": ("bool", False),
    "": ("null", None),
    "~": ("null", None),
    "null": ("null", None),
    "Null": ("null", None),
    "NULL": ("null", None),
    ".nan": ("float", math.nan),
    ".NaN": ("float", math.nan),
    ".NAN": ("float", math.nan),
    ".inf": ("float", math.inf),
    ".Inf": ("float", math.inf),
    ".INF": ("float", math.inf),
    "+.inf": ("float", math.inf),
    "+.Inf": ("float", math.inf),
    "+.INF": ("float", math.inf),
    "-.inf": ("float", -math.inf),
    "-.Inf": ("float", -math.inf),
    "-.INF": ("float", -math.inf),
    "<<": ("merge", "<<"),
}
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


class UnsupportedScalar(ValueError):
    """A scalar sops cannot hold (an integer beyond int64 that go-yaml makes a uint64)."""


def _hint(s: str) -> str | None:
    if s == "":
        return "N"
    c = s[0]
    if c in "+-":
        return "S"
    if c in "0123456789":
        return "D"
    if c in "yYnNtTfFoO~":
        return "M"
    if c == ".":
        return "."
    return None


def yaml_resolve(s: str, tag: str = "") -> tuple[str, object]:
    """go-yaml v3 `resolve()` of a plain scalar: (kind, value), kind one of null, bool,
    int, float, timestamp, merge, str. `tag` is an explicit short tag (`!!timestamp`)."""
    hint = _hint(s)
    if hint is None or tag in ("!!str", "!!binary"):
        return "str", s
    if s in _RESOLVE_MAP:
        return _RESOLVE_MAP[s]
    if hint == ".":
        value = parse_float(s)
        if value is not None:
            return "float", value
    elif hint in "DS":
        if tag in ("", "!!timestamp"):
            t = parse_yaml_timestamp(s)
            if t is not None:
                return "timestamp", t
        plain = s.replace("_", "")
        value = parse_int(plain)
        if value is not None:
            return "int", value
        if parse_uint(plain) is not None:
            raise UnsupportedScalar("integer out of the int64 range")
        if _YAML_STYLE_FLOAT.fullmatch(plain):
            value = parse_float(plain)
            if value is not None:
                return "float", value
    return "str", s
