"""The cnpg target's health: CNPG's own view (phase, readyInstances, Ready,
currentPrimary == targetPrimary) and a write through the client path."""

from __future__ import annotations

import time

import psycopg

from pgdrill.errors import PgdrillError, TargetError
from pgdrill.model import HealReport
from pgdrill.targets.cnpg.status import (
    cluster_facts,
    describe_conditions,
    operator_failover,
    pod_ready,
    unhealthy_reasons,
)
from pgdrill.waiting import poll_until


class CnpgHealth:
    """Mixed into CnpgTarget (pgdrill.targets.cnpg.target), whose state it uses: config,
    kube, and the instance/connection helpers."""

    def wait_ready(self, *, timeout: float = 300, since: float | None = None) -> HealReport:
        """Until CNPG reports the Cluster healthy (phase, readyInstances, Ready, no failover
        in progress) and the primary commits a write through the client path. A failover
        stuck with targetPrimary != currentPrimary fails naming the phase and conditions."""
        t0 = since if since is not None else time.monotonic()
        writable_at: list[float] = []

        def healthy() -> HealReport | None:
            cluster = self._cluster()
            if not writable_at and self._primary_writable():
                writable_at.append(time.monotonic())
            if unhealthy_reasons(cluster) or not writable_at:
                return None
            pods = self._pods()
            if not all(pod_ready(p) for p in pods):
                return None
            now = time.monotonic()
            return HealReport(writable_primary_seconds=round(writable_at[0] - t0, 3),
                              healthy_seconds=round(now - t0, 3),
                              primary=self._primary_name(),
                              instances=[self._instance(p) for p in pods],
                              details={"operator": operator_failover(cluster),
                                       "ha": cluster_facts(cluster)})

        try:
            return poll_until(healthy, timeout=timeout, interval=0.5,
                              what=f"Cluster {self.config.namespace}/{self.config.cluster} to be "
                                   "healthy")
        except PgdrillError:
            cluster = self._cluster()
            status = cluster.get("status") or {}
            raise TargetError(
                f"Cluster {self.config.namespace}/{self.config.cluster} did not heal within "
                f"{timeout:.0f}s: " + "; ".join(unhealthy_reasons(cluster) or ["no writable "
                "primary through the client path"]) + f"; phase {status.get('phase')!r}, "
                f"conditions: {describe_conditions(cluster)}",
                fix="kubectl cnpg status " + self.config.cluster + " -n " + self.config.namespace
                    + "; read the operator's log (saved in the run folder)") from None

    def _primary_writable(self) -> bool:
        try:
            with self.connect(self.primary(), "postgres") as conn:
                return bool(conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0])
        except (TargetError, psycopg.Error):
            return False
