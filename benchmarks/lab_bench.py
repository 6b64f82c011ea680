"""`make bench-lab`: the lab (real CNPG operator) and a sandbox side by side, through the
drill's own activities: failover after the primary is deleted under load (repeated), and a
restore of a ~1 GB database into restore-test.

    make lab && make bench-lab          # 3 failovers and a ~1 GB restore on each
    BENCH_FAILOVERS=5 make bench-lab    # more failovers
    BENCH_RESTORE_SCALE=7 make bench-lab   # ~100 MB instead (pgbench scale; 70 is ~1 GB)
    BENCH_TARGETS=sandbox make bench-lab   # one side only (lab, sandbox)
    BENCH_SMOKE=1 make bench-lab        # one failover and a tiny restore (the harness)

Figures per failover: `writable_seconds` (fault to a writable primary, client side),
`healthy_seconds` (fault to every instance healthy), `client_write_outage_seconds` (the
load's last acknowledged write before the outage to its first after it), on the lab
`operator_seconds` (CNPG's targetPrimaryTimestamp -> currentPrimaryTimestamp), and the
acknowledged writes the new primary lacks (must be 0: both replicate synchronously). Per
restore: the database size, the drill's backup and restore seconds and their phases.
Writes reports/bench/lab-<UTC stamp>.json and .md. Not a test: nothing here is timed
against a goal; the peers' figures are printed beside ours."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from output import write_results  # noqa: E402

from actions.backup import trigger_backup  # noqa: E402
from actions.faults import delete_primary_pod  # noqa: E402
from actions.load import start_load, stop_load  # noqa: E402
from actions.restore import cleanup_restore, restore_latest_backup  # noqa: E402
from pgdrill.chaos.activity import ready_target  # noqa: E402
from pgdrill.chaos.writes import ack_log  # noqa: E402
from pgdrill.core.console import say  # noqa: E402
from pgdrill.core.waiting import poll_until  # noqa: E402
from pgdrill.credentials.environments import environment_configuration  # noqa: E402
from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext  # noqa: E402
from pgdrill.load.acklog import count_acks  # noqa: E402
from probes.cluster import wait_until_healthy  # noqa: E402
from probes.verify import lost_writes  # noqa: E402

BENCH_DB = "bench"
PEERS = (
    "CNPG's e2e expects a failover in under 10 s; a published CNPG drill on kind measured "
    "a new primary after 5-22 s and restores of 50-54 s."
)


def lab_configuration() -> dict:
    lab = REPO / ".pgdrill" / "lab"
    if not (lab / "kubeconfig").is_file():
        raise SystemExit("bench-lab: no lab running (.pgdrill/lab/kubeconfig): run `make lab`")
    os.environ["KUBECONFIG"] = str(lab / "kubeconfig")
    return environment_configuration(str(REPO / "environments" / "lab.yaml"))


def failover_once(configuration: dict, run_dir: Path) -> dict:
    """Delete the primary under the drill's load, as primary-pod-loss does, and measure."""
    run_dir.mkdir(parents=True)
    cfg = {**configuration, RUN_DIR_KEY: str(run_dir)}
    ready_target(cfg).wait_ready(timeout=900)
    start_load(users=4, spawn_rate=4, configuration=cfg)
    try:
        poll_until(
            lambda: count_acks(ack_log(run_dir)) >= 200,
            timeout=120,
            what="200 acknowledged writes before the fault",
        )
        delete_primary_pod(configuration=cfg)
        failover = wait_until_healthy(timeout_seconds=900, configuration=cfg)
        after = count_acks(ack_log(run_dir))
        poll_until(
            lambda: count_acks(ack_log(run_dir)) >= after + 100,
            timeout=120,
            what="100 acknowledged writes on the new primary",
        )
    finally:
        stop_load(configuration=cfg)
    lost = lost_writes(on="primary", configuration=cfg)
    fault = RunContext(run_dir).read().get("fault") or {}
    operator = (failover.get("target") or {}).get("operator") or {}
    return {
        "writable_seconds": failover["seconds"],
        "healthy_seconds": failover["healthy_seconds"],
        "client_write_outage_seconds": (failover.get("client_write_outage") or {}).get("seconds"),
        "operator_seconds": operator.get("seconds"),
        "acknowledged_writes": lost["acknowledged_writes"],
        "lost_writes": lost["lost_writes"],
        "synchronous": (fault.get("replication") or {}).get("synchronous"),
    }


def load_bench_database(target, scale: int) -> dict:
    """Database `bench` with pgbench_accounts at `scale`, generated on the server as
    `pgbench -i -I G` does (nothing crosses the client connection but SQL)."""
    primary = target.primary()
    with target.connect(primary, "postgres") as conn:
        conn.autocommit = True
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    t0 = time.monotonic()
    with target.connect(primary, BENCH_DB) as conn:
        conn.autocommit = True
        conn.execute(
            "CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, "
            "abalance int, filler char(84))"
        )
        conn.execute(
            "INSERT INTO pgbench_accounts SELECT aid, (aid - 1) / 100000 + 1, 0, '' "
            "FROM generate_series(1, %s) AS aid",
            (scale * 100_000,),
        )
        conn.execute("VACUUM ANALYZE pgbench_accounts")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {
        "scale": scale,
        "rows": scale * 100_000,
        "database_bytes": size,
        "load_seconds": round(time.monotonic() - t0, 2),
    }


def drop_bench_database(target) -> None:
    with target.connect(target.primary(), "postgres") as conn:
        conn.autocommit = True
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")


