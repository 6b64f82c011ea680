"""Log lines saved next to a drill's evidence: only the lines from the drill's start on,
redacted (no credential value ever reaches the run folder)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from pgdrill.core.files import write_atomically
from pgdrill.credentials.secret import redact

# "2026-12-01T03:22:11.123456Z ...", "2026-12-01 03:22:11.123 UTC [42] ..." (PostgreSQL's %m)
_STAMP = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2}| UTC)?"
)


def line_time(line: str) -> datetime | None:
    match = _STAMP.match(line)
    if not match:
        return None
    day, clock, fraction, zone = match.groups()
    fraction = (fraction or "")[:7]
    zone = "+00:00" if zone in (None, "Z", " UTC") else zone
    try:
        when = datetime.fromisoformat(f"{day}T{clock}{fraction}{zone}")
    except ValueError:
        return None
    return when.astimezone(UTC)


def lines_since(text: str, since: datetime) -> str:
    """The lines stamped at or after `since`; an unstamped line follows the line before it
    (continuations of a multi-line message)."""
    kept, keep = [], False
    for line in text.splitlines():
        when = line_time(line)
        if when is not None:
            keep = when >= since
        if keep:
            kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")


def save_log(folder: Path, name: str, text: str, since: datetime, secrets) -> Path | None:
    """Write the lines of `text` since `since`, redacted, to `folder/name`; None when none."""
    chosen = lines_since(text, since)
    if not chosen:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    path = folder / safe
    write_atomically(path, redact(chosen, [s for s in secrets if s]))
    return path
