"""Table fingerprints: pure comparison tests, and real-PostgreSQL tests (source vs copy database
on the sandbox primary)."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from pgdrill.core.errors import BadInput
from pgdrill.verification import fingerprint
from pgdrill.verification.fingerprint import (
    HASH_RECORD,
    MD5_TEXT,
    RangeFingerprint,
    TableFingerprint,
    compare_fingerprints,
    fingerprint_like,
    fingerprint_table,
    fingerprint_tables,
    fingerprint_tables_like,
    narrow_difference,
)

sandbox_test = pytest.mark.sandbox


# -- pure: compare_fingerprints and serialisation ---------------------------------------------


def table_fp(
    name: str, ranges: list[tuple], key: str | None = "id", method: str = MD5_TEXT
) -> TableFingerprint:
    rs = tuple(RangeFingerprint(lo, hi, rows, digest) for lo, hi, rows, digest in ranges)
    return TableFingerprint(
        table=name,
        key=key,
        rows=sum(r.rows for r in rs),
        digest=str(sum(int(r.digest) for r in rs)),
        ranges=rs,
        method=method,
    )


BASE = [(None, 1, 0, "0"), (1, 51, 50, "1000"), (51, 101, 50, "2000"), (101, None, 0, "0")]


def test_identical_fingerprints_match():
    fp = {"public.t": table_fp("public.t", BASE)}
    report = compare_fingerprints(fp, dict(fp))
    assert report == {
        "match": True,
        "missing_tables": [],
        "unexpected_tables": [],
        "incomparable_tables": [],
        "tables": [
            {
                "table": "public.t",
                "match": True,
                "expected_rows": 100,
                "actual_rows": 100,
                "compared_by": "ranges",
                "differing_ranges": [],
            }
        ],
    }


def test_changed_range_is_named():
    changed = [BASE[0], BASE[1], (51, 101, 50, "2001"), BASE[3]]
    report = compare_fingerprints(
        {"public.t": table_fp("public.t", BASE)}, {"public.t": table_fp("public.t", changed)}
    )
    assert report["match"] is False
    [table] = report["tables"]
    assert table["match"] is False
    assert table["differing_ranges"] == [
        {"lo": 51, "hi": 101, "expected_rows": 50, "actual_rows": 50}
    ]


def test_row_count_counts_even_when_digest_is_equal():
    fewer = [BASE[0], (1, 51, 49, "1000"), BASE[2], BASE[3]]
    report = compare_fingerprints(
        {"public.t": table_fp("public.t", BASE)}, {"public.t": table_fp("public.t", fewer)}
    )
    assert report["match"] is False
    assert report["tables"][0]["differing_ranges"] == [
        {"lo": 1, "hi": 51, "expected_rows": 50, "actual_rows": 49}
    ]


def test_different_boundaries_fall_back_to_whole_table():
    other = [(None, 1, 0, "0"), (1, 50, 49, "999"), (50, 100, 50, "2000"), (100, None, 0, "0")]
    report = compare_fingerprints(
        {"public.t": table_fp("public.t", BASE)}, {"public.t": table_fp("public.t", other)}
    )
    [table] = report["tables"]
    assert table["compared_by"] == "table"
    assert table["differing_ranges"] == [
        {"lo": None, "hi": None, "expected_rows": 100, "actual_rows": 99}
    ]
    # Same data under other boundaries is still a match.
    same = [(None, 1, 0, "0"), (1, 101, 100, "3000"), (101, None, 0, "0")]
    report = compare_fingerprints(
        {"public.t": table_fp("public.t", BASE)}, {"public.t": table_fp("public.t", same)}
    )
    assert report["match"] is True
    assert report["tables"][0]["compared_by"] == "table"


def test_missing_and_unexpected_tables():
    a, b, c = (table_fp(n, BASE) for n in ("public.a", "public.b", "public.c"))
    report = compare_fingerprints({"public.a": a, "public.b": b}, {"public.a": a, "public.c": c})
    assert report["match"] is False
    assert report["missing_tables"] == ["public.b"]
    assert report["unexpected_tables"] == ["public.c"]
    assert [t["table"] for t in report["tables"]] == ["public.a"]
    assert report["tables"][0]["match"] is True


def test_dict_round_trip_through_json():
    fp = table_fp("public.t", BASE)
    assert TableFingerprint.from_dict(json.loads(json.dumps(fp.to_dict()))) == fp
    keyless = table_fp("public.k", [(None, None, 3, "-12")], key=None)
    assert TableFingerprint.from_dict(json.loads(json.dumps(keyless.to_dict()))) == keyless


def test_malformed_dict_is_bad_input():
    with pytest.raises(BadInput, match="malformed table fingerprint"):
        TableFingerprint.from_dict({"table": "public.t", "rows": 1})
    data = table_fp("public.t", BASE).to_dict()
    with pytest.raises(BadInput, match="unknown method 'sha1'"):
        TableFingerprint.from_dict({**data, "method": "sha1"})


def test_method_is_serialised_and_old_dicts_are_md5_text():
    fp = table_fp("public.t", BASE, method=HASH_RECORD)
    assert fp.to_dict()["method"] == HASH_RECORD
    assert TableFingerprint.from_dict(json.loads(json.dumps(fp.to_dict()))) == fp
    # A reference stored before fingerprints had a method was made by md5(row::text).
    old = {k: v for k, v in table_fp("public.t", BASE).to_dict().items() if k != "method"}
    assert TableFingerprint.from_dict(old).method == MD5_TEXT


def test_fingerprints_of_different_methods_are_never_compared():
    # Even identical digests do not match across methods: they are reported incomparable.
    expected = {
        "public.t": table_fp("public.t", BASE, method=MD5_TEXT),
        "public.u": table_fp("public.u", BASE, method=HASH_RECORD),
    }
    actual = {
        "public.t": table_fp("public.t", BASE, method=HASH_RECORD),
        "public.u": table_fp("public.u", BASE, method=HASH_RECORD),
    }
    report = compare_fingerprints(expected, actual)
    assert report["match"] is False
    assert report["incomparable_tables"] == ["public.t"]
    t, u = report["tables"]
    assert t == {
        "table": "public.t",
        "match": False,
        "expected_rows": 100,
        "actual_rows": 100,
        "compared_by": "incomparable",
        "method_mismatch": {"expected": MD5_TEXT, "actual": HASH_RECORD},
        "differing_ranges": [],
    }
    assert u["match"] is True and u["compared_by"] == "ranges"


def test_bad_method_and_parallel_are_bad_input():
    with pytest.raises(BadInput, match="unknown fingerprint method 'crc'"):
        fingerprint_table(None, "t", method="crc")
    with pytest.raises(BadInput, match="parallel must be at least 1"):
        fingerprint_tables(None, ["t"], parallel=0)


# -- real PostgreSQL: a source database ("app") and a copy database ---------------------------


@dataclass
class Pair:
    src: psycopg.Connection
    copy: psycopg.Connection
    created: list[str] = field(default_factory=list)

    def table(self, columns: str, insert: str, name: str | None = None) -> str:
        """The same table, filled by the same INSERT ... SELECT, in both databases."""
        name = name or f"fp_test_{uuid.uuid4().hex[:8]}"
        self.created.append(name)
        ident = sql.Identifier(name)
        for conn in (self.src, self.copy):
            conn.execute(sql.SQL("CREATE TABLE {} (" + columns + ")").format(ident))
            conn.execute(sql.SQL("INSERT INTO {} " + insert).format(ident))
        return name

    def fingerprints(self, name: str, **kw) -> tuple[TableFingerprint, TableFingerprint]:
        return fingerprint_table(self.src, name, **kw), fingerprint_table(self.copy, name, **kw)


@pytest.fixture(scope="module")
def pair(sandbox):
    primary = sandbox.primary()
    copy_db = f"fp_copy_{uuid.uuid4().hex[:8]}"
    with sandbox.connect(primary, "postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(copy_db)))
    try:
        with sandbox.connect(primary, "app") as src, sandbox.connect(primary, copy_db) as copy:
            p = Pair(src, copy)
            try:
                yield p
            finally:
                for name in p.created:
                    src.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    finally:
        with sandbox.connect(primary, "postgres") as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(copy_db))
            )


ACCOUNTS = "id int PRIMARY KEY, balance numeric NOT NULL, note text, at timestamptz"
ROWS = (
    "SELECT g, g * 10, 'n' || g, timestamptz '2024-01-01' + g * interval '1 min' "
    "FROM generate_series(1, 10000) AS g"
)


def _one_table(report: dict) -> dict:
    [table] = report["tables"]
    return table


@sandbox_test
def test_same_rows_in_any_order_and_layout_match(pair):
    cols = "id bigint PRIMARY KEY, v text, x double precision"
    name = f"fp_test_order_{uuid.uuid4().hex[:6]}"
    pair.created.append(name)
    ident = sql.Identifier(name)
    pair.src.execute(sql.SQL(f"CREATE TABLE {{}} ({cols})").format(ident))
    pair.copy.execute(sql.SQL(f"CREATE TABLE {{}} ({cols})").format(ident))
    rows = "SELECT g, md5(g::text), g / 7.0 FROM generate_series(1, 5000) AS g ORDER BY "
    pair.src.execute(sql.SQL("INSERT INTO {} " + rows + "g").format(ident))
    pair.copy.execute(sql.SQL("INSERT INTO {} " + rows + "random()").format(ident))
    # A different heap layout: rows moved by an update that is then undone, then vacuumed.
    pair.copy.execute(sql.SQL("UPDATE {} SET v = 'tmp' WHERE id % 3 = 0").format(ident))
    pair.copy.execute(sql.SQL("UPDATE {} SET v = md5(id::text) WHERE id % 3 = 0").format(ident))
    pair.copy.execute(sql.SQL("VACUUM {}").format(ident))

    src, copy = pair.fingerprints(name)
    assert src == copy
    assert src.table == f"public.{name}" and src.key == "id" and src.rows == 5000
    assert len(src.ranges) == 16 + 2  # 16 buckets plus the two open tails
    assert src.ranges[0].lo is None and src.ranges[0].hi == 1 and src.ranges[0].rows == 0
    assert src.ranges[-1].lo == 5001 and src.ranges[-1].hi is None
    assert sum(r.rows for r in src.ranges) == 5000
    assert compare_fingerprints({src.table: src}, {copy.table: copy})["match"] is True


@sandbox_test
def test_updated_row_names_its_bucket_and_narrows_to_it(pair):
    name = pair.table(ACCOUNTS, ROWS)
    pair.copy.execute(
        sql.SQL("UPDATE {} SET balance = balance + 1 WHERE id = 4321").format(sql.Identifier(name))
    )

    src, copy = pair.fingerprints(name)
    report = compare_fingerprints({src.table: src}, {copy.table: copy})
    assert report["match"] is False
    table = _one_table(report)
    assert table["compared_by"] == "ranges"
    [diff] = table["differing_ranges"]
    assert diff["lo"] <= 4321 < diff["hi"]
    assert diff["expected_rows"] == diff["actual_rows"] == diff["hi"] - diff["lo"]
    assert table["expected_rows"] == table["actual_rows"] == 10000

    narrowed = narrow_difference(pair.src, pair.copy, name, diff["lo"], diff["hi"])
    [(lo, hi)] = narrowed
    assert lo <= 4321 < hi and hi - lo <= 64
    assert narrow_difference(pair.src, pair.copy, name, diff["lo"], diff["hi"], min_span=1) == [
        (4321, 4322)
    ]
    # A range that does not differ narrows to nothing; depth 0 returns the range itself.
    assert narrow_difference(pair.src, pair.copy, name, 1, 4000) == []
    assert narrow_difference(pair.src, pair.copy, name, 1, 10001, max_depth=0) == [(1, 10001)]


@sandbox_test
def test_narrow_finds_every_differing_spot(pair):
    name = pair.table(ACCOUNTS, ROWS)
    pair.copy.execute(
        sql.SQL("UPDATE {} SET note = 'changed' WHERE id IN (10, 5000, 9999)").format(
            sql.Identifier(name)
        )
    )
    found = narrow_difference(pair.src, pair.copy, name, None, None, min_span=8)
    assert len(found) == 3
    for key, (lo, hi) in zip((10, 5000, 9999), found):
        assert lo <= key < hi and hi - lo <= 8


@sandbox_test
def test_deleted_rows_show_in_the_right_ranges(pair):
    name = pair.table(ACCOUNTS, ROWS)
    # Deleting the largest key changes max(key): the copy's own buckets no longer line up.
    pair.copy.execute(
        sql.SQL("DELETE FROM {} WHERE id IN (77, 10000)").format(sql.Identifier(name))
    )

    src, copy_own = pair.fingerprints(name)
    assert copy_own.boundaries != src.boundaries
    table = _one_table(compare_fingerprints({src.table: src}, {copy_own.table: copy_own}))
    assert table["match"] is False and table["compared_by"] == "table"
    assert table["differing_ranges"] == [
        {"lo": None, "hi": None, "expected_rows": 10000, "actual_rows": 9998}
    ]

    # With the source's ranges, exactly the two ranges holding 77 and 10000 differ by one row.
    copy = fingerprint_like(pair.copy, src)
    assert copy.boundaries == src.boundaries
    table = _one_table(compare_fingerprints({src.table: src}, {copy.table: copy}))
    assert table["compared_by"] == "ranges"
    diffs = table["differing_ranges"]
    assert [d["lo"] <= 77 < d["hi"] for d in diffs] == [True, False]
    assert diffs[1]["lo"] <= 10000 < diffs[1]["hi"]
    assert all(d["expected_rows"] - d["actual_rows"] == 1 for d in diffs)
    # Passing the same bounds explicitly gives the same ranges.
    lo, hi = src.ranges[1].lo, src.ranges[-1].lo
    assert fingerprint_table(pair.copy, name, bounds=(lo, hi)) == copy


@sandbox_test
def test_rows_outside_the_source_key_range_show_in_the_tails(pair):
    name = pair.table(ACCOUNTS, ROWS)
    pair.copy.execute(
        sql.SQL("INSERT INTO {} VALUES (-5, 0, 'x', now()), (20000, 0, 'y', now())").format(
            sql.Identifier(name)
        )
    )
    src = fingerprint_table(pair.src, name)
    copy = fingerprint_like(pair.copy, src)
    diffs = _one_table(compare_fingerprints({src.table: src}, {copy.table: copy}))[
        "differing_ranges"
    ]
    assert diffs == [
        {"lo": None, "hi": 1, "expected_rows": 0, "actual_rows": 1},
        {"lo": 10001, "hi": None, "expected_rows": 0, "actual_rows": 1},
    ]
    [(lo, hi)] = narrow_difference(pair.src, pair.copy, name, 10001, None, min_span=1, max_depth=20)
    assert (lo, hi) == (20000, 20001)


@sandbox_test
@pytest.mark.parametrize(
    "columns",
    [
        "code text PRIMARY KEY, n int",  # non-integer key
        "code text, n int",  # no key at all
        "code text, n int, PRIMARY KEY (code, n)",  # composite key
    ],
)
def test_table_without_integer_key_is_one_range_and_still_detects_change(pair, columns):
    name = pair.table(columns, "SELECT 'c' || g, g FROM generate_series(1, 500) AS g")
    src, copy = pair.fingerprints(name)
    assert src == copy
    assert src.key is None and src.rows == 500
    assert [(r.lo, r.hi) for r in src.ranges] == [(None, None)]

    pair.copy.execute(
        sql.SQL("UPDATE {} SET n = n + 1 WHERE code = 'c250'").format(sql.Identifier(name))
    )
    copy = fingerprint_like(pair.copy, src)
    table = _one_table(compare_fingerprints({src.table: src}, {copy.table: copy}))
    assert table["match"] is False
    assert table["differing_ranges"] == [
        {"lo": None, "hi": None, "expected_rows": 500, "actual_rows": 500}
    ]
    with pytest.raises(BadInput, match="no single-column integer primary key"):
        narrow_difference(pair.src, pair.copy, name, 0, 10)


@sandbox_test
def test_unknown_table_is_bad_input_naming_it(pair):
    for missing in ("fp_test_no_such_table", "no_such_schema.fp_test_x"):
        with pytest.raises(BadInput, match=missing):
            fingerprint_table(pair.src, missing)
    with pytest.raises(BadInput, match="fp_test_nope"):
        fingerprint_tables(pair.src, ["fp_test_nope"])
    with pytest.raises(BadInput, match="a.b.c"):
        fingerprint_table(pair.src, "a.b.c")


@sandbox_test
def test_awkward_identifiers_are_quoted(pair):
    name = pair.table(
        '"Key; Col" smallint PRIMARY KEY, "select" text',
        "SELECT g, 'v' || g FROM generate_series(1, 300) AS g",
        name=f'fp_test_Odd "Na me" {uuid.uuid4().hex[:4]}',
    )
    src = fingerprint_table(pair.src, f"public.{name}", buckets=4)
    assert src.table == f"public.{name}" and src.key == "Key; Col" and src.rows == 300
    assert src.boundaries == ((None, 1), (1, 76), (76, 151), (151, 226), (226, 301), (301, None))
    assert fingerprint_table(pair.copy, name, buckets=4) == src


@sandbox_test
def test_schema_qualified_names_and_default_table_list(pair):
    pair.copy.execute("CREATE SCHEMA IF NOT EXISTS fp_test_other")
    pair.copy.execute("CREATE TABLE fp_test_other.t (id int PRIMARY KEY)")
    pair.copy.execute("INSERT INTO fp_test_other.t SELECT generate_series(1, 10)")
    other = fingerprint_table(pair.copy, "fp_test_other.t")
    assert other.table == "fp_test_other.t" and other.rows == 10

    a = pair.table("id int PRIMARY KEY", "SELECT generate_series(1, 100)", name="fp_test_b_list")
    b = pair.table("id int PRIMARY KEY", "SELECT generate_series(1, 50)", name="fp_test_a_list")
    everything = fingerprint_tables(pair.copy)  # the copy database holds only test tables
    assert list(everything) == sorted(everything)
    assert {f"public.{a}", f"public.{b}"} <= everything.keys()
    assert all(key.startswith("public.") for key in everything)

    # Fingerprint the source's tables, compare against the copy with the source's ranges.
    reference = fingerprint_tables(pair.src, [a, f"public.{b}"], buckets=4)
    assert list(reference) == [f"public.{a}", f"public.{b}"]
    pair.copy.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(b)))
    report = compare_fingerprints(reference, fingerprint_tables_like(pair.copy, reference))
    assert report["match"] is False
    assert report["missing_tables"] == [f"public.{b}"]
    assert _one_table(report)["match"] is True


@sandbox_test
def test_sees_the_callers_open_transaction(pair):
    name = pair.table(ACCOUNTS, ROWS)
    before = fingerprint_table(pair.src, name)
    with pytest.raises(_Rollback):
        with pair.src.transaction():
            pair.src.execute(sql.SQL("DELETE FROM {} WHERE id = 1").format(sql.Identifier(name)))
            assert fingerprint_table(pair.src, name).rows == 9999
            raise _Rollback
    assert fingerprint_table(pair.src, name) == before


class _Rollback(Exception):
    pass


@sandbox_test
def test_pgbench_accounts_uses_its_integer_key(pair):
    fp = fingerprint_table(pair.src, "pgbench_accounts")
    assert fp.table == "public.pgbench_accounts" and fp.key == "aid"
    count = pair.src.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0]
    assert fp.rows == count == sum(r.rows for r in fp.ranges)


@sandbox_test
def test_empty_table_with_key_is_one_range_and_rows_in_the_copy_differ(pair):
    name = pair.table(ACCOUNTS, ROWS + " LIMIT 0")
    src = fingerprint_table(pair.src, name)
    assert src.key == "id" and src.rows == 0 and src.boundaries == ((None, None),)
    pair.copy.execute(
        sql.SQL("INSERT INTO {} VALUES (1, 0, 'x', now())").format(sql.Identifier(name))
    )
    copy = fingerprint_like(pair.copy, src)
    table = _one_table(compare_fingerprints({src.table: src}, {copy.table: copy}))
    assert table["differing_ranges"] == [
        {"lo": None, "hi": None, "expected_rows": 0, "actual_rows": 1}
    ]


# -- the hash_record_v1 method, its md5_text fallback, parallel readers -----------------------


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _compare(src: TableFingerprint, copy: TableFingerprint) -> dict:
    return _one_table(compare_fingerprints({src.table: src}, {copy.table: copy}))


@sandbox_test
@pytest.mark.parametrize("method", [None, MD5_TEXT])
@pytest.mark.parametrize(
    "change",
    [
        "UPDATE {} SET note = 'n' || id + 1 WHERE id = 500",  # a changed value
        "DELETE FROM {} WHERE id = 500",  # a deleted row
        "INSERT INTO {} VALUES (10001, 0, 'extra', now())",  # an added row
        "UPDATE {} SET id = -id WHERE id = 500",  # a changed key
    ],
)
def test_each_method_detects_changed_deleted_and_added_rows(pair, method, change):
    name = pair.table(ACCOUNTS, ROWS)
    src = fingerprint_table(pair.src, name, method=method)
    assert src.method == (method or HASH_RECORD)
    assert fingerprint_like(pair.copy, src) == src
    pair.copy.execute(sql.SQL(change).format(_ident(name)))
    copy = fingerprint_like(pair.copy, src)
    assert copy.method == src.method
    table = _compare(src, copy)
    assert table["match"] is False and table["compared_by"] == "ranges"
    assert table["differing_ranges"]


@sandbox_test
def test_values_swapped_between_rows_are_detected(pair):
    # hash_record_extended combines column hashes linearly, so a plain sum of row hashes
    # cannot see two rows swapping one column's values; the digest's second sum can.
    name = pair.table(
        "a int, b int, c text", "SELECT g, g * 10, 't' || g FROM generate_series(1, 1000) AS g"
    )
    pair.copy.execute(
        sql.SQL(
            "UPDATE {} SET b = CASE a WHEN 10 THEN 200 ELSE 100 END WHERE a IN (10, 20)"
        ).format(_ident(name))
    )
    plain = sql.SQL("SELECT sum(hash_record_extended(r.*, 0)) FROM {} AS r").format(_ident(name))
    [(src_sum,)], [(copy_sum,)] = (c.execute(plain).fetchall() for c in (pair.src, pair.copy))
    assert int(src_sum) % 2**64 == int(copy_sum) % 2**64  # equal modulo 2^64, as in digests
    src, copy = pair.fingerprints(name)
    assert src.method == copy.method == HASH_RECORD and src.key is None
    assert src.rows == copy.rows and src.digest != copy.digest
    assert _compare(src, copy)["match"] is False


@sandbox_test
def test_swapped_payloads_and_duplicates_are_detected_and_bisected(pair):
    name = pair.table(ACCOUNTS, ROWS)
    # Two rows exchange everything but their keys: same multiset of values, other rows.
    pair.copy.execute(
        sql.SQL(
            "UPDATE {t} AS x SET balance = y.balance, note = y.note, at = y.at FROM {t} AS y "
            "WHERE (x.id, y.id) IN ((3000, 7000), (7000, 3000))"
        ).format(t=_ident(name))
    )
    src, copy = pair.fingerprints(name)
    table = _compare(src, copy)
    assert [d["lo"] <= k < d["hi"] for d, k in zip(table["differing_ranges"], (3000, 7000))] == [
        True,
        True,
    ]
    assert narrow_difference(pair.src, pair.copy, name, None, None, min_span=1, max_depth=20) == [
        (3000, 3001),
        (7000, 7001),
    ]

    # Without a key: {A, A, B} against {A, B, B} has the same count and distinct rows.
    dup = pair.table("v text", "VALUES ('A'), ('A'), ('B')")
    pair.copy.execute(
        sql.SQL(
            "UPDATE {} SET v = 'B' WHERE ctid = (SELECT min(ctid) FROM {} WHERE v = 'A')"
        ).format(_ident(dup), _ident(dup))
    )
    src, copy = pair.fingerprints(dup)
    assert src.rows == copy.rows == 3 and _compare(src, copy)["match"] is False


@sandbox_test
@pytest.mark.parametrize(
    "column",
    [
        "j json",
        "p point",
        "js json[]",
        "ts tsvector",
        "pair fp_test_pair",
    ],
)
def test_types_without_an_extended_hash_fall_back_to_md5_text(pair, column):
    for conn in (pair.src, pair.copy):
        conn.execute(
            "DO $$ BEGIN CREATE TYPE fp_test_pair AS (n int, j json); "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    name = pair.table(f"id int PRIMARY KEY, {column}", "SELECT g FROM generate_series(1, 300) g")
    col = column.split()[0]
    empty = pair.table(f"id int PRIMARY KEY, {column}", "SELECT 1 WHERE false")
    # decided by the column types, not by the rows: an empty table falls back as well
    assert fingerprint_table(pair.src, empty).method == MD5_TEXT
    src, copy = pair.fingerprints(name)
    assert src == copy and src.method == MD5_TEXT and src.key == "id"
    value = {
        "j": "'{\"a\": 1}'",
        "p": "point(1, 2)",
        "js": "ARRAY['[1]'::json]",
        "ts": "'a b'::tsvector",
        "pair": "ROW(1, '{}')",
    }[col]
    pair.copy.execute(
        sql.SQL("UPDATE {} SET {} = ").format(_ident(name), _ident(col))
        + sql.SQL(value + " WHERE id = 123")
    )
    copy = fingerprint_like(pair.copy, src)
    assert copy.method == MD5_TEXT
    [diff] = _compare(src, copy)["differing_ranges"]
    assert diff["lo"] <= 123 < diff["hi"]
    assert narrow_difference(pair.src, pair.copy, name, None, None, min_span=1, max_depth=20) == [
        (123, 124)
    ]


@sandbox_test
def test_not_null_domains_arrays_and_ranges_use_the_hash(pair):
    for conn in (pair.src, pair.copy):
        conn.execute(
            "DO $$ BEGIN CREATE DOMAIN fp_test_posint AS int NOT NULL CHECK (VALUE > 0);"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    name = pair.table(
        "id bigint PRIMARY KEY, d fp_test_posint, a int[], r int4range, u uuid, j jsonb, n numeric",
        "SELECT g, g, ARRAY[g, g + 1], int4range(g, g + 5), "
        "md5(g::text)::uuid, jsonb_build_object('g', g), g / 3.0 "
        "FROM generate_series(1, 500) g",
    )
    src, copy = pair.fingerprints(name)
    assert src == copy and src.method == HASH_RECORD
    pair.copy.execute(sql.SQL("UPDATE {} SET a = ARRAY[7, 7] WHERE id = 42").format(_ident(name)))
    assert _compare(src, fingerprint_like(pair.copy, src))["match"] is False


@sandbox_test
@pytest.mark.parametrize("method", [None, MD5_TEXT])
@pytest.mark.parametrize(
    "column, storage",
    [
        ("bytea", None),  # default storage (EXTENDED): random bytes do not compress
        ("bytea", "EXTERNAL"),  # out of line, never compressed
        ("text", "EXTERNAL"),
    ],
)
def test_one_byte_changed_inside_an_out_of_line_toast_value_is_detected(
    pair, method, column, storage
):
    name = pair.table(f"id int PRIMARY KEY, v {column}", "SELECT 1, NULL WHERE false")
    raw = os.urandom(120_000)
    big = raw if column == "bytea" else raw.hex()  # 240,000 hex digits
    for conn in (pair.src, pair.copy):
        if storage:
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN v SET STORAGE " + storage).format(_ident(name))
            )
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (1, %s), (2, %s), (3, %s)").format(_ident(name)),
            (big[:10], big, big[-10:]),
        )

    def out_of_line(conn) -> None:
        # stored whole (not compressed) and out of line: the TOAST relation holds it
        stored, length, toast = conn.execute(
            sql.SQL(
                "SELECT pg_column_size(v), octet_length(v), "
                "       (SELECT pg_relation_size(reltoastrelid) FROM pg_class "
                "        WHERE oid = %s::regclass) "
                "FROM {} WHERE id = 2"
            ).format(_ident(name)),
            (name,),
        ).fetchone()
        assert stored >= length == len(big)
        assert toast >= length > 8192

    out_of_line(pair.src)
    src = fingerprint_table(pair.src, name, method=method)
    assert src.method == (method or HASH_RECORD)
    assert fingerprint_like(pair.copy, src) == src

    # one byte (one hex digit), in the middle of the value: in a TOAST chunk, not inline
    at = len(big) // 2
    if column == "bytea":
        replacement = bytes([big[at] ^ 0x01])
    else:
        replacement = "1" if big[at] == "0" else "0"
    pair.copy.execute(
        sql.SQL("UPDATE {} SET v = overlay(v placing %s from %s for 1) WHERE id = 2").format(
            _ident(name)
        ),
        (replacement, at + 1),
    )
    changed = pair.copy.execute(
        sql.SQL("SELECT v FROM {} WHERE id = 2").format(_ident(name))
    ).fetchone()[0]
    changed = bytes(changed) if column == "bytea" else changed
    assert len(changed) == len(big)
    assert [i for i in range(len(big)) if changed[i] != big[i]] == [at]
    out_of_line(pair.copy)

    copy = fingerprint_like(pair.copy, src)
    assert copy.method == src.method and copy.rows == src.rows == 3
    table = _compare(src, copy)
    assert table["match"] is False and table["compared_by"] == "ranges"
    [diff] = table["differing_ranges"]
    assert diff["lo"] <= 2 < diff["hi"]
    assert narrow_difference(pair.src, pair.copy, name, None, None, min_span=1, method=method) == [
        (2, 3)
    ]


@sandbox_test
def test_like_uses_the_references_method_and_a_changed_type_is_incomparable(pair):
    name = pair.table(ACCOUNTS, ROWS)
    old = fingerprint_table(pair.src, name, method=MD5_TEXT)
    # A reference stored before methods existed is md5_text and is compared as such.
    stored = TableFingerprint.from_dict({k: v for k, v in old.to_dict().items() if k != "method"})
    assert fingerprint_like(pair.copy, stored) == old
    assert fingerprint_tables_like(pair.copy, {old.table: stored}) == {old.table: old}

    new = fingerprint_table(pair.src, name)
    assert new.method == HASH_RECORD and new.rows == old.rows and new.digest != old.digest
    pair.copy.execute(
        sql.SQL("ALTER TABLE {} ALTER COLUMN note TYPE json USING to_json(note)").format(
            _ident(name)
        )
    )
    copy = fingerprint_like(pair.copy, new)
    assert copy.method == MD5_TEXT
    report = compare_fingerprints({new.table: new}, {copy.table: copy})
    assert report["match"] is False and report["incomparable_tables"] == [new.table]
    assert _one_table(report)["method_mismatch"] == {"expected": HASH_RECORD, "actual": MD5_TEXT}
    # Bisection then compares both sides by md5(row::text).
    assert narrow_difference(pair.src, pair.copy, name, 1, 100, min_span=100) == [(1, 100)]


@pytest.fixture
def every_size_in_parallel(monkeypatch):
    monkeypatch.setattr(fingerprint, "PARALLEL_MIN_BYTES", 0)


class Opener:
    """A `connect` callable to the source database that counts the connections it opened
    and can run something first (in a connection of its own)."""

    def __init__(self, sandbox, before=None):
        self.sandbox, self.before, self.opened = sandbox, before, 0

    def __call__(self) -> psycopg.Connection:
        if self.before is not None and self.opened == 0:
            with self.sandbox.connect(self.sandbox.primary(), "app") as other:
                self.before(other)
        self.opened += 1
        return self.sandbox.connect(self.sandbox.primary(), "app")


@sandbox_test
@pytest.mark.parametrize("method", [None, MD5_TEXT])
def test_parallel_readers_give_the_same_fingerprint(pair, sandbox, every_size_in_parallel, method):
    a = pair.table(ACCOUNTS, ROWS)
    b = pair.table("code text, n int", "SELECT 'c' || g, g FROM generate_series(1, 3000) g")
    serial = fingerprint_tables(pair.src, [a, b], method=method, parallel=1)
    for parallel in (2, 3):
        opener = Opener(sandbox)
        assert (
            fingerprint_tables(pair.src, [a, b], method=method, parallel=parallel, connect=opener)
            == serial
        )
        assert opener.opened == parallel - 1  # once for both tables
        assert (
            fingerprint_tables_like(pair.src, serial, parallel=parallel, connect=Opener(sandbox))
            == serial
        )
    opener = Opener(sandbox)
    assert fingerprint_table(pair.src, a, method=method, connect=opener) == serial[f"public.{a}"]
    assert opener.opened == fingerprint.DEFAULT_PARALLEL - 1
    # Without `connect` there is one connection; a small table is not worth more.
    assert fingerprint_table(pair.src, a, method=method, parallel=4) == serial[f"public.{a}"]


@sandbox_test
def test_parallel_readers_share_one_snapshot(pair, sandbox, every_size_in_parallel):
    name = pair.table(ACCOUNTS, ROWS)
    before = fingerprint_table(pair.src, name)

    def change_every_row(conn):  # committed after the first reader's snapshot was taken
        conn.execute(sql.SQL("UPDATE {} SET balance = balance + 1").format(_ident(name)))

    opener = Opener(sandbox, before=change_every_row)
    assert fingerprint_table(pair.src, name, parallel=3, connect=opener) == before
    assert opener.opened == 2
    after = fingerprint_table(pair.src, name)
    assert after.rows == before.rows and after.digest != before.digest


@sandbox_test
def test_no_extra_readers_inside_the_callers_transaction(pair, every_size_in_parallel):
    name = pair.table(ACCOUNTS, ROWS)

    def refuse():
        raise AssertionError("no other connection can see this transaction's changes")

    with pytest.raises(_Rollback):
        with pair.src.transaction():
            pair.src.execute(sql.SQL("DELETE FROM {} WHERE id = 1").format(_ident(name)))
            assert fingerprint_table(pair.src, name, parallel=4, connect=refuse).rows == 9999
            raise _Rollback


@sandbox_test
def test_readers_that_cannot_connect_leave_the_work_to_the_others(
    pair, sandbox, every_size_in_parallel
):
    name = pair.table(ACCOUNTS, ROWS)
    serial = fingerprint_table(pair.src, name, parallel=1)

    def fail():
        raise psycopg.OperationalError("too many clients already")

    assert fingerprint_table(pair.src, name, parallel=3, connect=fail) == serial
    # A connection to another database cannot share the snapshot: that is an error.
    primary = sandbox.primary()
    with pytest.raises(psycopg.Error):
        fingerprint_table(
            pair.src, name, parallel=2, connect=lambda: sandbox.connect(primary, "postgres")
        )
