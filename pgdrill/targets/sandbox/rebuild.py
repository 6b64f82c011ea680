"""The whole sandbox cluster lost, and rebuilt from the bucket alone (cluster-loss drill).

- `destroy`: the supervisor is told first (state `destroyed_at`) and must acknowledge it, so
  it never heals a destroyed cluster by itself; then every instance's postmaster is SIGKILLed,
  every process still working in its data directory (an archive_command uploading a segment)
  waited for, and every data directory deleted.
- `rebuild`: as CNPG's `bootstrap.recovery` into a new Cluster of the same name:
  barman-cloud-restore of the backup into the primary's data directory, WAL replayed from the
  OLD serverName to the end of the archive, promotion, archiving into a NEW serverName (which
  must be empty first: barman-cloud-check-wal-archive, CNPG's "Expected empty archive"), then
  the replicas re-cloned from the new primary. The sandbox's state records the new serverName:
  later backups, archiving and `list_backups` use it; the old folder is never written again.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from pgdrill.core.console import Stopwatch, say
from pgdrill.core.errors import TargetError
from pgdrill.core.model import (
    READY_PHASE,
    RESTORE_PHASE,
    Backup,
    RecoveryTarget,
    RestoreResult,
)
from pgdrill.core.procs import pid_alive
from pgdrill.core.waiting import poll_until
from pgdrill.targets.cnpg.manifests import rebuilt_server_name
from pgdrill.targets.sandbox import barman, postgres, s3
from pgdrill.targets.sandbox.cluster import SandboxCluster, replica_streaming
from pgdrill.targets.sandbox.osuser import resolve_run_as
from pgdrill.targets.sandbox.restore import WAL_MAX_PARALLEL, wait_promoted

ACK_TIMEOUT_S = 30


def _cluster(layout) -> SandboxCluster:
    state = layout.read()
    if state is None:
        raise TargetError(f"there is no sandbox in {layout.home}", fix="run `pgdrill sandbox up`")
    return SandboxCluster(layout, state, resolve_run_as(state.run_as or None))


def destroy(layout, supervisor_running) -> dict:
    """Destroy every instance and its storage; return what was destroyed. The supervisor
    (`supervisor_running()` must be true) acknowledges the destruction before anything dies."""
    if not supervisor_running():
        raise TargetError(
            "the sandbox's supervisor does not run, so it cannot be told that "
            "the cluster is about to be destroyed",
            fix="`pgdrill sandbox up`",
        )
    stamp = datetime.now(UTC).isoformat()
    with layout.locked():
        state = layout.read()
        if state.destroyed_at:
            raise TargetError(
                f"the sandbox's cluster was already destroyed at "
                f"{state.destroyed_at} and not rebuilt",
                fix="rebuild it from the bucket first",
            )
        state.destroyed_at = stamp
        layout.write(state)
    try:
        poll_until(
            lambda: any(
                e.get("event") == "destroyed_seen" and e.get("destroyed_at") == stamp
                for e in layout.events()
            ),
            timeout=ACK_TIMEOUT_S,
            interval=0.1,
            what="the supervisor to acknowledge that the cluster is being destroyed",
        )
    except TargetError:
        with layout.locked():
            state = layout.read()
            state.destroyed_at = None
            layout.write(state)
        raise
    cluster = _cluster(layout)
    killed = {}
    for name in cluster.state.instances:
        killed[name] = postgres.kill_postmaster(layout.data_dir(name))
    for name in cluster.state.instances:
        data = layout.data_dir(name)
        poll_until(
            lambda d=data: not processes_in(d),
            timeout=60,
            interval=0.1,
            what=f"every process of {name} (backends, an archive_command) to exit",
        )
        shutil.rmtree(data, ignore_errors=True)
    layout.record_event(
        "cluster_destroyed",
        message="every instance killed and its data directory deleted",
        instances=list(killed),
        destroyed_at=stamp,
    )
    say(
        f"destroyed cluster {cluster.state.cluster!r}: instances "
        f"{', '.join(cluster.state.instances)} SIGKILLed, every data directory deleted"
    )
    return {
        "cluster": cluster.state.cluster,
        "instances": list(killed),
        "primary": cluster.state.primary_name,
        "server_name": cluster.store.server_name,
        "archive": f"{cluster.store.destination_path}{cluster.store.server_name}/",
        "destroyed_at": stamp,
    }


def _drop_auto_settings(data: Path, names: tuple[str, ...]) -> None:
    """Remove `names` from the restored postgresql.auto.conf (ALTER SYSTEM settings travel
    in a base backup and would override the rebuild's archive and restore commands)."""
    auto = data / "postgresql.auto.conf"
    try:
        lines = auto.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return
    kept = [line for line in lines if line.split("=", 1)[0].strip() not in names]
    if kept != lines:
        auto.write_text("".join(kept))


def processes_in(data: Path) -> list[int]:
    """Pids whose working directory is `data` (PostgreSQL's processes and the archive or
    restore commands they run). Processes we may not inspect are skipped."""
    found = []
    target = str(data)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if (cwd == target or cwd.startswith(target + "/")) and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def _taken(cluster: SandboxCluster):
    client = s3.client(cluster.state.endpoint_url, cluster.credentials)

    def taken(server_name: str) -> bool:
        listing = client.list_objects_v2(
            Bucket=cluster.state.bucket, Prefix=f"{server_name}/", MaxKeys=1
        )
        return listing.get("KeyCount", 0) > 0

    return taken


def rebuild(
    layout, backup: Backup, *, timeout: float, server_name: str | None = None
) -> RestoreResult:
    """Rebuild the destroyed cluster from `backup` of its (old) archive; archive into
    `server_name` (default: the next free `<cluster>-r<N>`)."""
    cluster = _cluster(layout)
    state = cluster.state
    if not state.destroyed_at:
        raise TargetError(
            "the sandbox's cluster is not destroyed: a rebuild from the bucket "
            "replaces a lost cluster, never a running one",
            fix="destroy it first (actions.faults.destroy_cluster)",
        )
    old = cluster.store
    new_name = server_name or rebuilt_server_name(old.server_name, _taken(cluster))
    if new_name == old.server_name:
        raise TargetError(
            f"the rebuilt cluster must archive under a new serverName, not "
            f"{old.server_name!r}: it would write into the old archive"
        )
    new = barman.ObjectStore(old.endpoint_url, old.bucket, new_name, old.path)
    primary = state.primary_name or next(iter(state.instances))
    others = [n for n in state.instances if n != primary]
    started_at, watch = datetime.now(UTC), Stopwatch()
    for name in state.instances:  # a rebuild that failed half-way leaves debris: start clean
        cluster.stop(name)
        shutil.rmtree(layout.data_dir(name), ignore_errors=True)
    idir = layout.instance_dir(primary)
    env = cluster.process_env(idir)
    with watch.phase("check_empty_archive"):
        postgres.run(
            cluster.run_as,
            [
                barman.tool("barman-cloud-check-wal-archive"),
                *new.common_args(),
                new.destination_path,
                new_name,
            ],
            env=env,
            timeout=120,
            what=f"barman-cloud-check-wal-archive of "
            f"{new.destination_path}{new_name}/ (the new archive must be empty)",
        )
    data = layout.data_dir(primary)
    with watch.phase("download_base_backup"):
        cluster._prepare_instance_dir(primary)
        say(
            f"rebuilding {primary}: barman-cloud-restore of backup {backup.id} from "
            f"{old.destination_path}{old.server_name}/"
        )
        postgres.run(
            cluster.run_as,
            old.restore_argv(backup.id, data),
            env=env,
            timeout=timeout,
            what=f"barman-cloud-restore of {backup.id}",
        )
    with watch.phase("configure_recovery"):
        # later lines win: archive into the NEW serverName, read WAL from the OLD one,
        # WAL_MAX_PARALLEL segments at a time through a spool beside the data folder
        spool = data.parent / "wal-spool"
        spool.mkdir(exist_ok=True)
        cluster.run_as.chown(spool)
        cluster.append_conf(
            data,
            {
                "archive_mode": "on",
                "archive_command": new.archive_command(),
                "restore_command": old.restore_command(WAL_MAX_PARALLEL, spool),
                "recovery_target_timeline": "latest",
            },
        )
        _drop_auto_settings(data, ("restore_command", "archive_command", "archive_mode"))
        for stale in ("standby.signal", "postmaster.pid"):
            (data / stale).unlink(missing_ok=True)
        (data / "recovery.signal").touch()
        # no synchronous standby until the supervisor sees one stream (the old list would
        # make every commit of the rebuilt primary wait for replicas not yet re-cloned)
        cluster.set_synchronous(primary, [])
        os.chmod(data, 0o700)
        cluster.run_as.chown_tree(data)
    port = state.instances[primary].port
    with watch.phase("replay_wal_and_promote"):
        say(f"replaying WAL from {old.server_name} to the end of the archive, then promoting")
        postgres.start(
            cluster.run_as, data, port, layout.sockets, layout.log_file(primary), env, wait=False
        )
        wait_promoted(data, port, layout.log_file(primary), timeout)
    with watch.phase("archive_to_new_server"):
        # recovery is over: read nothing from the old archive any more (postgresql.conf, not
        # ALTER SYSTEM: postgresql.auto.conf travels in base backups and would win over the
        # next rebuild's restore_command)
        cluster.append_conf(data, {"restore_command": ""})
        with cluster.connect(primary) as conn:
            conn.execute("SELECT pg_reload_conf()")
        shutil.rmtree(spool, ignore_errors=True)
        cluster.wait_archiving(primary)  # a segment of the new timeline in the new folder
        s3.write_marker(
            new.endpoint_url,
            new.bucket,
            new_name,
            {
                "cluster": state.cluster,
                "rebuilt_from": old.server_name,
                "backup": backup.id,
                "at": datetime.now(UTC).isoformat(),
            },
            cluster.credentials,
        )
    with watch.phase("reclone_replicas"):
        for name in others:
            say(f"re-cloning {name} from the rebuilt primary {primary}")
            cluster.clone_replica(name, primary)
            poll_until(
                lambda n=name: replica_streaming(cluster, n),
                timeout=120,
                what=f"{name} to stream from {primary}",
            )
    # only now, in one write: a rebuild cut short leaves the cluster destroyed, still with
    # its old serverName, so that the next attempt restores from the old archive again
    with layout.locked():
        fresh = layout.read()
        fresh.server_name, fresh.destroyed_at = new_name, None
        for name, inst in fresh.instances.items():
            inst.role, inst.needs_rebuild = ("primary" if name == primary else "replica"), False
        layout.write(fresh)
    cluster = _cluster(layout)
    layout.record_event(
        "cluster_rebuilt",
        message=f"rebuilt from backup {backup.id} of {old.server_name}; archiving into {new_name}",
        backup=backup.id,
        old_server_name=old.server_name,
        server_name=new_name,
    )
    details = dict(watch.phases)
    ready = round(details["archive_to_new_server"] + details["reclone_replicas"], 3)
    total = round(sum(details.values()), 3)
    say(
        f"cluster {state.cluster!r} rebuilt in {total:.1f}s: primary {primary}, archiving "
        f"into {new.destination_path}{new_name}/"
    )
    return RestoreResult(
        instance=cluster.instance(primary),
        backup=backup,
        target=RecoveryTarget(),
        started_at=started_at,
        phases={RESTORE_PHASE: round(total - ready, 3), READY_PHASE: ready},
        phase_details=details,
    )
