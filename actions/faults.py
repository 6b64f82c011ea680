"""Fault injection: lose the primary, lose an instance's storage. Non-prod only."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.errors import BadInput
from pgdrill.model import Instance

__all__ = ["delete_primary_pod", "drop_pvc"]


def _record(configuration: Configuration, kind: str, victim: Instance, started: float) -> dict:
    """Record the fault with the instant it was injected (taken before the call, so that
    recovery measured from it includes everything the fault caused)."""
    fault = {"kind": kind, "instance": victim.name, "role": str(victim.role),
             "at": datetime.fromtimestamp(started, UTC).isoformat(), "epoch": started}
    run_context(configuration).update(fault=fault)
    return fault


@activity
def delete_primary_pod(configuration: Configuration = None, secrets: Secrets = None) -> dict:
    """Kill the primary abruptly: on the sandbox its postmaster gets SIGKILL; on CNPG the
    primary pod is deleted. The operator (or the sandbox supervisor) must promote a replica.
    Returns the fault record (kind, instance, time)."""
    target = ready_target(configuration)
    started = time.time()
    victim = target.kill_primary()
    return _record(configuration, "delete_primary_pod", victim, started)


@activity
def drop_pvc(instance: str = "primary", configuration: Configuration = None,
             secrets: Secrets = None) -> dict:
    """Destroy an instance's storage: `primary`, `replica` or an instance name. On the
    sandbox the instance is killed and its data directory deleted; on CNPG its PVC and pod
    are deleted. The cluster must heal by failover and re-cloning.
    Returns the fault record (kind, instance, time)."""
    target = ready_target(configuration)
    members = target.instances()
    if instance in ("primary", "replica"):
        chosen = [m for m in members if str(m.role) == instance]
    else:
        chosen = [m for m in members if m.name == instance]
    if not chosen:
        names = ", ".join(m.name for m in members)
        raise BadInput(f"no instance {instance!r} in the cluster",
                       fix=f"use primary, replica or one of: {names}")
    started = time.time()
    victim = target.drop_storage(chosen[0])
    return _record(configuration, "drop_pvc", victim, started)
