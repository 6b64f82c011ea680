"""Physical corruption of one heap page, the part every target shares: find the page over
SQL, checkpoint and evict it from shared buffers, let the target overwrite bytes of the file
(the sandbox writes the local file; CNPG execs into the primary's pod), evict again and read
every heap page to see whether data checksums catch it. Physical damage does not replicate."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import psycopg.sql

from pgdrill.errors import BadInput

BLOCKS_PER_SEGMENT = 131072  # 1 GiB segment files of 8 kB blocks
DAMAGED_BYTES = 64

# (file path relative to the data directory, byte offset, length) -> None
Overwrite = Callable[[str, int, int], None]


def corrupt_page(conn: psycopg.Connection, table: str, overwrite: Overwrite) -> dict:
    """Damage DAMAGED_BYTES in the middle of one page of `table` (autocommit connection to
    the primary) through `overwrite`; return what was damaged and whether it was detected."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_buffercache")
    try:
        relpath, blocks, block_size = conn.execute(
            "SELECT pg_relation_filepath(%s::regclass), pg_relation_size(%s::regclass) "
            "/ current_setting('block_size')::int, current_setting('block_size')::int",
            (table, table)).fetchone()
    except psycopg.errors.UndefinedTable as exc:
        raise BadInput(f"table {table!r} does not exist in database "
                       f"{conn.info.dbname!r}") from exc
    if not blocks:
        raise BadInput(f"table {table!r} is empty: there is no page to corrupt")
    block = min(blocks // 2, BLOCKS_PER_SEGMENT - 1)
    conn.execute("CHECKPOINT")
    conn.execute("SELECT pg_buffercache_evict_relation(%s::regclass)", (table,))
    overwrite(relpath, block * block_size + block_size // 2, DAMAGED_BYTES)
    conn.execute("SELECT pg_buffercache_evict_relation(%s::regclass)", (table,))
    record = {"table": table, "file": relpath, "block": block, "bytes": DAMAGED_BYTES,
              "detected": False, "detected_by": None, "error": None}
    # read every heap page: an index-only scan would never touch the damaged one
    for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
        conn.execute(f"SET {setting} = off")
    try:
        conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(
            psycopg.sql.Identifier(*table.split("."))))
    except psycopg.errors.DataCorrupted as exc:
        record.update(detected=True, detected_by="data checksums",
                      error=str(exc).strip().splitlines()[0])
    return record
