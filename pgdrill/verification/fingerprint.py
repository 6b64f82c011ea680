"""Table fingerprints computed inside PostgreSQL: prove a restored copy equals its source.

A fingerprint is a row count plus an order-independent aggregate of a per-row hash. Physical
row order, vacuum or a different heap layout in the copy do not change it; any change to a
row's values practically always does. Two methods; each fingerprint records its `method`.

`hash_record_v1`, the default wherever it works (PostgreSQL 14+, and every column type has
an extended hash function). Per row R = hash_record_extended(row, 0), the 64-bit hash
PostgreSQL's hash joins and hash partitions use. The digest is 128 bits (32 hex digits):
sum(R) mod 2^64, then sum(G) mod 2^64 where G = hashint8extended(R, 1).
Why two sums of one hash and not two seeds: hash_record_extended combines the column hashes
linearly (R = 31 * R + h(column)), so sum(R), under *any* seed, cannot see one column's values
permuted among rows (two rows swapping their balances keep sum(R), see the tests). G remixes
R non-linearly (folded to 32 bits, then hashed), so sum(G) sees those; sum(R) sees what the
32-bit fold could hide. A changed, lost, extra or duplicated row, or values moved between
rows, goes unnoticed with a probability of about 2^-64 per comparison. Not cryptographic:
whoever wants to forge an equal table can; this detects faults, not adversaries.
What it sees is what `=` sees, not the text: the column hashes are the types' hash-opclass
functions, consistent with equality, so values equal under `=` but written differently hash
alike: numeric 1.0 vs 1.00, interval '1 day' vs '24 hours', float8 -0 vs +0 and every NaN
(noted, not fixed), strings equal under a nondeterministic collation, citext. And int8 and
timestamp values are folded to 32 bits before hashing: flipping bit i and bit i+32 of one
value together is invisible (no restore does that; page checksums guard against bit flips).
Text-vs-binary transfer (COPY binary, a physical restore) does not matter: equal values hash
equal, as long as both sides run the same major version on the same architecture (which a
physical restore requires anyway).

`md5_text`, the fallback (and the only method before hash_record_v1): the exact sum (as
numeric) of the first 64 bits of md5(row::text) per row. 3-4x slower and text-exact (1.0 and
1.00 differ); it works for every type. A table with a column whose type has no extended hash
function (json, xml, money, bit, tsvector, point and the other geometric types, and arrays,
ranges or composites of those) is fingerprinted with it: one probe per table hashes a row of
typed NULLs, so the choice depends on the column types only, never on the rows. A reference
stored before `method` existed is md5_text (`from_dict`'s default); `fingerprint_like` uses
the reference's method; `compare_fingerprints` never compares fingerprints of different
methods: such a table is "incomparable", not a match, whatever the digests.

Tables with a single-column integer primary key are also fingerprinted per key range, all in
one GROUP BY pass, so a mismatch names *which* key range differs. The ranges are `buckets`
equal-width ranges over [min(key), max(key) + 1) plus two open-ended tails, (None, min) and
(max + 1, None), that are empty in the source and catch rows the copy has outside it. Every
range is returned, empty or not, so two sides are comparable range by range. To compare a
copy whose keys span a different interval (rows deleted at the edges), fingerprint it with
the reference's ranges: `fingerprint_like` / `fingerprint_tables_like`.

Each table is read in one REPEATABLE READ snapshot when the connection is idle (all tables
of `fingerprint_tables` share one). Given `connect` (a callable opening another connection
to the same database), a table of at least PARALLEL_MIN_BYTES is read by `parallel`
connections at once (default DEFAULT_PARALLEL, min(CPUs, 4) of this machine): the caller's
connection exports its snapshot (pg_export_snapshot) and the others import it (SET
TRANSACTION SNAPSHOT), so all read one consistent state; each reads a disjoint slice of the
heap's blocks (a TID range scan, PostgreSQL 14+) and the per-range sums are added up: the
result is the one a single connection gets. On 2 busy cores this gained ~1.45x on a 94 MB
table (benchmarks/fingerprint.py). Without `connect`, or inside a transaction the caller
already has open (whose uncommitted changes no other connection sees), one connection reads
everything. `compare_fingerprints` is pure.

`user_tables` lists what a drill fingerprints by default: every permanent ordinary or
partitioned table outside the system schemas (partitions are read through their parent).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from pgdrill.core.errors import BadInput, PgdrillError

INT8_MAX = 2**63 - 1
_INT_TYPES = ("int2", "int4", "int8")
_TABLE_KINDS = ("r", "p")  # ordinary and partitioned tables

HASH_RECORD = "hash_record_v1"
MD5_TEXT = "md5_text"
METHODS = (HASH_RECORD, MD5_TEXT)
_MOD = 2**64

# Extra connections are worth opening only for a table with at least this many heap bytes.
PARALLEL_MIN_BYTES = 32 * 2**20
DEFAULT_PARALLEL = min(os.cpu_count() or 1, 4)

# The MD5_TEXT per-row hash (`r` is the table alias); HASH_RECORD's is built per table
# (_hasher). Per method, the sums over the per-row hash `h`.
_MD5_ROW_HASH = sql.SQL("('x' || left(md5(ROW(r.*)::text), 16))::bit(64)::bigint")
_SUMS = {
    MD5_TEXT: sql.SQL("coalesce(sum(h::numeric), 0)"),
    HASH_RECORD: sql.SQL("coalesce(sum(h), 0), coalesce(sum(hashint8extended(h, 1)), 0)"),
}
_PARTS = {MD5_TEXT: 1, HASH_RECORD: 2}


@dataclass(frozen=True)
class RangeFingerprint:
    """Rows whose key is in [lo, hi): their count and order-independent digest.

    lo or hi None means unbounded on that side; both None means the whole table."""

    lo: int | None
    hi: int | None
    rows: int
    digest: str

    def to_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "rows": self.rows, "digest": self.digest}


@dataclass(frozen=True)
class TableFingerprint:
    """A table's row count and digest, plus one RangeFingerprint per key range.

    `key` is the single integer primary-key column the ranges are over, or None (then
    `ranges` is one whole-table range). `method` is how the digests were computed
    (HASH_RECORD or MD5_TEXT): digests of different methods are not comparable."""

    table: str
    key: str | None
    rows: int
    digest: str
    ranges: tuple[RangeFingerprint, ...]
    method: str = MD5_TEXT

    @property
    def boundaries(self) -> tuple[tuple[int | None, int | None], ...]:
        """The (lo, hi) of every range, in order."""
        return tuple((r.lo, r.hi) for r in self.ranges)

    def to_dict(self) -> dict:
        """A JSON-ready dict; `from_dict` reads it back."""
        return {
            "table": self.table,
            "key": self.key,
            "rows": self.rows,
            "digest": self.digest,
            "method": self.method,
            "ranges": [r.to_dict() for r in self.ranges],
        }

    @classmethod
    def from_dict(cls, data: dict) -> TableFingerprint:
        """Read back what `to_dict` wrote; BadInput if it is malformed. A dict without
        "method" (written before methods existed) is MD5_TEXT."""
        try:
            ranges = tuple(
                RangeFingerprint(
                    lo=_opt_int(r["lo"]),
                    hi=_opt_int(r["hi"]),
                    rows=int(r["rows"]),
                    digest=str(r["digest"]),
                )
                for r in data["ranges"]
            )
            method = str(data.get("method") or MD5_TEXT)
            if method not in METHODS:
                raise ValueError(f"unknown method {method!r}")
            return cls(
                table=str(data["table"]),
                key=data["key"],
                rows=int(data["rows"]),
                digest=str(data["digest"]),
                ranges=ranges,
                method=method,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadInput(
                f"malformed table fingerprint: {exc!r}",
                fix="pass a dict written by TableFingerprint.to_dict()",
            ) from exc


def _opt_int(value) -> int | None:
    return None if value is None else int(value)


# -- computing fingerprints -----------------------------------------------------------------

Connect = Callable[[], psycopg.Connection]


def fingerprint_table(
    conn: psycopg.Connection,
    table: str,
    *,
    buckets: int = 16,
    bounds: tuple[int, int] | None = None,
    method: str | None = None,
    parallel: int | None = None,
    connect: Connect | None = None,
) -> TableFingerprint:
    """Fingerprint `table` ("name" or "schema.name") in one pass.

    With a single-column integer primary key, [lo, hi) is split into `buckets` equal-width
    ranges (plus the two open tails); lo, hi default to min(key), max(key) + 1. Pass the
    same `bounds` on both sides to get comparable ranges. `method`: None or HASH_RECORD for
    the fast hash where the table's types allow it (else MD5_TEXT), MD5_TEXT to force the
    text hash. `connect` opens another connection to the same database; with it, a big
    table is read by `parallel` connections (default DEFAULT_PARALLEL) sharing one
    snapshot. BadInput for an unknown table."""
    _check_args(buckets, method, parallel)
    if bounds is not None and not bounds[0] < bounds[1]:
        raise BadInput(f"bounds must be (lo, hi) with lo < hi, not {bounds}")
    with _readers(conn, connect, parallel) as readers:
        return _fingerprint_bucketed(readers, *_resolve(conn, table), buckets, bounds, method)


def fingerprint_like(
    conn: psycopg.Connection,
    reference: TableFingerprint,
    *,
    parallel: int | None = None,
    connect: Connect | None = None,
) -> TableFingerprint:
    """Fingerprint the reference's table with exactly the reference's ranges and method.

    If the table here has no such key column (or the reference has none), the result is a
    whole-table fingerprint, which `compare_fingerprints` compares as a whole. If the
    reference is HASH_RECORD but the table here cannot be hashed so (a column type
    changed), the result is MD5_TEXT, which `compare_fingerprints` reports incomparable."""
    _check_args(1, reference.method, parallel)
    with _readers(conn, connect, parallel) as readers:
        return _fingerprint_like(readers, reference)


def fingerprint_tables(
    conn: psycopg.Connection,
    tables: list[str] | None = None,
    *,
    buckets: int = 16,
    method: str | None = None,
    parallel: int | None = None,
    connect: Connect | None = None,
) -> dict[str, TableFingerprint]:
    """Fingerprint several tables in one snapshot, keyed by "schema.name".

    tables=None means every ordinary table in schema public, sorted by name. `method`,
    `parallel` and `connect` as for `fingerprint_table`."""
    _check_args(buckets, method, parallel)
    with _readers(conn, connect, parallel) as readers:
        if tables is None:
            names = [
                ("public", name)
                for (name,) in _rows(
                    conn,
                    "SELECT relname FROM pg_class WHERE relkind = 'r' "
                    "AND relnamespace = 'public'::regnamespace ORDER BY relname",
                )
            ]
        else:
            names = [_resolve(conn, table) for table in tables]
        result = {}
        for schema, name in names:
            fp = _fingerprint_bucketed(readers, schema, name, buckets, None, method)
            result[fp.table] = fp
        return result


def fingerprint_tables_like(
    conn: psycopg.Connection,
    reference: dict[str, TableFingerprint],
    *,
    parallel: int | None = None,
    connect: Connect | None = None,
) -> dict[str, TableFingerprint]:
    """`fingerprint_like` for every reference table, in one snapshot.

    Tables absent here are left out, so `compare_fingerprints` reports them missing."""
    _check_args(1, None, parallel)
    with _readers(conn, connect, parallel) as readers:
        result = {}
        for name, ref in reference.items():
            if _lookup(conn, ref.table) is None:
                continue
            result[name] = _fingerprint_like(readers, ref)
        return result


# The schemas user_tables skips: the system catalogs, TOAST tables (pg_toast, and
# pg_toast_temp_N), other sessions' temporary tables (pg_temp_N); LIKE patterns.
_SYSTEM_SCHEMAS = ("pg\\_catalog", "information\\_schema", "pg\\_toast%", "pg\\_temp\\_%")

_USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind::text = ANY(%(kinds)s) AND c.relpersistence = 'p' AND NOT c.relispartition
  AND NOT n.nspname::text LIKE ANY(%(system)s)
  AND NOT c.relname::text = ANY(%(anywhere)s)
  AND NOT (n.nspname || '.' || c.relname) = ANY(%(qualified)s)
ORDER BY n.nspname, c.relname
"""


