"""Physical corruption of one heap page, the part every target shares: find the page over
SQL, checkpoint and evict it from shared buffers, let the target overwrite bytes of the file
(the sandbox writes the local file; CNPG execs into the primary's pod), evict again and read
every heap page to see whether data checksums catch it. Physical damage does not replicate."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import psycopg.sql

from pgdrill.core.errors import BadInput

BLOCKS_PER_SEGMENT = 131072  # 1 GiB segment files of 8 kB blocks
DAMAGED_BYTES = 64

# (file path relative to the data directory, byte offset, length) -> None
Overwrite = Callable[[str, int, int], None]


def eviction_sql(server_version_num: int) -> str:
    """The SQL that drops every shared buffer of a relation (parameter: its name), so the
    damaged page is read back from the file: pg_buffercache_evict_relation on PostgreSQL 18,
    pg_buffercache_evict per buffer on 17. Older servers cannot evict a buffer: refused
    before anything is damaged (a page still cached would hide the damage)."""
    major = server_version_num // 10000
    if major >= 18:
        return "SELECT pg_buffercache_evict_relation(%s::regclass)"
    if major == 17:
        return (
            "SELECT pg_buffercache_evict(bufferid) FROM pg_buffercache "
            "WHERE relfilenode = pg_relation_filenode(%s::regclass) "
            "AND reldatabase = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())"
        )
    raise BadInput(
        f"physical corruption needs PostgreSQL 17 or later to evict the damaged page "
        f"from shared buffers (pg_buffercache_evict); this server is PostgreSQL "
        f"{major}",
        fix="use corrupt_table mode logical on this cluster, or drill "
        "physical corruption on a PostgreSQL 17+ cluster",
    )


def corrupt_page(conn: psycopg.Connection, table: str, overwrite: Overwrite) -> dict:
    """Damage DAMAGED_BYTES in the middle of one page of `table` (autocommit connection to
    the primary) through `overwrite`; return what was damaged and whether it was detected."""
    evict = eviction_sql(int(conn.execute("SHOW server_version_num").fetchone()[0]))
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_buffercache")
    try:
        relpath, blocks, block_size = conn.execute(
            "SELECT pg_relation_filepath(%s::regclass), pg_relation_size(%s::regclass) "
            "/ current_setting('block_size')::int, current_setting('block_size')::int",
            (table, table),
        ).fetchone()
    except psycopg.errors.UndefinedTable as exc:
        raise BadInput(f"table {table!r} does not exist in database {conn.info.dbname!r}") from exc
    if not blocks:
        raise BadInput(f"table {table!r} is empty: there is no page to corrupt")
    block = min(blocks // 2, BLOCKS_PER_SEGMENT - 1)
    conn.execute("CHECKPOINT")
    conn.execute(evict, (table,))
    overwrite(relpath, block * block_size + block_size // 2, DAMAGED_BYTES)
    conn.execute(evict, (table,))
    record = {
        "table": table,
        "file": relpath,
        "block": block,
        "bytes": DAMAGED_BYTES,
        "detected": False,
        "detected_by": None,
        "error": None,
    }
    # read every heap page: an index-only scan would never touch the damaged one
    for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
        conn.execute(f"SET {setting} = off")
    try:
        conn.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {}").format(
                psycopg.sql.Identifier(*table.split("."))
            )
        )
    except psycopg.errors.DataCorrupted as exc:
        record.update(
            detected=True, detected_by="data checksums", error=str(exc).strip().splitlines()[0]
        )
    return record