def restore_once(configuration: dict, run_dir: Path, scale: int) -> dict:
    """A backup of a database of `scale`, then the drill's restore into restore-test, the
    copy's row count checked against the source's."""
    run_dir.mkdir(parents=True)
    cfg = {**configuration, RUN_DIR_KEY: str(run_dir)}
    target = ready_target(cfg)
    info = load_bench_database(target, scale)
    say(f"bench database: {info['database_bytes'] / 1e6:.0f} MB in {info['load_seconds']}s")
    try:
        t0 = time.monotonic()
        trigger_backup(timeout_seconds=3600, configuration=cfg)
        backup_seconds = round(time.monotonic() - t0, 3)
        t0 = time.monotonic()
        record = restore_latest_backup(timeout_seconds=3600, configuration=cfg)
        restore_seconds = round(time.monotonic() - t0, 3)
        restored = ready_target(cfg).restored_instance()
        with target.connect(restored, BENCH_DB) as conn:
            rows = conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0]
        if rows != info["rows"]:
            raise RuntimeError(f"the restored copy has {rows} rows, not {info['rows']}")
    finally:
        cleanup_restore(configuration=cfg)
        drop_bench_database(target)
    return {
        **info,
        "backup_seconds": backup_seconds,
        "restore_seconds": restore_seconds,
        "phases": record.get("phases"),
        "phase_details": record.get("phase_details"),
        "position_ok": record.get("position_ok"),
        "restore_mb_per_s": round(info["database_bytes"] / 1e6 / restore_seconds, 2),
    }


def measure(name: str, configuration: dict, folder: Path, failovers: int, scale: int) -> dict:
    runs = []
    for i in range(failovers):
        say(f"[{name}] failover {i + 1} of {failovers}")
        runs.append(failover_once(configuration, folder / f"failover-{i + 1}"))
        say(f"[{name}]   {json.dumps(runs[-1])}")
    say(f"[{name}] restore of a pgbench scale-{scale} database")
    restore = restore_once(configuration, folder / "restore", scale)
    say(f"[{name}]   {json.dumps(restore)}")
    return {"failovers": runs, "failover_summary": summarize(runs), "restore": restore}


def summarize(runs: list[dict]) -> dict:
    out = {}
    for key in (
        "writable_seconds",
        "healthy_seconds",
        "client_write_outage_seconds",
        "operator_seconds",
    ):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = {
                "median": round(statistics.median(values), 2),
                "min": round(min(values), 2),
                "max": round(max(values), 2),
            }
    out["lost_writes_total"] = sum(r["lost_writes"] for r in runs)
    return out


def markdown(report: dict) -> str:
    sides = report["targets"]
    names = list(sides)
    lines = ["| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def cell(side: dict, key: str) -> str:
        s = side["failover_summary"].get(key)
        return f"{s['median']} s (min {s['min']}, max {s['max']})" if s else "-"

    n = {name: len(side["failovers"]) for name, side in sides.items()}
    for key, label in (
        ("writable_seconds", "fault → writable primary"),
        ("healthy_seconds", "fault → every instance healthy"),
        ("client_write_outage_seconds", "client write outage"),
        ("operator_seconds", "operator's own failover time"),
    ):
        lines.append(
            f"| {label} (median of {'/'.join(str(n[x]) for x in names)}) | "
            + " | ".join(cell(sides[x], key) for x in names)
            + " |"
        )
    lines.append(
        "| acknowledged writes lost in the failovers | "
        + " | ".join(str(sides[x]["failover_summary"]["lost_writes_total"]) for x in names)
        + " |"
    )
    lines.append(
        "| restore: database size | "
        + " | ".join(f"{sides[x]['restore']['database_bytes'] / 1e6:.0f} MB" for x in names)
        + " |"
    )
    for key, label in (
        ("backup_seconds", "backup (drill's, archive end included)"),
        ("restore_seconds", "restore into restore-test (position proven)"),
        ("restore_mb_per_s", "restore MB/s"),
    ):
        lines.append(
            f"| {label} | " + " | ".join(str(sides[x]["restore"][key]) for x in names) + " |"
        )
    return "\n".join(lines) + f"\n\nPeers: {PEERS}\n"


def main() -> int:
    smoke = bool(os.environ.get("BENCH_SMOKE"))
    failovers = 1 if smoke else int(os.environ.get("BENCH_FAILOVERS", "3"))
    scale = 1 if smoke else int(os.environ.get("BENCH_RESTORE_SCALE", "70"))
    wanted = [t.strip() for t in os.environ.get("BENCH_TARGETS", "lab,sandbox").split(",") if t]
    started = datetime.now(UTC)
    report = {
        "started_at": started.isoformat(),
        "machine": {"cpus": os.cpu_count()},
        "failovers_per_target": failovers,
        "restore_scale": scale,
        "targets": {},
    }
    with tempfile.TemporaryDirectory(prefix="pgdrill-bench-lab-") as tmp:
        tmp = Path(tmp)
        if "lab" in wanted:
            report["targets"]["lab (CNPG 1.30.0)"] = measure(
                "lab", lab_configuration(), tmp / "lab", failovers, scale
            )
        if "sandbox" in wanted:
            from pgdrill.targets.sandbox.target import SandboxTarget

            home = tmp / "sandbox-home"
            sandbox = SandboxTarget(home=home)
            sandbox.up()
            try:
                report["targets"]["sandbox"] = measure(
                    "sandbox",
                    {"pgdrill_target": "sandbox", "sandbox_home": str(home)},
                    tmp / "sandbox",
                    failovers,
                    scale,
                )
            finally:
                sandbox.down()
    report["ended_at"] = datetime.now(UTC).isoformat()
    write_results(report, markdown(report), started, prefix="lab-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