def user_tables(conn: psycopg.Connection, exclude: Sequence[str] = ()) -> list[str]:
    """Every user table of the connection's database, as "schema.name", sorted (one query).

    User tables: ordinary and partitioned tables, permanent, in every schema except the
    system ones (pg_catalog, information_schema, pg_toast*, pg_temp_*). Left out: a
    partition (its partitioned table is read with all its rows), an unlogged table (not
    WAL-logged: a backup restores it empty, a replica has it empty), a temporary table.
    `exclude`: a "schema.name" leaves out that table; a bare "name" leaves out a table of
    that name in every schema (as one created unqualified, through whatever search_path)."""
    anywhere = [t for t in exclude if "." not in t]
    qualified = [t for t in exclude if "." in t]
    return [
        f"{schema}.{name}"
        for schema, name in _rows(
            conn,
            _USER_TABLES,
            {
                "kinds": list(_TABLE_KINDS),
                "system": list(_SYSTEM_SCHEMAS),
                "anywhere": anywhere,
                "qualified": qualified,
            },
        )
    ]


def _check_args(buckets: int, method: str | None, parallel: int | None) -> None:
    if buckets < 1:
        raise BadInput(f"buckets must be at least 1, not {buckets}")
    if method is not None and method not in METHODS:
        raise BadInput(
            f"unknown fingerprint method {method!r}",
            fix=f"use one of {', '.join(METHODS)} (or None for the fastest)",
        )
    if parallel is not None and parallel < 1:
        raise BadInput(f"parallel must be at least 1, not {parallel}")


