"""What drills fingerprint by default: every user table of the checklist's database but the
tables the drill itself writes (probes.verify.DRILL_WRITTEN_TABLES), on real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from chaoslib.exceptions import ActivityFailed
from psycopg import sql

from actions.restore import cleanup_restore, restore_latest_backup
from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext
from pgdrill.load.runner import create_ledger
from pgdrill.load.writes import insert_sql, row_values
from pgdrill.targets.sandbox.cluster import SandboxCluster
from pgdrill.verification.fingerprint import user_tables
from probes.sql import writes_succeed
from probes.verify import DRILL_WRITTEN_TABLES, capture_fingerprints, fingerprints_match

pytestmark = pytest.mark.sandbox


@pytest.fixture
def scratch_db(sandbox):
    """A database of its own on the sandbox primary, dropped afterwards."""
    name = f"fp_defaults_{uuid.uuid4().hex[:8]}"
    primary = sandbox.primary()
    with sandbox.connect(primary, "postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with sandbox.connect(sandbox.primary(), "postgres") as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_user_tables_lists_every_permanent_table_outside_the_system_schemas(sandbox, scratch_db):
    with sandbox.connect(sandbox.primary(), scratch_db) as conn:
        for ddl in (
            "CREATE TABLE plain (id int PRIMARY KEY)",
            'CREATE SCHEMA "Other Schema"',
            'CREATE TABLE "Other Schema"."Mixed Case" (v text)',
            "CREATE TABLE parted (id int, v text) PARTITION BY RANGE (id)",
            "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10)",
            "CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10) TO (20)",
            "CREATE UNLOGGED TABLE scratch_unlogged (id int)",
            "CREATE TEMP TABLE scratch_temp (id int)",
            "CREATE VIEW a_view AS SELECT 1 AS one",
            "CREATE MATERIALIZED VIEW a_matview AS SELECT 1 AS one",
            "CREATE SEQUENCE a_sequence",
            "CREATE TABLE toasty (id int, v text)",  # has a pg_toast.pg_toast_N relation
            "CREATE SCHEMA x",
            "CREATE TABLE x.pgdrill_ledger (id int)",
            "CREATE TABLE pgdrill_ledger (id int)",
            "CREATE TABLE x.keep (id int)",
            "CREATE TABLE x.skip (id int)",
            "CREATE TABLE skip (id int)",
        ):
            conn.execute(ddl)

        assert user_tables(conn) == [
            "Other Schema.Mixed Case",
            "public.parted",
            "public.pgdrill_ledger",
            "public.plain",
            "public.skip",
            "public.toasty",
            "x.keep",
            "x.pgdrill_ledger",
            "x.skip",
        ]
        # a bare name in every schema, a qualified name in its schema only
        assert user_tables(conn, exclude=["pgdrill_ledger", "x.skip"]) == [
            "Other Schema.Mixed Case",
            "public.parted",
            "public.plain",
            "public.skip",
            "public.toasty",
            "x.keep",
        ]


def test_default_is_every_user_table_of_the_checklists_database(
    sandbox, sandbox_env, scratch_db, tmp_path
):
    checklist = tmp_path / "other.yaml"
    checklist.write_text(
        f"database: {scratch_db}\nchecks:\n  - name: one\n    query: SELECT 1\n    expected: 1\n"
    )
    cfg = {RUN_DIR_KEY: str(tmp_path), "checklist": str(checklist)}
    with sandbox.connect(sandbox.primary(), scratch_db) as conn:
        conn.execute("CREATE SCHEMA orders")
        conn.execute("CREATE TABLE orders.items (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO orders.items SELECT g, 'v' || g FROM generate_series(1, 30) g")
        conn.execute("CREATE TABLE pgdrill_sentinel (key text PRIMARY KEY, value text)")
        create_ledger(conn)
    # the drill's own writers, as a drill calls them, into this database
    writes_succeed(database=scratch_db, configuration=cfg)

    rows = capture_fingerprints(label="a", configuration=cfg)
    assert rows == {"orders.items": 30, "public.pgdrill_sentinel": 0}
    with sandbox.connect(sandbox.primary(), scratch_db) as conn:
        everything = set(user_tables(conn))
    assert everything - set(rows) == {"public.pgdrill_ledger", "public.pgdrill_heartbeat"}
    assert set(DRILL_WRITTEN_TABLES) == {"pgdrill_ledger", "pgdrill_heartbeat"}

    # an explicit list wins, even for a table the drill writes; `database` wins too
    assert capture_fingerprints(tables=["pgdrill_ledger"], label="b", configuration=cfg) == {
        "public.pgdrill_ledger": 0
    }
    app = capture_fingerprints(label="c", database="app", configuration=cfg)
    assert {
        "public.pgbench_accounts",
        "public.pgbench_branches",
        "public.pgbench_tellers",
        "public.pgbench_history",
        "public.pgdrill_sentinel",
    } <= app.keys()
    assert not {"public.pgdrill_ledger", "public.pgdrill_heartbeat"} & app.keys()
    stored = RunContext.from_configuration(cfg).read()["fingerprints_reference"]
    assert sorted(stored["a"]) == ["orders.items", "public.pgdrill_sentinel"]


def test_what_the_drill_writes_does_not_change_the_default_fingerprints(
    sandbox, sandbox_env, scratch_db, tmp_path
):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    with sandbox.connect(sandbox.primary(), scratch_db) as conn:
        conn.execute("CREATE TABLE data (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO data SELECT g, 'v' || g FROM generate_series(1, 100) g")
        create_ledger(conn)
    before = capture_fingerprints(label="before", database=scratch_db, configuration=cfg)
    # what a drill writes during the run: the load's rows and the steady-state probe's
    writes_succeed(database=scratch_db, configuration=cfg)
    with sandbox.connect(sandbox.primary(), scratch_db) as conn:
        conn.execute(insert_sql(2), row_values("test-client", [1, 2]))
    after = capture_fingerprints(label="after", database=scratch_db, configuration=cfg)
    stored = RunContext(tmp_path).read()["fingerprints_reference"]
    assert before == after == {"public.data": 100}
    assert stored["before"] == stored["after"]

    # control: a change to a user table does change them
    with sandbox.connect(sandbox.primary(), scratch_db) as conn:
        conn.execute("UPDATE data SET v = 'changed' WHERE id = 50")
    capture_fingerprints(label="changed", database=scratch_db, configuration=cfg)
    stored = RunContext(tmp_path).read()["fingerprints_reference"]
    assert stored["changed"] != stored["before"]


def test_a_damaged_table_outside_pgbench_fails_the_default_comparison(
    sandbox, sandbox_env, tmp_path
):
    """A restored copy whose non-pgbench table (in a schema of its own) lost a row, or lost
    the whole table, fails fingerprints_match with the defaults."""
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    sandbox.wait_ready(timeout=120)
    with sandbox.connect(sandbox.primary(), "app") as conn:
        conn.execute("DROP SCHEMA IF EXISTS fp_defaults CASCADE")
        conn.execute("CREATE SCHEMA fp_defaults")
        conn.execute("CREATE TABLE fp_defaults.orders (id int PRIMARY KEY, v text)")
        conn.execute(
            "INSERT INTO fp_defaults.orders SELECT g, 'order ' || g FROM generate_series(1, 500) g"
        )
        conn.execute("CREATE TABLE fp_defaults.notes (v text)")  # no key: one range
        conn.execute(
            "INSERT INTO fp_defaults.notes SELECT 'note ' || g FROM generate_series(1, 50) g"
        )
    try:
        state = sandbox.layout.read()
        SandboxCluster(sandbox.layout, state, sandbox._cluster().run_as).wait_archiving(
            state.primary_name
        )
        restore_latest_backup(configuration=cfg)
        assert fingerprints_match(configuration=cfg) is True
        evidence = RunContext(tmp_path).read()["fingerprints"]
        compared = {t["table"] for t in evidence["tables"]}
        assert {
            "fp_defaults.orders",
            "fp_defaults.notes",
            "public.pgbench_accounts",
            "public.pgdrill_sentinel",
        } <= compared
        assert not compared & {"public.pgdrill_ledger", "public.pgdrill_heartbeat"}

        with sandbox.connect(sandbox.restored_instance(), "app") as conn:
            conn.execute("DELETE FROM fp_defaults.orders WHERE id = 321")
        with pytest.raises(ActivityFailed, match=r"fp_defaults\.orders key ranges"):
            fingerprints_match(configuration=cfg)
        evidence = RunContext(tmp_path).read()["fingerprints"]
        assert [t["table"] for t in evidence["tables"] if not t["match"]] == ["fp_defaults.orders"]

        with sandbox.connect(sandbox.restored_instance(), "app") as conn:
            conn.execute("DROP TABLE fp_defaults.notes")
        with pytest.raises(
            ActivityFailed, match=r"fp_defaults\.notes missing from the restored copy"
        ):
            fingerprints_match(configuration=cfg)
        assert RunContext(tmp_path).read()["fingerprints"]["missing_tables"] == [
            "fp_defaults.notes"
        ]
    finally:
        cleanup_restore(configuration=cfg)
        with sandbox.connect(sandbox.primary(), "app") as conn:
            conn.execute("DROP SCHEMA IF EXISTS fp_defaults CASCADE")
