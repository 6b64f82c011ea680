"""The write load: real Locust against the real sandbox, and an ack log that is exact (every
acknowledged write is in the ledger), also across a failover."""

from __future__ import annotations

import json
import os
import socket

import pytest
from chaoslib.exceptions import ActivityFailed

from actions.load import start_load, stop_load
from pgdrill.errors import BadInput, TargetError
from pgdrill.load import runner
from pgdrill.load.acklog import Ack, complete_size, count_acks, read_acks
from pgdrill.runcontext import RUN_DIR_KEY, RunContext
from pgdrill.waiting import poll_until

sandbox_test = pytest.mark.sandbox


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def ledger(sandbox) -> set[tuple[str, int]]:
    with sandbox.connect(sandbox.primary(), "app") as conn:
        return {(c, int(s)) for c, s in conn.execute("SELECT client_id, seq FROM pgdrill_ledger")}


# -- the ack log (pure) ------------------------------------------------------------------
def test_read_acks_skips_blanks_and_a_truncated_last_line(tmp_path):
    log = tmp_path / "acks.csv"
    log.write_text("a1,1,1700000000.5\n\na1,2,1700000001.25\nb2,1,1700000001.5\nb2,2,17000")
    assert read_acks(log) == [Ack("a1", 1, 1700000000.5), Ack("a1", 2, 1700000001.25),
                              Ack("b2", 1, 1700000001.5)]
    assert count_acks(log) == 4  # newlines, the blank one included


def test_read_acks_from_an_offset_and_of_an_empty_log(tmp_path):
    log = tmp_path / "acks.csv"
    log.write_text("")
    assert read_acks(log) == []
    log.write_text("a,1,1.0\nb,1,2.0\n")
    assert read_acks(log, start=len("a,1,1.0\n")) == [Ack("b", 1, 2.0)]


def test_read_acks_rejects_what_is_not_an_ack_log(tmp_path):
    with pytest.raises(BadInput, match="no ack log"):
        read_acks(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,1,1.0\nnot an ack\nb,1,2.0\n")
    with pytest.raises(BadInput, match=r"bad.csv:2"):
        read_acks(bad)


def test_complete_size_cuts_a_truncated_line_so_new_acks_are_not_glued_to_it(tmp_path):
    log = tmp_path / "acks.csv"
    assert complete_size(log) == 0
    log.write_text("a,1,1.0\nb,1,2.")
    assert complete_size(log) == len("a,1,1.0\n")
    with open(log, "a") as f:
        f.write("c,1,3.0\n")
    assert read_acks(log) == [Ack("a", 1, 1.0), Ack("c", 1, 3.0)]


# -- statistics and the handle (pure) ----------------------------------------------------
def test_stats_from_locust_json_aggregate_like_locusts_aggregated_row():
    # as Locust writes them: response-time buckets keyed by strings in JSON
    entries = [
        {"name": "write", "num_requests": 10, "num_failures": 1,
         "response_times": {"1": 8, "2": 1, "10": 1}},
        {"name": "read", "num_requests": 10, "num_failures": 0, "response_times": {"1": 10}},
    ]
    stats = runner.stats_from_json(json.loads(json.dumps(entries)))
    assert stats == {"requests": 20, "failures": 1,
                     "latency_ms": {"p50": 1, "p95": 10, "p99": 10}}
    assert runner.stats_from_json([])["latency_ms"] == {"p50": None, "p95": None, "p99": None}


def test_stats_from_the_csv_aggregated_row(tmp_path):
    path = tmp_path / "locust_stats.csv"
    path.write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,50%,95%,99%\n"
        "SQL,write,90,3,1,1,4,9\n,Aggregated,120,4,1,1,5,11\n")
    assert runner.stats_from_csv_row(runner.aggregated_row(path)) == {
        "requests": 120, "failures": 4, "latency_ms": {"p50": 1.0, "p95": 5.0, "p99": 11.0}}


def test_load_handle_round_trips_through_json(tmp_path):
    handle = runner.LoadHandle(
        pid=123, started_at=1.5, run_dir=str(tmp_path), ack_log=str(tmp_path / "acks.csv"),
        ack_offset=0, locust_log="l", csv_prefix="c", json_file="j.json", users=4,
        spawn_rate=4.0, run_time=3600.0, proc_start="42")
    assert runner.LoadHandle.from_dict(json.loads(json.dumps(handle.to_dict()))) == handle
    with pytest.raises(BadInput, match="missing"):
        runner.LoadHandle.from_dict({"pid": 1})


def test_multi_host_conninfo_demands_a_writable_instance():
    info = runner.conninfo_for([("10.0.0.1", 5432), ("10.0.0.2", 5433)], "app", "postgres")
    assert "host=10.0.0.1,10.0.0.2 port=5432,5433" in info
    assert "target_session_attrs=read-write" in info