# -- comparing ------------------------------------------------------------------------------


def compare_fingerprints(
    expected: dict[str, TableFingerprint], actual: dict[str, TableFingerprint]
) -> dict:
    """Compare two sets of fingerprints (pure). Name which key ranges differ, per table.

    Ranges are compared one by one when both sides have the same boundaries; otherwise the
    table is compared as a whole and a difference is reported as one range (None, None).
    "compared_by" says which ("ranges" or "table"). Fingerprints made by different methods
    are not compared at all: "compared_by" is "incomparable", the table does not match,
    "method_mismatch" holds both methods and "incomparable_tables" lists such tables."""
    tables, incomparable = [], []
    for name in sorted(expected.keys() & actual.keys()):
        exp, act = expected[name], actual[name]
        if exp.method != act.method:
            incomparable.append(name)
            tables.append(
                {
                    "table": name,
                    "match": False,
                    "expected_rows": exp.rows,
                    "actual_rows": act.rows,
                    "compared_by": "incomparable",
                    "method_mismatch": {"expected": exp.method, "actual": act.method},
                    "differing_ranges": [],
                }
            )
            continue
        same = exp.rows == act.rows and exp.digest == act.digest
        if exp.boundaries == act.boundaries:
            compared_by = "ranges"
            differing = [
                {"lo": e.lo, "hi": e.hi, "expected_rows": e.rows, "actual_rows": a.rows}
                for e, a in zip(exp.ranges, act.ranges)
                if (e.rows, e.digest) != (a.rows, a.digest)
            ]
        else:
            compared_by = "table"
            differing = (
                []
                if same
                else [{"lo": None, "hi": None, "expected_rows": exp.rows, "actual_rows": act.rows}]
            )
        tables.append(
            {
                "table": name,
                "match": same and not differing,
                "expected_rows": exp.rows,
                "actual_rows": act.rows,
                "compared_by": compared_by,
                "differing_ranges": differing,
            }
        )
    missing = sorted(expected.keys() - actual.keys())
    unexpected = sorted(actual.keys() - expected.keys())
    return {
        "match": all(t["match"] for t in tables) and not missing and not unexpected,
        "tables": tables,
        "missing_tables": missing,
        "unexpected_tables": unexpected,
        "incomparable_tables": incomparable,
    }


