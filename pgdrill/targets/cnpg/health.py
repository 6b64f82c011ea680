"""The cnpg target's health: CNPG's own view (phase, readyInstances, Ready,
currentPrimary == targetPrimary) and a write through the client path."""

from __future__ import annotations

import time

import psycopg

from pgdrill.core.errors import PgdrillError, TargetError
from pgdrill.core.model import HealReport
from pgdrill.core.waiting import poll_until
from pgdrill.targets.cnpg.status import (
    cluster_facts,
    describe_conditions,
    operator_failover,
    pod_shortfall,
    unhealthy_reasons,
)


class CnpgHealth:
    """Mixed into CnpgTarget (pgdrill.targets.cnpg.target), whose state it uses: config,
    kube, and the instance/connection helpers."""

    def wait_ready(
        self, *, timeout: float = 300, since: float | None = None, disturbed: bool = False
    ) -> HealReport:
        """Until CNPG reports the Cluster healthy (phase, readyInstances, Ready, no failover
        in progress), as many live, ready instance pods as `spec.instances`, and the primary
        commits a write through the client path. `disturbed`: the fault took an instance
        down, so health only counts once it was seen lost since (the status or the pods left
        healthy at least once): a status written before the fault proves nothing. A failover
        stuck with targetPrimary != currentPrimary fails naming the phase and conditions."""
        t0 = since if since is not None else time.monotonic()
        writable_at: list[float] = []
        seen_unhealthy: list[str] = []

        def healthy() -> HealReport | None:
            cluster = self._cluster()
            if not writable_at and self._primary_writable():
                writable_at.append(time.monotonic())
            pods = self._pods()
            reasons = unhealthy_reasons(cluster) + pod_shortfall(cluster, pods)
            if reasons:
                seen_unhealthy[:] = reasons
                return None
            if not writable_at or (disturbed and not seen_unhealthy):
                return None
            now = time.monotonic()
            return HealReport(
                writable_primary_seconds=round(writable_at[0] - t0, 3),
                healthy_seconds=round(now - t0, 3),
                primary=self._primary_name(),
                instances=[self._instance(p) for p in pods],
                details={
                    "operator": operator_failover(cluster),
                    "ha": cluster_facts(cluster),
                    **({"seen_unhealthy": seen_unhealthy[:3]} if disturbed else {}),
                },
            )

        try:
            return poll_until(
                healthy,
                timeout=timeout,
                interval=0.5,
                what=f"Cluster {self.config.namespace}/{self.config.cluster} to be healthy",
            )
        except PgdrillError:
            cluster = self._cluster()
            status = cluster.get("status") or {}
            if disturbed and not seen_unhealthy and not unhealthy_reasons(cluster):
                raise TargetError(
                    f"Cluster {self.config.namespace}/{self.config.cluster} never left "
                    f"'healthy' in {timeout:.0f}s after the fault, and its instance pods stayed "
                    "ready: a status written before the fault cannot tell that it healed",
                    fix="check that the fault reached the cluster (kubectl get pods,pvc -n "
                    f"{self.config.namespace} -l cnpg.io/cluster={self.config.cluster}) "
                    "and that the operator runs",
                ) from None
            raise TargetError(
                f"Cluster {self.config.namespace}/{self.config.cluster} did not heal within "
                f"{timeout:.0f}s: "
                + "; ".join(
                    unhealthy_reasons(cluster) or ["no writable primary through the client path"]
                )
                + f"; phase {status.get('phase')!r}, "
                f"conditions: {describe_conditions(cluster)}",
                fix="kubectl cnpg status "
                + self.config.cluster
                + " -n "
                + self.config.namespace
                + "; read the operator's log (saved in the run folder)",
            ) from None

    def _primary_writable(self) -> bool:
        try:
            with self.connect(self.primary(), "postgres") as conn:
                return bool(conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0])
        except (TargetError, psycopg.Error):
            return False