def test_stop_load_without_a_load_returns_nothing(tmp_path):
    assert stop_load(configuration={RUN_DIR_KEY: str(tmp_path)}) == {}


# -- real Locust -------------------------------------------------------------------------
def test_start_fails_fast_naming_the_log_when_nothing_is_acknowledged(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conninfo = f"host=127.0.0.1 port={port} dbname=app user=postgres connect_timeout=1"
    with pytest.raises(TargetError) as caught:
        runner.start(conninfo, tmp_path, users=2, spawn_rate=2, start_timeout=4)
    assert str(tmp_path / "locust.log") in str(caught.value)
    assert "Connection refused" in str(caught.value) or "connection" in str(caught.value)
    assert not runner._CHILDREN, "Locust was left running"


def test_start_reports_a_locust_that_dies(tmp_path):
    with pytest.raises(TargetError, match="Locust exited") as caught:
        runner.start("host=127.0.0.1 this is not a conninfo", tmp_path, start_timeout=30)
    assert str(tmp_path / "locust.log") in str(caught.value)


@sandbox_test
def test_every_acknowledged_write_is_in_the_ledger(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    sandbox.wait_ready(timeout=180)
    started = start_load(users=4, spawn_rate=4, configuration=cfg)
    try:
        assert started["users"] == 4 and started["ack_log"] == str(tmp_path / "acks.csv")
        assert count_acks(tmp_path / "acks.csv") >= 1  # start_load waited for the first ack
        poll_until(lambda: count_acks(tmp_path / "acks.csv") >= 300, timeout=60,
                   what="300 acknowledged writes")
        with pytest.raises(ActivityFailed, match="already runs"):
            start_load(configuration=cfg)
    finally:
        summary = stop_load(configuration=cfg)

    assert gone(started["pid"]), "Locust still runs after stop_load"
    acks = read_acks(tmp_path / "acks.csv")
    assert summary["writes_acknowledged"] == len(acks) >= 300
    assert summary["requests"] > summary["writes_acknowledged"]  # reads are requests too
    assert summary["failures"] == 0
    lat = summary["latency_ms"]
    assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"]
    assert summary["writes_per_second"] > 0 and summary["users"] == 4
    assert summary["duration_seconds"] > 0
    assert summary["stats_source"] == "locust json"
    assert len({(a.client_id, a.seq) for a in acks}) == len(acks)
    missing = {(a.client_id, a.seq) for a in acks} - ledger(sandbox)
    assert not missing, f"acknowledged writes missing from the ledger: {sorted(missing)[:5]}"

    context = RunContext(tmp_path).read()
    assert context["load_summary"] == summary
    assert stop_load(configuration=cfg) == {}  # e.g. again in the rollbacks


@sandbox_test
def test_a_load_with_a_duration_stops_by_itself(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    sandbox.wait_ready(timeout=180)
    started = start_load(users=2, spawn_rate=2, duration=2, configuration=cfg)
    handle = runner.LoadHandle.from_dict(RunContext(tmp_path).read()["load"])
    poll_until(lambda: not runner.running(handle), timeout=30,
               what="Locust to stop after its duration")
    summary = stop_load(configuration=cfg)
    assert gone(started["pid"])
    assert summary["writes_acknowledged"] == len(read_acks(tmp_path / "acks.csv")) > 0
    assert summary["stats_source"] == "locust json"
    assert 1.5 <= summary["duration_seconds"] <= 15


@sandbox_test
def test_the_load_follows_the_primary_through_a_failover(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    log = tmp_path / "acks.csv"
    sandbox.wait_ready(timeout=180)
    old_primary = sandbox.primary().name
    started = start_load(users=4, spawn_rate=4, configuration=cfg)
    try:
        poll_until(lambda: count_acks(log) >= 100, timeout=60, what="100 acknowledged writes")
        sandbox.kill_primary()
        healed = sandbox.wait_ready(timeout=180)
        assert healed.primary != old_primary
        after_heal = count_acks(log)
        poll_until(lambda: count_acks(log) >= after_heal + 200, timeout=60,
                   what="200 acknowledged writes on the new primary")
    finally:
        summary = stop_load(configuration=cfg)
    assert gone(started["pid"])
    assert summary["writes_acknowledged"] == len(read_acks(log)) >= after_heal + 200
    # the failover breaks the users' connections: the load must notice (measured 4-8)
    assert summary["requests"] > 0 and summary["failures"] >= 1
    # the writes acknowledged after the failover are on the new primary (writes acknowledged
    # just before it may be lost by asynchronous replication: that is what drills measure)
    recent = {(a.client_id, a.seq) for a in read_acks(log)[after_heal:]}
    assert recent <= ledger(sandbox)