def narrow_difference(
    conn_a: psycopg.Connection,
    conn_b: psycopg.Connection,
    table: str,
    lo: int | None,
    hi: int | None,
    *,
    min_span: int = 64,
    max_depth: int = 12,
    method: str | None = None,
) -> list[tuple[int, int]]:
    """Bisect the key range [lo, hi) of `table` between two databases.

    Returns the narrowest ranges that still differ, sorted: each is split in halves until
    its span is <= min_span or max_depth halvings are done. [] if [lo, hi) does not differ.
    lo or hi None (an open tail) means the smallest key / largest key + 1 on either side.
    Each level is one query per side; a source that keeps changing may give moving answers.
    Both sides use the same `method` (default: HASH_RECORD if both can, else MD5_TEXT)."""
    if min_span < 1 or max_depth < 0:
        raise BadInput(f"min_span must be >= 1 and max_depth >= 0, not {min_span}, {max_depth}")
    _check_args(1, method, None)
    sides = []
    for conn in (conn_a, conn_b):
        schema, name = _resolve(conn, table)
        key = _integer_key(conn, schema, name)
        if key is None:
            raise BadInput(
                f"table {table!r} has no single-column integer primary key: "
                "cannot narrow a difference by key range",
                fix="compare it as a whole with compare_fingerprints",
            )
        sides.append((conn, schema, name, key))
    if sides[0][3] != sides[1][3]:
        raise BadInput(
            f"table {table!r} is keyed on {sides[0][3]!r} in one database "
            f"and on {sides[1][3]!r} in the other"
        )
    hashers = [_hasher(c, s, n, method) for c, s, n, _ in sides]
    if hashers[0].method != hashers[1].method:
        hashers = [_hasher(c, s, n, MD5_TEXT) for c, s, n, _ in sides]
    sides = [(*side, h) for side, h in zip(sides, hashers)]
    if lo is None or hi is None:
        found = [b for b in (_key_bounds(c, s, n, k) for c, s, n, k, _ in sides) if b]
        if not found:
            return []
        lo = min(b[0] for b in found) if lo is None else lo
        hi = max(b[1] for b in found) if hi is None else hi
    if not lo < hi:
        return []

    differing = _differing_ranges(sides, [(lo, hi)])
    narrowest: list[tuple[int, int]] = []
    depth = 0
    while differing:
        to_split = []
        for r_lo, r_hi in differing:
            if r_hi - r_lo <= min_span or depth >= max_depth:
                narrowest.append((r_lo, r_hi))
            else:
                to_split.append((r_lo, r_hi))
        halves = []
        for r_lo, r_hi in to_split:
            mid = r_lo + (r_hi - r_lo) // 2
            halves += [(r_lo, mid), (mid, r_hi)]
        differing = _differing_ranges(sides, halves) if halves else []
        depth += 1
    return sorted(narrowest)


