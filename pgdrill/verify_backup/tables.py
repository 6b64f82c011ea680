"""Per-table row counts and fingerprints of every database of a restored copy, each table's
summed up as one sha256, and what changed since the previous verification of the same
archive (pure comparison)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import psycopg

from pgdrill.verification.fingerprint import fingerprint_tables

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def databases(conn: psycopg.Connection) -> list[str]:
    """Every database that accepts connections, templates excluded."""
    return [
        name
        for (name,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
            "ORDER BY datname"
        ).fetchall()
    ]


def user_tables(conn: psycopg.Connection) -> list[str]:
    """Every ordinary table outside the system schemas, as "schema.name"."""
    return [
        f"{schema}.{name}"
        for schema, name in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
            "c.relnamespace WHERE c.relkind = 'r' AND n.nspname <> ALL(%s) "
            "AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%' "
            "ORDER BY 1, 2",
            (list(SYSTEM_SCHEMAS),),
        ).fetchall()
    ]


def user_data(connect: Callable[[str], psycopg.Connection]) -> dict[str, list[str]]:
    """{database: its user tables} for every database that has any (`databases`,
    `user_tables`): what a restored copy holds beyond an empty initdb."""
    with connect("postgres") as conn:
        names = databases(conn)
    found = {}
    for dbname in names:
        with connect(dbname) as conn:
            tables = user_tables(conn)
        if tables:
            found[dbname] = tables
    return found


def user_data_check(found: dict[str, list[str]]):
    """The built-in checklist step `holds-user-data`: a healthy copy holds some user table,
    in any database — the `postgres` database included, where many teams keep theirs. It
    says what it found."""
    from pgdrill.verification.checklist import CheckResult

    count = sum(len(tables) for tables in found.values())
    actual = (
        f"{count} user table(s): "
        + "; ".join(
            f"{db} ({len(tables)}: {', '.join(tables[:3])}{', ...' if len(tables) > 3 else ''})"
            for db, tables in sorted(found.items())
        )
        if count
        else "no user table in any database"
    )
    return CheckResult(
        name="holds-user-data",
        query="user tables (pg_class relkind r outside the system schemas) of "
        "every database that accepts connections",
        expected="at least one user table",
        actual=actual,
        passed=count > 0,
    )


def table_sha256(table: str, rows: int, digest: str, method: str) -> str:
    """One sha256 per table: of its qualified name, row count, fingerprint method and
    order-independent row digest (pgdrill.verification.fingerprint), so two verifications
    compare with one string."""
    return hashlib.sha256(f"{table}\n{rows}\n{method}\n{digest}".encode()).hexdigest()


def fingerprint_all(connect: Callable[[str], psycopg.Connection]) -> dict[str, dict]:
    """{"db.schema.table": {"rows", "sha256", "method"}} for every table of every database;
    `connect(dbname)` opens a connection (also the extra ones that read a large table in
    parallel, in the same snapshot)."""
    with connect("postgres") as conn:
        names = databases(conn)
    result: dict[str, dict] = {}
    for dbname in names:
        with connect(dbname) as conn:
            tables = user_tables(conn)
            if not tables:
                continue
            prints = fingerprint_tables(
                conn, tables, buckets=1, connect=lambda db=dbname: connect(db)
            )
            for fp in prints.values():
                qualified = f"{dbname}.{fp.table}"
                result[qualified] = {
                    "rows": fp.rows,
                    "method": fp.method,
                    "sha256": table_sha256(qualified, fp.rows, fp.digest, fp.method),
                }
    return dict(sorted(result.items()))


def changes(previous: Mapping[str, dict] | None, current: Mapping[str, dict]) -> dict | None:
    """What changed between two verifications' tables (None without a previous one). A
    table fingerprinted by another method then (an older pgdrill) is `incomparable`, never
    counted as changed or unchanged."""
    if previous is None:
        return None
    added = sorted(set(current) - set(previous))
    removed = sorted(set(previous) - set(current))
    both = sorted(set(current) & set(previous))
    incomparable = [
        name for name in both if previous[name].get("method") != current[name].get("method")
    ]
    changed = [
        {
            "table": name,
            "rows_before": previous[name].get("rows"),
            "rows_after": current[name].get("rows"),
        }
        for name in both
        if name not in incomparable and previous[name].get("sha256") != current[name].get("sha256")
    ]
    unchanged = len(both) - len(changed) - len(incomparable)
    return {
        "added": added,
        "removed": removed,
        "changed": changed,
        "unchanged": unchanged,
        "incomparable": incomparable,
    }


def describe_changes(diff: dict | None) -> str:
    """One line for people."""
    if diff is None:
        return "no earlier verification of this archive to compare with"
    parts = []
    if diff["changed"]:
        parts.append(
            f"{len(diff['changed'])} changed ("
            + ", ".join(
                f"{c['table']} {c['rows_before']}→{c['rows_after']} rows"
                for c in diff["changed"][:5]
            )
            + ("…" if len(diff["changed"]) > 5 else "")
            + ")"
        )
    if diff["added"]:
        parts.append(f"{len(diff['added'])} new ({', '.join(diff['added'][:5])})")
    if diff["removed"]:
        parts.append(f"{len(diff['removed'])} gone ({', '.join(diff['removed'][:5])})")
    if diff.get("incomparable"):
        parts.append(
            f"{len(diff['incomparable'])} not comparable (fingerprinted by another method then)"
        )
    parts.append(f"{diff['unchanged']} unchanged")
    return "since the last verification: " + "; ".join(parts)
