"""Table fingerprints computed inside PostgreSQL: prove a restored copy equals its source.

A fingerprint is a row count plus an order-independent aggregate of a per-row hash: the sum
(as numeric, so it cannot overflow) of the first 64 bits of md5 of the row's text. Physical
row order, vacuum or a different heap layout in the copy do not change it; any change to a
row's values practically always does.

Tables with a single-column integer primary key are also fingerprinted per key range, all in
one GROUP BY pass, so a mismatch names *which* key range differs. The ranges are `buckets`
equal-width ranges over [min(key), max(key) + 1) plus two open-ended tails, (None, min) and
(max + 1, None), that are empty in the source and catch rows the copy has outside it. Every
range is returned, empty or not, so two sides are comparable range by range. To compare a
copy whose keys span a different interval (rows deleted at the edges), fingerprint it with
the reference's ranges: `fingerprint_like` / `fingerprint_tables_like`.

Each table is read in one REPEATABLE READ snapshot when the connection is idle (all tables
of `fingerprint_tables` share one). `compare_fingerprints` is pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from pgdrill.errors import BadInput

INT8_MAX = 2**63 - 1
_INT_TYPES = ("int2", "int4", "int8")
_TABLE_KINDS = ("r", "p")  # ordinary and partitioned tables

# Per-row hash over the whole row (`r` is the table alias), and its sum as numeric text.
_ROW_HASH = sql.SQL("('x' || left(md5(ROW(r.*)::text), 16))::bit(64)::bigint")
_HASH_SUM = sql.SQL("coalesce(sum(h::numeric), 0)::text")


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
    `ranges` is one whole-table range)."""

    table: str
    key: str | None
    rows: int
    digest: str
    ranges: tuple[RangeFingerprint, ...]

    @property
    def boundaries(self) -> tuple[tuple[int | None, int | None], ...]:
        """The (lo, hi) of every range, in order."""
        return tuple((r.lo, r.hi) for r in self.ranges)

    def to_dict(self) -> dict:
        """A JSON-ready dict; `from_dict` reads it back."""
        return {"table": self.table, "key": self.key, "rows": self.rows,
                "digest": self.digest, "ranges": [r.to_dict() for r in self.ranges]}

    @classmethod
    def from_dict(cls, data: dict) -> TableFingerprint:
        """Read back what `to_dict` wrote; BadInput if it is malformed."""
        try:
            ranges = tuple(RangeFingerprint(lo=_opt_int(r["lo"]), hi=_opt_int(r["hi"]),
                                            rows=int(r["rows"]), digest=str(r["digest"]))
                           for r in data["ranges"])
            return cls(table=str(data["table"]), key=data["key"], rows=int(data["rows"]),
                       digest=str(data["digest"]), ranges=ranges)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"malformed table fingerprint: {exc!r}",
                           fix="pass a dict written by TableFingerprint.to_dict()") from exc


def _opt_int(value) -> int | None:
    return None if value is None else int(value)


# -- computing fingerprints -----------------------------------------------------------------

def fingerprint_table(conn: psycopg.Connection, table: str, *, buckets: int = 16,
                      bounds: tuple[int, int] | None = None) -> TableFingerprint:
    """Fingerprint `table` ("name" or "schema.name") in one pass.

    With a single-column integer primary key, [lo, hi) is split into `buckets` equal-width
    ranges (plus the two open tails); lo, hi default to min(key), max(key) + 1. Pass the
    same `bounds` on both sides to get comparable ranges. BadInput for an unknown table."""
    if buckets < 1:
        raise BadInput(f"buckets must be at least 1, not {buckets}")
    if bounds is not None and not bounds[0] < bounds[1]:
        raise BadInput(f"bounds must be (lo, hi) with lo < hi, not {bounds}")
    with _snapshot(conn):
        return _fingerprint_bucketed(conn, *_resolve(conn, table), buckets, bounds)