# -- connections and snapshots --------------------------------------------------------------


@contextmanager
def _snapshot(conn: psycopg.Connection) -> Iterator[bool]:
    """One REPEATABLE READ READ ONLY transaction, unless the caller already has one.
    Yields True if the transaction is ours."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        yield False
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield True


class _Readers:
    """The caller's connection, and the extra connections that read big tables with it in
    its snapshot: opened on first need, closed at the end."""

    def __init__(
        self, conn: psycopg.Connection, connect: Connect | None, parallel: int, own_snapshot: bool
    ) -> None:
        self.conn = conn
        self.connect = connect
        # A snapshot can be shared only if it is ours (others cannot see a caller's
        # uncommitted changes) and a heap can be split by blocks only from PostgreSQL 14.
        self.wanted = (
            parallel
            if (connect is not None and own_snapshot and conn.info.server_version >= 140000)
            else 1
        )
        self.extra: list[psycopg.Connection] = []
        self.snapshot_id: str | None = None
        self.opened = False

    def for_size(self, heap_bytes: int) -> list[psycopg.Connection]:
        """The connections to read a heap of this size with."""
        if self.wanted <= 1 or heap_bytes < PARALLEL_MIN_BYTES:
            return [self.conn]
        if not self.opened:
            self.opened = True
            self._open()
        return [self.conn, *self.extra]

    def _open(self) -> None:
        self.snapshot_id = _rows(self.conn, "SELECT pg_export_snapshot()")[0][0]
        for _ in range(self.wanted - 1):
            try:
                other = self.connect()
            except (psycopg.Error, PgdrillError):
                break  # e.g. too many connections: read with the ones there are
            try:
                other.autocommit = True
                other.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                other.execute(
                    sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot_id))
                )
            except BaseException:
                other.close()
                raise
            self.extra.append(other)

    def close(self) -> None:
        for other in self.extra:
            try:
                if not other.closed and other.info.transaction_status != TransactionStatus.IDLE:
                    other.execute("ROLLBACK")
            except psycopg.Error:
                pass
            finally:
                other.close()
        self.extra = []


@contextmanager
def _readers(
    conn: psycopg.Connection, connect: Connect | None, parallel: int | None
) -> Iterator[_Readers]:
    with _snapshot(conn) as own:
        readers = _Readers(conn, connect, DEFAULT_PARALLEL if parallel is None else parallel, own)
        try:
            yield readers
        finally:
            readers.close()


# -- helpers --------------------------------------------------------------------------------


def _rows(conn: psycopg.Connection, query, params=()) -> list[tuple]:
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(query, params).fetchall()


def _split_name(table: str) -> tuple[str | None, str]:
    parts = table.split(".") if isinstance(table, str) else []
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise BadInput(f"bad table name {table!r}: expected 'name' or 'schema.name'")
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _lookup(conn: psycopg.Connection, table: str) -> tuple[str, str, str] | None:
    """(schema, name, relkind) of `table`, resolved through search_path if unqualified."""
    schema, name = _split_name(table)
    ident = sql.Identifier(name) if schema is None else sql.Identifier(schema, name)
    found = _rows(
        conn,
        "SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass(%s)",
        (ident.as_string(conn),),
    )
    return found[0] if found else None


def _resolve(conn: psycopg.Connection, table: str) -> tuple[str, str]:
    found = _lookup(conn, table)
    if found is None:
        raise BadInput(
            f"table {table!r} does not exist in database {conn.info.dbname!r}",
            fix="check the name (as 'name' or 'schema.name') and the database",
        )
    schema, name, kind = found
    if kind not in _TABLE_KINDS:
        raise BadInput(f"{table!r} is not a table (relkind {kind!r})")
    return schema, name


def _integer_key(conn: psycopg.Connection, schema: str, name: str) -> str | None:
    """The column of a single-column int2/int4/int8 primary key, or None."""
    found = _rows(
        conn,
        "SELECT a.attname, t.typname "
        "FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "  AND a.attnum = i.indkey[0] "
        "JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE i.indrelid = %s::regclass AND i.indisprimary "
        "  AND i.indnkeyatts = 1",
        (sql.Identifier(schema, name).as_string(conn),),
    )
    if found and found[0][1] in _INT_TYPES:
        return found[0][0]
    return None


# Every column, in order, with its type (domains resolved to their base types: a NULL of a
# NOT NULL domain cannot be written, and a domain hashes as its base type).
_COLUMNS = """
WITH RECURSIVE cols AS (
    SELECT a.attnum, a.attname, a.atttypid AS typid FROM pg_attribute a
    WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
    SELECT c.attnum, c.attname, t.typbasetype FROM cols c JOIN pg_type t ON t.oid = c.typid
    WHERE t.typtype = 'd'
)
SELECT c.attname, format_type(c.typid, NULL) FROM cols c JOIN pg_type t ON t.oid = c.typid
WHERE t.typtype <> 'd' ORDER BY c.attnum
"""


@dataclass(frozen=True)
class _Hasher:
    """How one table's rows are hashed: the method and the per-row hash over alias `r`."""

    method: str
    row: sql.Composable


