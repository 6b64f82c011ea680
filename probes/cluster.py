"""Cluster probes: roles, health, and how long the cluster took to heal after a fault."""

from __future__ import annotations

import time

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.core.console import say

__all__ = ["is_healthy", "primary_name", "wait_until_healthy"]

DISTURBING_FAULTS = ("delete_primary_pod", "drop_pvc")


@activity
def primary_name(configuration: Configuration = None, secrets: Secrets = None) -> str:
    """The name of the current primary instance."""
    return ready_target(configuration, secrets).primary().name


@activity
def is_healthy(configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True when the primary accepts writes and every replica streams from it."""
    target = ready_target(configuration, secrets)
    try:
        target.wait_ready(timeout=0.1)
        return True
    except Exception as exc:
        say(f"cluster not healthy: {exc}")
        return False


@activity
def wait_until_healthy(
    timeout_seconds: int = 300, configuration: Configuration = None, secrets: Secrets = None
) -> dict:
    """Wait (at most `timeout_seconds`) until the cluster has a writable primary and every
    instance is healthy again, and measure it from the last injected fault:
    `seconds` to a writable primary (failover) and `healthy_seconds` to full health; with a
    load running, also `client_write_outage`: the last acknowledged write before the outage
    to the first after it; on CNPG, `target.operator` has the Cluster's own
    targetPrimaryTimestamp -> currentPrimaryTimestamp."""
    target = ready_target(configuration, secrets)
    ctx = run_context(configuration)
    fault = ctx.read().get("fault") or {}
    # the fault was recorded by an earlier activity of this same process: its monotonic
    # instant is comparable with ours (wall-clock time is not: it can step)
    since = fault.get("monotonic")
    # a fault that took an instance down must be seen to have done so before "healthy" counts
    disturbed = fault.get("kind") in DISTURBING_FAULTS and since is not None
    report = target.wait_ready(timeout=float(timeout_seconds), since=since, disturbed=disturbed)
    outage = _client_write_outage(ctx.read(), fault)
    failover = {
        "seconds": report.writable_primary_seconds,
        "healthy_seconds": report.healthy_seconds,
        "primary": report.primary,
        "measured_from": "fault" if since is not None else "probe start",
        **({"target": report.details} if report.details else {}),
        **({"client_write_outage": outage} if outage else {}),
    }
    ctx.update(failover=failover)
    say(
        f"writable primary {report.primary} after {report.writable_primary_seconds}s, "
        f"all instances healthy after {report.healthy_seconds}s"
        + (f"; the load's writes stopped for {outage['seconds']}s" if outage else "")
    )
    return failover


def _client_write_outage(data: dict, fault: dict) -> dict | None:
    """The load's view of the outage (pgdrill.load.outage), when a load runs and a fault
    was injected in this run."""
    from pgdrill.load.acklog import read_acks
    from pgdrill.load.outage import write_outage

    load = data.get("load") or {}
    if not load.get("ack_log") or fault.get("epoch") is None:
        return None
    acks = read_acks(load["ack_log"], int(load.get("ack_offset") or 0))
    return write_outage([a.acked_at for a in acks], float(fault["epoch"]), time.time())