def fingerprint_like(conn: psycopg.Connection, reference: TableFingerprint) -> TableFingerprint:
    """Fingerprint the reference's table with exactly the reference's ranges.

    If the table here has no such key column (or the reference has none), the result is a
    whole-table fingerprint, which `compare_fingerprints` compares as a whole."""
    with _snapshot(conn):
        schema, name = _resolve(conn, reference.table)
        key = _integer_key(conn, schema, name)
        if key is None or key != reference.key or not _contiguous(reference.boundaries):
            return _fingerprint(conn, schema, name, key, ((None, None),))
        return _fingerprint(conn, schema, name, key, reference.boundaries)


def fingerprint_tables(conn: psycopg.Connection, tables: list[str] | None = None, *,
                       buckets: int = 16) -> dict[str, TableFingerprint]:
    """Fingerprint several tables in one snapshot, keyed by "schema.name".

    tables=None means every ordinary table in schema public, sorted by name."""
    if buckets < 1:
        raise BadInput(f"buckets must be at least 1, not {buckets}")
    with _snapshot(conn):
        if tables is None:
            names = [("public", name) for (name,) in _rows(
                conn, "SELECT relname FROM pg_class WHERE relkind = 'r' "
                      "AND relnamespace = 'public'::regnamespace ORDER BY relname")]
        else:
            names = [_resolve(conn, table) for table in tables]
        result = {}
        for schema, name in names:
            fp = _fingerprint_bucketed(conn, schema, name, buckets, None)
            result[fp.table] = fp
        return result


def fingerprint_tables_like(conn: psycopg.Connection,
                            reference: dict[str, TableFingerprint]) -> dict[str, TableFingerprint]:
    """`fingerprint_like` for every reference table, in one snapshot.

    Tables absent here are left out, so `compare_fingerprints` reports them missing."""
    with _snapshot(conn):
        result = {}
        for name, ref in reference.items():
            if _lookup(conn, ref.table) is None:
                continue
            result[name] = fingerprint_like(conn, ref)
        return result


# -- comparing ------------------------------------------------------------------------------

def compare_fingerprints(expected: dict[str, TableFingerprint],
                         actual: dict[str, TableFingerprint]) -> dict:
    """Compare two sets of fingerprints (pure). Name which key ranges differ, per table.

    Ranges are compared one by one when both sides have the same boundaries; otherwise the
    table is compared as a whole and a difference is reported as one range (None, None).
    "compared_by" says which ("ranges" or "table")."""
    tables = []
    for name in sorted(expected.keys() & actual.keys()):
        exp, act = expected[name], actual[name]
        same = exp.rows == act.rows and exp.digest == act.digest
        if exp.boundaries == act.boundaries:
            compared_by = "ranges"
            differing = [{"lo": e.lo, "hi": e.hi, "expected_rows": e.rows,
                          "actual_rows": a.rows}
                         for e, a in zip(exp.ranges, act.ranges)
                         if (e.rows, e.digest) != (a.rows, a.digest)]
        else:
            compared_by = "table"
            differing = [] if same else [{"lo": None, "hi": None, "expected_rows": exp.rows,
                                          "actual_rows": act.rows}]
        tables.append({"table": name, "match": same and not differing,
                       "expected_rows": exp.rows, "actual_rows": act.rows,
                       "compared_by": compared_by, "differing_ranges": differing})
    missing = sorted(expected.keys() - actual.keys())
    unexpected = sorted(actual.keys() - expected.keys())
    return {"match": all(t["match"] for t in tables) and not missing and not unexpected,
            "tables": tables, "missing_tables": missing, "unexpected_tables": unexpected}