def _hasher(conn: psycopg.Connection, schema: str, name: str, requested: str | None) -> _Hasher:
    """HASH_RECORD unless MD5_TEXT is requested or hash_record_extended cannot hash this
    table's rows. That is decided by the column types alone (not by the rows, so an empty
    table decides like a full one): a row of typed NULLs is hashed, which looks up every
    column type's extended hash function (arrays, ranges and composites included)."""
    if requested == MD5_TEXT or conn.info.server_version < 140000:
        return _Hasher(MD5_TEXT, _MD5_ROW_HASH)
    columns = _rows(conn, _COLUMNS, (sql.Identifier(schema, name).as_string(conn),))
    # format_type quotes and qualifies as needed: its output is a type name as SQL.
    probe = sql.SQL("SELECT hash_record_extended(ROW({}), 0)").format(
        sql.SQL(", ").join(sql.SQL("NULL::" + typ) for _, typ in columns)
    )
    try:
        with conn.transaction():  # a savepoint (or a transaction of its own)
            _rows(conn, probe)
    except psycopg.errors.UndefinedFunction:
        # could not identify an extended hash function for type ...
        return _Hasher(MD5_TEXT, _MD5_ROW_HASH)
    # ROW(r.a, r.b, ...) hashes exactly like r.* (dropped columns are skipped either way)
    # and is cheaper to build than the whole-row value.
    return _Hasher(
        HASH_RECORD,
        sql.SQL("hash_record_extended(ROW({}), 0)").format(
            sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(col)) for col, _ in columns)
        ),
    )


def _heap_bytes(conn: psycopg.Connection, schema: str, name: str) -> int:
    """The main fork's size (0 for a partitioned table, which is read by one connection)."""
    return int(
        _rows(
            conn,
            "SELECT pg_relation_size(%s::regclass)",
            (sql.Identifier(schema, name).as_string(conn),),
        )[0][0]
    )


