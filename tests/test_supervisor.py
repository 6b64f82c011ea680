"""The supervisor heals the sandbox the way the CNPG operator heals a cluster."""

import time
import uuid

import psycopg
import pytest

from pgdrill.core.errors import TargetError
from pgdrill.core.waiting import poll_until
from pgdrill.targets.sandbox import postgres

pytestmark = pytest.mark.sandbox


def events_since(sandbox, n):
    return [e["event"] for e in sandbox.layout.events()[n:]]


def wait_for_event(sandbox, n, event, timeout=60):
    """The supervisor logs a decision just after acting on it: poll for the record."""
    return poll_until(
        lambda: event in events_since(sandbox, n),
        timeout=timeout,
        what=f"supervisor event {event!r}",
    )


def instance_named(sandbox, name):
    return next(i for i in sandbox.instances() if i.name == name)


def assert_replica_follows_the_primary(sandbox, name, timeout=60):
    """`name` is a standby streaming from the current primary (both sides say so: the
    primary's pg_stat_replication and the replica's pg_stat_wal_receiver), and a row
    written on the primary now is replayed on it before the deadline."""
    primary = sandbox.primary()
    assert name != primary.name
    token = uuid.uuid4().hex
    with sandbox.connect(primary, "app") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS supervisor_probe (token text PRIMARY KEY)")
        conn.execute("INSERT INTO supervisor_probe VALUES (%s)", (token,))

    def replayed():
        try:
            with sandbox.connect(instance_named(sandbox, name), "app") as conn:
                replica = conn.execute(
                    "SELECT pg_is_in_recovery(), "
                    "       (SELECT status FROM pg_stat_wal_receiver), "
                    "       (SELECT sender_port FROM pg_stat_wal_receiver), "
                    "       EXISTS (SELECT 1 FROM supervisor_probe WHERE token = %s)",
                    (token,),
                ).fetchone()
        except (TargetError, psycopg.Error):
            return None  # not accepting connections (or the table not replayed) yet
        if not replica[3]:
            return None
        with sandbox.connect(primary, "app") as conn:
            sender = conn.execute(
                "SELECT state FROM pg_stat_replication WHERE application_name = %s", (name,)
            ).fetchall()
        return (*replica, sender)

    try:
        found = poll_until(
            replayed,
            timeout=timeout,
            what=f"the row written on {primary.name} to be replayed on {name}",
        )
        assert found == (True, "streaming", primary.port, True, [("streaming",)])
    finally:
        with sandbox.connect(sandbox.primary(), "app") as conn:
            conn.execute("DROP TABLE IF EXISTS supervisor_probe")


def test_crashed_replica_is_restarted(sandbox):
    sandbox.wait_ready(timeout=120)
    replica = next(i for i in sandbox.instances() if i.role == "replica")
    seen = len(sandbox.layout.events())
    postgres.kill_postmaster(sandbox.layout.data_dir(replica.name))
    sandbox.wait_ready(timeout=120)
    assert wait_for_event(sandbox, seen, "restart")
    assert sandbox.primary().name != replica.name
    assert_replica_follows_the_primary(sandbox, replica.name)


def test_replica_storage_loss_is_recloned(sandbox):
    sandbox.wait_ready(timeout=120)
    replica = next(i for i in sandbox.instances() if i.role == "replica")
    seen = len(sandbox.layout.events())
    sandbox.drop_storage(replica)
    sandbox.wait_ready(timeout=180)
    assert wait_for_event(sandbox, seen, "reclone")
    assert_replica_follows_the_primary(sandbox, replica.name)


def test_primary_loss_promotes_the_replica_and_recovers_fully(sandbox):
    sandbox.wait_ready(timeout=120)
    old = sandbox.primary()
    seen = len(sandbox.layout.events())
    t0 = time.monotonic()
    sandbox.kill_primary()
    report = sandbox.wait_ready(timeout=180, since=t0)
    assert report.primary != old.name
    assert 0 < report.writable_primary_seconds <= report.healthy_seconds
    wait_for_event(sandbox, seen, "failover")
    failover = [e for e in sandbox.layout.events()[seen:] if e["event"] == "failover"][0]
    assert failover["old_primary"] == old.name and failover["seconds"] > 0
    with sandbox.connect(sandbox.primary()) as conn:
        assert conn.execute("SELECT NOT pg_is_in_recovery()").fetchone() == (True,)


def sync_state_of(sandbox, name):
    with sandbox.connect(sandbox.primary()) as conn:
        row = conn.execute(
            "SELECT sync_state FROM pg_stat_replication "
            "WHERE application_name = %s AND state = 'streaming'",
            (name,),
        ).fetchone()
    return row[0] if row else None


def test_a_healthy_replica_confirms_every_commit_and_losing_it_blocks_none(sandbox):
    """Synchronous replication as CNPG's dataDurability `preferred`: while the replica
    streams, a commit waits for it (a failover to it loses no acknowledged write); when it
    is lost, the primary's commits go on instead of waiting for it forever."""
    sandbox.wait_ready(timeout=120)
    replica = next(i for i in sandbox.instances() if i.role == "replica")
    assert sync_state_of(sandbox, replica.name) == "quorum"
    with sandbox.connect(sandbox.primary()) as conn:
        assert conn.execute("SHOW synchronous_standby_names").fetchone() == (
            f'ANY 1 ("{replica.name}")',
        )
    sandbox.drop_storage(replica)
    with sandbox.connect(sandbox.primary(), "app") as conn:
        conn.execute("SET statement_timeout = '20s'")
        conn.execute("CREATE TABLE IF NOT EXISTS supervisor_sync_probe (n int)")
        conn.execute("INSERT INTO supervisor_sync_probe VALUES (1)")  # raises if it waits 20 s
        conn.execute("DROP TABLE supervisor_sync_probe")
    sandbox.wait_ready(timeout=180)
    assert sync_state_of(sandbox, replica.name) == "quorum"