def narrow_difference(conn_a: psycopg.Connection, conn_b: psycopg.Connection, table: str,
                      lo: int | None, hi: int | None, *, min_span: int = 64,
                      max_depth: int = 12) -> list[tuple[int, int]]:
    """Bisect the key range [lo, hi) of `table` between two databases.

    Returns the narrowest ranges that still differ, sorted: each is split in halves until
    its span is <= min_span or max_depth halvings are done. [] if [lo, hi) does not differ.
    lo or hi None (an open tail) means the smallest key / largest key + 1 on either side.
    Each level is one query per side; a source that keeps changing may give moving answers."""
    if min_span < 1 or max_depth < 0:
        raise BadInput(f"min_span must be >= 1 and max_depth >= 0, not {min_span}, {max_depth}")
    sides = []
    for conn in (conn_a, conn_b):
        schema, name = _resolve(conn, table)
        key = _integer_key(conn, schema, name)
        if key is None:
            raise BadInput(f"table {table!r} has no single-column integer primary key: "
                           "cannot narrow a difference by key range",
                           fix="compare it as a whole with compare_fingerprints")
        sides.append((conn, schema, name, key))
    if sides[0][3] != sides[1][3]:
        raise BadInput(f"table {table!r} is keyed on {sides[0][3]!r} in one database "
                       f"and on {sides[1][3]!r} in the other")
    if lo is None or hi is None:
        found = [b for b in (_key_bounds(c, s, n, k) for c, s, n, k in sides) if b]
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


# -- helpers --------------------------------------------------------------------------------