def _fingerprint_bucketed(
    readers: _Readers,
    schema: str,
    name: str,
    buckets: int,
    bounds: tuple[int, int] | None,
    method: str | None,
) -> TableFingerprint:
    conn = readers.conn
    hasher = _hasher(conn, schema, name, method)
    key = _integer_key(conn, schema, name)
    if key is None:
        return _fingerprint(readers, schema, name, None, ((None, None),), hasher)
    if bounds is None:
        bounds = _key_bounds(conn, schema, name, key)
    if bounds is None:  # empty table
        return _fingerprint(readers, schema, name, key, ((None, None),), hasher)
    return _fingerprint(readers, schema, name, key, _equal_ranges(*bounds, buckets), hasher)


def _fingerprint_like(readers: _Readers, reference: TableFingerprint) -> TableFingerprint:
    conn = readers.conn
    schema, name = _resolve(conn, reference.table)
    hasher = _hasher(conn, schema, name, reference.method)
    key = _integer_key(conn, schema, name)
    if key is None or key != reference.key or not _contiguous(reference.boundaries):
        return _fingerprint(readers, schema, name, key, ((None, None),), hasher)
    return _fingerprint(readers, schema, name, key, reference.boundaries, hasher)


def _key_bounds(
    conn: psycopg.Connection, schema: str, name: str, key: str
) -> tuple[int, int] | None:
    """(min(key), max(key) + 1), or None for an empty table. Uses the primary-key index."""
    query = sql.SQL("SELECT min(r.{k}), max(r.{k}) FROM {t} AS r").format(
        k=sql.Identifier(key), t=sql.Identifier(schema, name)
    )
    lo, hi = _rows(conn, query)[0]
    return None if lo is None else (int(lo), int(hi) + 1)


