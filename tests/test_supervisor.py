"""The supervisor heals the sandbox the way the CNPG operator heals a cluster."""

import time

import pytest

from pgdrill.targets.sandbox import postgres
from pgdrill.waiting import poll_until

pytestmark = pytest.mark.sandbox


def events_since(sandbox, n):
    return [e["event"] for e in sandbox.layout.events()[n:]]


def wait_for_event(sandbox, n, event, timeout=60):
    """The supervisor logs a decision just after acting on it: poll for the record."""
    return poll_until(lambda: event in events_since(sandbox, n), timeout=timeout,
                      what=f"supervisor event {event!r}")


def test_crashed_replica_is_restarted(sandbox):
    sandbox.wait_ready(timeout=120)
    replica = next(i for i in sandbox.instances() if i.role == "replica")
    seen = len(sandbox.layout.events())
    postgres.kill_postmaster(sandbox.layout.data_dir(replica.name))
    sandbox.wait_ready(timeout=120)
    assert wait_for_event(sandbox, seen, "restart")
    assert sandbox.primary().name != replica.name


def test_replica_storage_loss_is_recloned(sandbox):
    sandbox.wait_ready(timeout=120)
    replica = next(i for i in sandbox.instances() if i.role == "replica")
    seen = len(sandbox.layout.events())
    sandbox.drop_storage(replica)
    sandbox.wait_ready(timeout=180)
    assert wait_for_event(sandbox, seen, "reclone")


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
