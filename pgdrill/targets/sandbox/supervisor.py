"""The sandbox's stand-in for the CNPG operator, and nothing more:

- primary process gone  -> promote the most advanced running replica (time recorded);
- an instance's storage gone, or a former primary -> re-clone it from the primary as a replica;
- a crashed instance with its storage intact -> restart it;
- the primary's synchronous standbys = the instances that stream from it (CNPG's
  `synchronous: {method: any, number: 1, dataDurability: preferred}`): a commit waits for
  one of them, and a failover to the most advanced replica loses no acknowledged write;
- the whole cluster destroyed (state `destroyed_at`, set by the cluster-loss drill before it
  kills anything) -> acknowledge it once (event `destroyed_seen`) and heal NOTHING: no initdb,
  no clone from nothing. Only an explicit rebuild from the bucket brings it back (it clears
  `destroyed_at`), and supervision resumes.

Every decision is logged with a timestamp to supervisor.log and events.jsonl.
Run as `python -m pgdrill.targets.sandbox.supervisor --home DIR`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from datetime import UTC, datetime

import psycopg

from pgdrill.core.errors import PgdrillError
from pgdrill.targets.sandbox.cluster import SandboxCluster, wait_writable
from pgdrill.targets.sandbox.osuser import resolve_run_as
from pgdrill.targets.sandbox.state import Layout, process_runs, sandbox_home

INTERVAL_S = 0.25
MODULE = "pgdrill.targets.sandbox.supervisor"


def running(pid: int | None, home: str) -> bool:
    """The recorded supervisor pid still runs this sandbox's supervisor (reads /proc only)."""
    return process_runs(pid, MODULE, f"--home {home} ")


def log(message: str) -> None:
    print(f"{datetime.now(UTC).isoformat()} {message}", flush=True)


