"""Facts read over SQL from a restored copy, the same way on every target."""

from __future__ import annotations

import psycopg

from pgdrill.core.errors import TargetError
from pgdrill.restore.position import ReachedPosition, parse_history


def read_reached_position(conn: psycopg.Connection) -> ReachedPosition:
    """Where recovery stopped: the last line of the history file of the timeline that
    promotion created (the copy's current timeline). Needs a superuser connection."""
    walfile = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
    timeline = int(walfile[:8], 16)
    path = f"pg_wal/{timeline:08X}.history"
    try:
        text = conn.execute("SELECT pg_read_file(%s)", (path,)).fetchone()[0]
    except psycopg.Error as exc:
        raise TargetError(
            f"cannot read {path} on the restored copy: {str(exc).strip()}",
            fix="the copy must have been promoted by recovery (not initialised "
            "afresh), and pgdrill must connect as a superuser",
        ) from None
    return parse_history(text, timeline)