def _equal_ranges(lo: int, hi: int, buckets: int) -> tuple[tuple[int | None, int | None], ...]:
    """(None, lo), then up to `buckets` equal-width ranges over [lo, hi), then (hi, None)."""
    width = -(-(hi - lo) // buckets)
    cuts = list(range(lo, hi, width)) + [hi]
    return ((None, lo), *pairwise(cuts), (hi, None))


def _contiguous(boundaries: Sequence[tuple[int | None, int | None]]) -> bool:
    """True for ranges covering every key: (None, a), (a, b), ..., (z, None)."""
    if len(boundaries) < 2 or boundaries[0][0] is not None or boundaries[-1][1] is not None:
        return False
    return all(
        prev[1] is not None and prev[1] == nxt[0] and (nxt[1] is None or nxt[0] < nxt[1])
        for prev, nxt in pairwise(boundaries)
    )


# A bucket's sums: (rows, *parts); parts are exact integer sums, added across readers.
_Sums = tuple[int, ...]


def _digest(method: str, parts: Sequence[int]) -> str:
    if method == MD5_TEXT:
        return str(parts[0])  # the exact sum, as it always was
    return "".join(f"{p % _MOD:016x}" for p in parts)


def _digest_parts(method: str, digest: str) -> tuple[int, ...]:
    if method == MD5_TEXT:
        return (int(digest),)
    return tuple(int(digest[i : i + 16], 16) for i in range(0, 16 * _PARTS[method], 16))


def _empty(method: str) -> _Sums:
    return (0,) * (1 + _PARTS[method])


def _fingerprint(
    readers: _Readers,
    schema: str,
    name: str,
    key: str | None,
    boundaries: Sequence[tuple[int | None, int | None]],
    hasher: _Hasher,
) -> TableFingerprint:
    """One pass over the table; `boundaries` are (None, None) or contiguous ranges."""
    method = hasher.method
    table = sql.Identifier(schema, name)
    thresholds = [lo for lo, _ in boundaries[1:]]
    conns = readers.for_size(_heap_bytes(readers.conn, schema, name) if readers.wanted > 1 else 0)
    sums = _scan(conns, table, key if len(boundaries) > 1 else None, thresholds, None, hasher)
    ranges = tuple(
        RangeFingerprint(lo, hi, s[0], _digest(method, s[1:]))
        for (lo, hi), s in ((b, sums.get(i, _empty(method))) for i, b in enumerate(boundaries))
    )
    total = [sum(parts) for parts in zip(*(_digest_parts(method, r.digest) for r in ranges))]
    return TableFingerprint(
        table=f"{schema}.{name}",
        key=key,
        rows=sum(r.rows for r in ranges),
        digest=_digest(method, total),
        ranges=ranges,
        method=method,
    )


def _scan(
    conns: list[psycopg.Connection],
    table: sql.Composable,
    key: str | None,
    thresholds: list[int],
    where: tuple[int, int] | None,
    hasher: _Hasher,
) -> dict[int, _Sums]:
    """{bucket: sums} over the whole table, read by every connection in `conns`, each a
    disjoint slice of the heap's blocks."""
    if len(conns) == 1:
        return _bucket_sums(conns[0], table, key, thresholds, where, hasher)
    blocks = _rows(
        conns[0],
        sql.SQL("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::bigint"),
        (table.as_string(conns[0]),),
    )[0][0]
    n = len(conns)
    # n disjoint slices of blocks; the first and the last are open-ended
    cuts = [None] + [blocks * i // n for i in range(1, n)] + [None]
    slices = list(pairwise(cuts))
    with ThreadPoolExecutor(max_workers=len(conns) - 1) as pool:
        futures = [
            pool.submit(_bucket_sums, c, table, key, thresholds, where, hasher, s)
            for c, s in zip(conns[1:], slices[1:])
        ]
        parts = [_bucket_sums(conns[0], table, key, thresholds, where, hasher, slices[0])]
        parts += [f.result() for f in futures]
    total: dict[int, _Sums] = {}
    for part in parts:
        for bucket, sums in part.items():
            before = total.get(bucket)
            total[bucket] = sums if before is None else tuple(a + b for a, b in zip(before, sums))
    return total


def _bucket_sums(
    conn: psycopg.Connection,
    table: sql.Composable,
    key: str | None,
    thresholds: list[int],
    where: tuple[int, int] | None,
    hasher: _Hasher,
    blocks: tuple[int | None, int | None] | None = None,
) -> dict[int, _Sums]:
    """{bucket: (rows, *sums)}; bucket i holds keys in [thresholds[i-1], thresholds[i]),
    bucket 0 keys below thresholds[0]; key None: one bucket 0 for the whole table.
    `where` restricts the scan to keys in [lo, hi), `blocks` to heap blocks [lo, hi)."""
    conditions, params = [], []
    k = sql.SQL("r.{}").format(sql.Identifier(key)) if key is not None else None
    if key is not None:
        # bigint comparisons are cheaper than numeric ones; max(key) + 1 may not fit
        kind = "bigint" if all(t <= INT8_MAX for t in thresholds) else "numeric"
        bucket = sql.SQL("width_bucket({}::{}, %s::{}[])").format(k, sql.SQL(kind), sql.SQL(kind))
        params.append(thresholds)
    else:
        bucket = sql.SQL("0")
    if where is not None:
        conditions.append(sql.SQL("{} >= %s::bigint").format(k))
        params.append(where[0])
        if where[1] <= INT8_MAX:
            conditions.append(sql.SQL("{} < %s::bigint").format(k))
            params.append(where[1])
    if blocks is not None:
        for bound, op in zip(blocks, (">=", "<")):
            if bound is not None:
                conditions.append(sql.SQL("r.ctid " + op + " %s::tid"))
                params.append(f"({bound},0)")
    # OFFSET 0 keeps the subquery apart, so only (bucket, hash) pairs reach a small hash
    # aggregate; flattened, the planner may sort whole rows (to disk on a big table) and
    # would compute the row hash once per aggregate.
    query = sql.SQL(
        "SELECT b, count(*), {s} FROM (SELECT {b} AS b, {h} AS h FROM {t} AS r "
        "{w} OFFSET 0) AS s GROUP BY b"
    ).format(
        b=bucket,
        s=_SUMS[hasher.method],
        h=hasher.row,
        t=table,
        w=sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL(""),
    )
    return {int(row[0]): tuple(int(v) for v in row[1:]) for row in _rows(conn, query, params)}


def _differing_ranges(sides, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges (sorted, disjoint) whose rows differ between the two sides."""
    ranges = sorted(ranges)
    thresholds = sorted({b for r in ranges for b in r})
    bucket = {r: thresholds.index(r[0]) + 1 for r in ranges}
    sums = []
    for conn, schema, name, key, hasher in sides:
        with _snapshot(conn):
            sums.append(
                _bucket_sums(
                    conn,
                    sql.Identifier(schema, name),
                    key,
                    thresholds,
                    (thresholds[0], thresholds[-1]),
                    hasher,
                )
            )
    return [r for r in ranges if sums[0].get(bucket[r]) != sums[1].get(bucket[r])]