@contextmanager
def _snapshot(conn: psycopg.Connection) -> Iterator[None]:
    """One REPEATABLE READ READ ONLY transaction, unless the caller already has one."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


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
    found = _rows(conn, "SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.oid = to_regclass(%s)", (ident.as_string(conn),))
    return found[0] if found else None


def _resolve(conn: psycopg.Connection, table: str) -> tuple[str, str]:
    found = _lookup(conn, table)
    if found is None:
        raise BadInput(f"table {table!r} does not exist in database {conn.info.dbname!r}",
                       fix="check the name (as 'name' or 'schema.name') and the database")
    schema, name, kind = found
    if kind not in _TABLE_KINDS:
        raise BadInput(f"{table!r} is not a table (relkind {kind!r})")
    return schema, name


def _integer_key(conn: psycopg.Connection, schema: str, name: str) -> str | None:
    """The column of a single-column int2/int4/int8 primary key, or None."""
    found = _rows(conn, "SELECT a.attname, t.typname "
                        "FROM pg_index i "
                        "JOIN pg_attribute a ON a.attrelid = i.indrelid "
                        "  AND a.attnum = i.indkey[0] "
                        "JOIN pg_type t ON t.oid = a.atttypid "
                        "WHERE i.indrelid = %s::regclass AND i.indisprimary "
                        "  AND i.indnkeyatts = 1",
                  (sql.Identifier(schema, name).as_string(conn),))
    if found and found[0][1] in _INT_TYPES:
        return found[0][0]
    return None


def _fingerprint_bucketed(conn: psycopg.Connection, schema: str, name: str, buckets: int,
                          bounds: tuple[int, int] | None) -> TableFingerprint:
    key = _integer_key(conn, schema, name)
    if key is None:
        return _fingerprint(conn, schema, name, None, ((None, None),))
    if bounds is None:
        bounds = _key_bounds(conn, schema, name, key)
    if bounds is None:  # empty table
        return _fingerprint(conn, schema, name, key, ((None, None),))
    return _fingerprint(conn, schema, name, key, _equal_ranges(*bounds, buckets))


def _key_bounds(conn: psycopg.Connection, schema: str, name: str,
                key: str) -> tuple[int, int] | None:
    """(min(key), max(key) + 1), or None for an empty table. Uses the primary-key index."""
    query = sql.SQL("SELECT min(r.{k}), max(r.{k}) FROM {t} AS r").format(
        k=sql.Identifier(key), t=sql.Identifier(schema, name))
    lo, hi = _rows(conn, query)[0]
    return None if lo is None else (int(lo), int(hi) + 1)


def _equal_ranges(lo: int, hi: int, buckets: int) -> tuple[tuple[int | None, int | None], ...]:
    """(None, lo), then up to `buckets` equal-width ranges over [lo, hi), then (hi, None)."""
    width = -(-(hi - lo) // buckets)
    cuts = list(range(lo, hi, width)) + [hi]
    return ((None, lo), *zip(cuts, cuts[1:]), (hi, None))


def _contiguous(boundaries: Sequence[tuple[int | None, int | None]]) -> bool:
    """True for ranges covering every key: (None, a), (a, b), ..., (z, None)."""
    if len(boundaries) < 2 or boundaries[0][0] is not None or boundaries[-1][1] is not None:
        return False
    return all(prev[1] is not None and prev[1] == nxt[0] and (nxt[1] is None or nxt[0] < nxt[1])
               for prev, nxt in zip(boundaries, boundaries[1:]))


def _fingerprint(conn: psycopg.Connection, schema: str, name: str, key: str | None,
                 boundaries: Sequence[tuple[int | None, int | None]]) -> TableFingerprint:
    """One pass over the table; `boundaries` are (None, None) or contiguous ranges."""
    table = sql.Identifier(schema, name)
    if len(boundaries) == 1:
        count, digest = _rows(conn, sql.SQL(
            "SELECT count(*), {s} FROM (SELECT {h} AS h FROM {t} AS r) AS s").format(
            s=_HASH_SUM, h=_ROW_HASH, t=table))[0]
        ranges = (RangeFingerprint(None, None, int(count), digest),)
    else:
        thresholds = [lo for lo, _ in boundaries[1:]]
        sums = _bucket_sums(conn, table, key, thresholds)
        ranges = tuple(RangeFingerprint(lo, hi, *sums.get(i, (0, "0")))
                       for i, (lo, hi) in enumerate(boundaries))
    return TableFingerprint(table=f"{schema}.{name}", key=key,
                            rows=sum(r.rows for r in ranges),
                            digest=str(sum(int(r.digest) for r in ranges)), ranges=ranges)


def _bucket_sums(conn: psycopg.Connection, table: sql.Composable, key: str,
                 thresholds: list[int], where: tuple[int, int] | None = None
                 ) -> dict[int, tuple[int, str]]:
    """{bucket: (rows, digest)}; bucket i holds keys in [thresholds[i-1], thresholds[i]),
    bucket 0 keys below thresholds[0]. `where` restricts the scan to keys in [lo, hi)."""
    k = sql.SQL("r.{}").format(sql.Identifier(key))
    conditions, params = [], [thresholds]
    if where is not None:
        conditions.append(sql.SQL("{} >= %s::bigint").format(k))
        params.append(where[0])
        if where[1] <= INT8_MAX:
            conditions.append(sql.SQL("{} < %s::bigint").format(k))
            params.append(where[1])
    # OFFSET 0 keeps the subquery apart, so only (bucket, hash) pairs reach a small hash
    # aggregate; flattened, the planner may sort whole rows (to disk on a big table).
    query = sql.SQL("SELECT b, count(*), {s} FROM (SELECT width_bucket({k}::numeric, "
                    "%s::numeric[]) AS b, {h} AS h FROM {t} AS r {w} OFFSET 0) AS s "
                    "GROUP BY b").format(
        k=k, s=_HASH_SUM, h=_ROW_HASH, t=table,
        w=sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL(""))
    return {int(b): (int(n), digest) for b, n, digest in _rows(conn, query, params)}


def _differing_ranges(sides, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges (sorted, disjoint) whose rows differ between the two sides."""
    ranges = sorted(ranges)
    thresholds = sorted({b for r in ranges for b in r})
    bucket = {r: thresholds.index(r[0]) + 1 for r in ranges}
    sums = []
    for conn, schema, name, key in sides:
        with _snapshot(conn):
            sums.append(_bucket_sums(conn, sql.Identifier(schema, name), key, thresholds,
                                     where=(thresholds[0], thresholds[-1])))
    return [r for r in ranges if sums[0].get(bucket[r]) != sums[1].get(bucket[r])]
