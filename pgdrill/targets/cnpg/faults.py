"""The cnpg target's faults: the primary pod deleted, an instance's storage dropped (its PVCs
deleted, then its pod: a lost volume), a page overwritten by exec in the primary's pod."""

from __future__ import annotations

from pgdrill.core.console import say
from pgdrill.core.errors import TargetError
from pgdrill.core.model import Instance
from pgdrill.pg import corruption
from pgdrill.targets.cnpg.config import CONTAINER


class CnpgFaults:
    """Mixed into CnpgTarget (pgdrill.targets.cnpg.target), whose state it uses: config,
    kube, and the instance/connection helpers."""

    def kill_primary(self) -> Instance:
        primary = self.primary()
        self.kube.delete_pod(self.config.namespace, primary.name, grace_period_seconds=1)
        say(f"deleted the primary pod {self.config.namespace}/{primary.name} (grace period 1s)")
        return primary

    def drop_storage(self, instance: Instance) -> Instance:
        """A lost volume: the instance's PVCs (data, WAL, tablespaces) deleted through the API
        (they go once the pod is gone: pvc-protection), then its pod with grace period 1;
        CNPG re-creates the instance from the primary under the next serial. pgdrill does
        this itself with two API calls; it does not run the `kubectl cnpg` plugin."""
        ns = self.config.namespace
        pvcs = [
            p["metadata"]["name"]
            for p in self.kube.pvcs(
                ns, f"cnpg.io/cluster={self.config.cluster},cnpg.io/instanceName={instance.name}"
            )
        ]
        pvcs = pvcs or [instance.name]
        for pvc in pvcs:
            self.kube.delete_pvc(ns, pvc)
        self.kube.delete_pod(ns, instance.name, grace_period_seconds=1)
        say(
            f"dropped the storage of {instance.name} ({instance.role}): PVC "
            f"{', '.join(pvcs)} and the pod deleted"
        )
        return instance

    def corrupt_page(self, table: str, database: str = "app") -> dict:
        """Physical corruption by exec in the primary's pod (`dd` over $PGDATA/<file>)."""
        primary = self.primary()

        def overwrite(relpath: str, offset: int, length: int) -> None:
            script = (
                'dd if=/dev/urandom of="$PGDATA/$1" bs=1 seek="$2" count="$3" '
                "conv=notrunc,fsync status=none"
            )
            out, err, code = self.kube.exec(
                self.config.namespace,
                primary.name,
                CONTAINER,
                ["sh", "-c", script, "sh", relpath, str(offset), str(length)],
            )
            if code != 0:
                raise TargetError(
                    f"overwriting {relpath} in pod {primary.name} failed "
                    f"(exit {code}): {(err or out).strip()[:300]}",
                    fix="the drill needs pods/exec on the instance pods",
                )

        with self.connect(primary, database) as conn:
            record = {"instance": primary.name, **corruption.corrupt_page(conn, table, overwrite)}
        say(
            f"corrupted block {record['block']} of {table} on {primary.name}: "
            + (f"detected ({record['error']})" if record["detected"] else "NOT detected")
        )
        return record