class Supervisor:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        state = layout.read()
        if state is None:
            raise SystemExit(f"no sandbox state in {layout.home}")
        self.run_as = resolve_run_as(state.run_as or None)
        self.primary_down_since: float | None = None
        self.destroyed_seen: str | None = None
        self.stopping = False

    def cluster(self) -> SandboxCluster:
        return SandboxCluster(self.layout, self.layout.read(), self.run_as)

    def decide(self, event: str, message: str, **detail) -> None:
        log(message)
        self.layout.record_event(event, message=message, **detail)

    # -- one pass ---------------------------------------------------------------------
    def reconcile(self) -> None:
        cluster = self.cluster()
        if self.cluster_destroyed(cluster.state.destroyed_at):
            return
        primary = cluster.state.primary_name
        if primary is None:
            return
        if not cluster.is_running(primary):
            self.handle_primary_down(cluster, primary)
            return
        self.primary_down_since = None
        self.sync_standbys(cluster, primary)
        for name, inst in cluster.state.instances.items():
            if self.stopping or name == primary:
                continue
            if inst.needs_rebuild or not cluster.has_storage(name):
                why = "former primary" if inst.needs_rebuild else "storage is gone"
                t0 = time.monotonic()
                self.decide(
                    "reclone_started",
                    f"re-cloning {name} from {primary} ({why})",
                    instance=name,
                    primary=primary,
                )
                cluster.clone_replica(name, primary)
                with self.layout.locked():
                    state = self.layout.read()
                    state.instances[name].needs_rebuild = False
                    state.instances[name].role = "replica"
                    self.layout.write(state)
                self.decide(
                    "reclone",
                    f"{name} rejoined as a replica of {primary} in {time.monotonic() - t0:.1f}s",
                    instance=name,
                    primary=primary,
                    seconds=round(time.monotonic() - t0, 3),
                )
            elif not cluster.is_running(name):
                self.decide(
                    "restart", f"{name} crashed with its storage intact: restarting", instance=name
                )
                cluster.start(name)

    def sync_standbys(self, cluster: SandboxCluster, primary: str) -> None:
        standbys = cluster.streaming_standbys(primary)
        if cluster.set_synchronous(primary, standbys):
            self.decide(
                "synchronous",
                f"synchronous standbys of {primary}: "
                + (
                    ", ".join(standbys)
                    if standbys
                    else "none (commits do not wait until a standby streams)"
                ),
                instance=primary,
                standbys=standbys,
            )

    def cluster_destroyed(self, destroyed_at: str | None) -> bool:
        """True while the cluster is destroyed: said once per destruction (the destroying
        drill waits for that acknowledgement before it kills anything)."""
        if destroyed_at is None:
            if self.destroyed_seen is not None:
                self.decide(
                    "rebuilt_seen",
                    "the cluster was rebuilt from the bucket: supervising it again",
                    destroyed_at=self.destroyed_seen,
                )
                self.destroyed_seen = None
            return False
        if self.destroyed_seen != destroyed_at:
            self.destroyed_seen = destroyed_at
            self.primary_down_since = None
            self.decide(
                "destroyed_seen",
                f"the cluster is destroyed (at {destroyed_at}): "
                "healing nothing until it is rebuilt from the bucket",
                destroyed_at=destroyed_at,
            )
        return True

    def handle_primary_down(self, cluster: SandboxCluster, primary: str) -> None:
        now = time.monotonic()
        if self.primary_down_since is None:
            self.primary_down_since = now
            self.decide("primary_down", f"primary {primary} is not running", instance=primary)
        candidate = self.most_advanced_replica(cluster, primary)
        if candidate is not None:
            self.decide(
                "promote_started",
                f"promoting {candidate} (most advanced replica)",
                instance=candidate,
                old_primary=primary,
            )
            # its own synchronous list (from when it last was the primary) would make the new
            # primary wait for standbys that are gone: none until one streams from it
            cluster.set_synchronous(candidate, [])
            cluster.promote(candidate)
            wait_writable(cluster, candidate, timeout=60)
            with self.layout.locked():
                state = self.layout.read()
                state.instances[candidate].role = "primary"
                state.instances[primary].role = "replica"
                state.instances[primary].needs_rebuild = True
                self.layout.write(state)
            seconds = round(time.monotonic() - self.primary_down_since, 3)
            self.decide(
                "failover",
                f"{candidate} is the new primary, {seconds}s after {primary} was found down",
                instance=candidate,
                old_primary=primary,
                seconds=seconds,
            )
            self.primary_down_since = None
        elif cluster.has_storage(primary):
            self.decide(
                "restart", f"no replica can take over: restarting {primary}", instance=primary
            )
            cluster.start(primary)
            self.primary_down_since = None

    @staticmethod
    def most_advanced_replica(cluster: SandboxCluster, primary: str) -> str | None:
        best, best_lsn = None, -1
        for name, inst in cluster.state.instances.items():
            if name == primary or inst.needs_rebuild or not cluster.is_running(name):
                continue
            try:
                lsn = cluster.query_one(
                    name,
                    "SELECT pg_wal_lsn_diff(GREATEST(pg_last_wal_receive_lsn(), "
                    "pg_last_wal_replay_lsn(), '0/0'), '0/0')::bigint",
                )
            except psycopg.Error:
                continue
            if lsn is not None and lsn > best_lsn:
                best, best_lsn = name, lsn
        return best

    def run(self) -> None:
        log(f"supervisor started for {self.layout.home}")
        failures = 0
        while not self.stopping:
            try:
                self.reconcile()
                failures = 0
            except (PgdrillError, psycopg.Error, OSError) as exc:
                failures += 1
                log(f"reconcile failed ({failures}x): {exc}")
                if failures == 1:
                    traceback.print_exc()
                time.sleep(min(5.0, 0.5 * failures))
            time.sleep(INTERVAL_S)
        log("supervisor stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=None)
    args = parser.parse_args(argv)
    supervisor = Supervisor(Layout(sandbox_home(args.home)))

    def stop(*_: object) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    supervisor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
