"""The write load: real Locust against the real sandbox, and an ack log that is exact (every
acknowledged write is in the ledger, a transaction that failed is not acknowledged), also
across a failover; its pacing, and the measurement `make bench` uses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest
from chaoslib.exceptions import ActivityFailed

from actions.load import start_load, stop_load
from pgdrill.core.errors import BadInput, TargetError
from pgdrill.core.waiting import poll_until
from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext
from pgdrill.load import runner
from pgdrill.load.acklog import (
    Ack,
    AckLogBroken,
    AckWriter,
    complete_size,
    count_acks,
    read_acks,
)
from pgdrill.load.bench import measure_load, slowest_second
from pgdrill.load.pacing import LoadPlan, Pacer
from pgdrill.load.writes import NotAcknowledged, commit_and_ack, insert_sql
from pgdrill.pg.conninfo import conninfo_for

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
    assert read_acks(log) == [
        Ack("a1", 1, 1700000000.5),
        Ack("a1", 2, 1700000001.25),
        Ack("b2", 1, 1700000001.5),
    ]
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


def test_a_transaction_is_acknowledged_by_all_its_rows_in_one_append(tmp_path, monkeypatch):
    log = tmp_path / "acks.csv"
    writer = AckWriter(log)
    appends = []
    real_write = os.write
    monkeypatch.setattr(
        "pgdrill.load.acklog.os.write",
        lambda fd, data: appends.append(bytes(data)) or real_write(fd, data),
    )
    writer.ack_many("c1", range(5, 9), 1700000000.25)
    writer.ack("c1", 9, 1700000001.5)
    assert len(appends) == 2
    assert read_acks(log) == [Ack("c1", s, 1700000000.25) for s in range(5, 9)] + [
        Ack("c1", 9, 1700000001.5)
    ]


def test_a_short_write_is_completed_not_left_torn(tmp_path, monkeypatch):
    log = tmp_path / "acks.csv"
    writer = AckWriter(log)
    real_write = os.write
    monkeypatch.setattr(
        "pgdrill.load.acklog.os.write", lambda fd, data: real_write(fd, bytes(data[:3]))
    )  # 3 bytes at a time
    writer.ack_many("c1", [1, 2], 1.5)
    writer.ack("c2", 1, 2.5)
    assert read_acks(log) == [Ack("c1", 1, 1.5), Ack("c1", 2, 1.5), Ack("c2", 1, 2.5)]


def test_after_a_failed_append_the_log_claims_nothing_more(tmp_path, monkeypatch):
    log = tmp_path / "acks.csv"
    writer = AckWriter(log)
    writer.ack("c1", 1, 1.0)
    real_write = os.write
    calls = []

    def torn_then_full(fd, data):
        calls.append(1)
        if len(calls) == 1:
            return real_write(fd, bytes(data[:5]))  # part of the first line, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pgdrill.load.acklog.os.write", torn_then_full)
    with pytest.raises(AckLogBroken, match="No space left"):
        writer.ack_many("c1", [2, 3], 2.0)
    monkeypatch.setattr("pgdrill.load.acklog.os.write", real_write)  # space again
    with pytest.raises(AckLogBroken, match="broken"):
        writer.ack("c1", 4, 3.0)  # would glue a whole line to the torn one
    assert read_acks(log) == [Ack("c1", 1, 1.0)]  # the torn line is not trusted


class FakeConnection:
    """Stands in for an autocommit psycopg connection: `execute` returns a cursor with a
    rowcount, or raises what it is told to."""

    def __init__(self, rowcount=None, error: Exception | None = None):
        self.rowcount, self.error, self.executed = rowcount, error, []

    def execute(self, sql, params):
        self.executed.append((sql, list(params)))
        if self.error is not None:
            raise self.error
        rows = self.rowcount if self.rowcount is not None else len(params) // 3
        return type("Cursor", (), {"rowcount": rows})()


def test_commit_and_ack_acknowledges_exactly_the_rows_of_the_committed_insert(tmp_path):
    writer = AckWriter(tmp_path / "acks.csv")
    conn = FakeConnection()
    acked_at = commit_and_ack(conn, writer, "c1", range(1, 4))
    sql, params = conn.executed[0]
    assert sql == insert_sql(3) and sql.count("(%s, %s, %s)") == 3
    assert params[:3] == ["c1", 1, "pgdrill load c1 #1"] and len(params) == 9
    acks = read_acks(tmp_path / "acks.csv")
    assert [(a.client_id, a.seq, a.acked_at) for a in acks] == [
        ("c1", s, round(acked_at, 6)) for s in (1, 2, 3)
    ]
    # sent before it was acknowledged, one time for the whole transaction
    assert len({a.sent_at for a in acks}) == 1 and acks[0].sent_at <= acks[0].acked_at


def test_ack_lines_with_and_without_the_sent_time_both_read(tmp_path):
    log = tmp_path / "acks.csv"
    log.write_text("old,1,10.500000\nnew,1,12.250000,12.000000\n")
    assert read_acks(log) == [Ack("old", 1, 10.5), Ack("new", 1, 12.25, 12.0)]
    log.write_text("x,1,2,3,4\n")
    with pytest.raises(BadInput, match="not an ack line"):
        read_acks(log)
    with pytest.raises(ValueError, match="no comma"):
        AckWriter(tmp_path / "b.csv").ack("a,b", 1)


def test_a_failed_or_short_transaction_is_not_acknowledged(tmp_path):
    import psycopg

    writer = AckWriter(tmp_path / "acks.csv")
    with pytest.raises(psycopg.OperationalError):  # e.g. the connection broke: outcome unknown
        commit_and_ack(
            FakeConnection(error=psycopg.OperationalError("server closed")), writer, "c1", [1, 2]
        )
    with pytest.raises(NotAcknowledged, match="reported 1"):  # committed, but not all rows
        commit_and_ack(FakeConnection(rowcount=1), writer, "c1", [3, 4])
    with pytest.raises(ValueError):
        commit_and_ack(FakeConnection(), writer, "c1", [])
    assert read_acks(tmp_path / "acks.csv") == []


# -- pacing (pure) -----------------------------------------------------------------------
def test_the_plan_splits_the_rate_over_users_and_batches():
    assert LoadPlan(users=4, rate=400, batch=4).interval == pytest.approx(0.04)
    assert LoadPlan(users=1, rate=None, batch=1).interval == 0.0
    for bad in ({"users": 0}, {"batch": 0}, {"batch": 100_000}, {"rate": 0}, {"rate": -5}):
        with pytest.raises(BadInput):
            LoadPlan(**bad)


def test_a_user_keeps_its_schedule_and_catches_up_a_short_delay():
    pacer = Pacer(0.1, phase=0.5)
    assert pacer.wait(10.0) == pytest.approx(0.05)  # half an interval in, then every 0.1 s
    assert pacer.wait(10.06) == pytest.approx(0.09)  # due 10.15
    assert pacer.wait(10.40) == 0.0  # 0.15 s late (due 10.25): start at once
    assert pacer.wait(10.41) == 0.0  # due 10.35: still behind
    assert pacer.wait(10.42) == pytest.approx(0.03)  # due 10.45: back on schedule
    assert Pacer(0.0).wait(1.0) == 0.0  # unpaced


def test_after_an_outage_a_user_starts_a_new_schedule_instead_of_bursting():
    pacer = Pacer(0.1)
    pacer.wait(10.0)  # due 10.1
    assert pacer.wait(15.0) == 0.0  # 5 s without a primary: go now...
    assert pacer.wait(15.01) == pytest.approx(0.09)  # ...and every 0.1 s from there, no backlog


def test_the_slowest_complete_second_of_the_acks():
    acks = [Ack("c", i, t) for i, t in enumerate((100.0, 100.2, 100.5, 101.1, 101.9, 102.3))]
    assert slowest_second(acks) == 2  # [100, 101): 3, [101, 102): 2; [102, 102.3) incomplete
    assert slowest_second(acks[:3]) is None  # shorter than a second
    assert slowest_second([]) is None


# -- statistics and the handle (pure) ----------------------------------------------------
def test_stats_from_locust_json_aggregate_like_locusts_aggregated_row():
    # as Locust writes them: response-time buckets keyed by strings in JSON
    entries = [
        {
            "name": "write",
            "num_requests": 10,
            "num_failures": 1,
            "response_times": {"1": 8, "2": 1, "10": 1},
        },
        {"name": "read", "num_requests": 10, "num_failures": 0, "response_times": {"1": 10}},
    ]
    stats = runner.stats_from_json(json.loads(json.dumps(entries)))
    assert stats == {"requests": 20, "failures": 1, "latency_ms": {"p50": 1, "p95": 10, "p99": 10}}
    assert runner.stats_from_json([])["latency_ms"] == {"p50": None, "p95": None, "p99": None}


def test_stats_from_the_csv_aggregated_row(tmp_path):
    path = tmp_path / "locust_stats.csv"
    path.write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,50%,95%,99%\n"
        "SQL,write,90,3,1,1,4,9\n,Aggregated,120,4,1,1,5,11\n"
    )
    assert runner.stats_from_csv_row(runner.aggregated_row(path)) == {
        "requests": 120,
        "failures": 4,
        "latency_ms": {"p50": 1.0, "p95": 5.0, "p99": 11.0},
    }


def test_load_handle_round_trips_through_json(tmp_path):
    handle = runner.LoadHandle(
        pid=123,
        started_at=1.5,
        run_dir=str(tmp_path),
        ack_log=str(tmp_path / "acks.csv"),
        ack_offset=0,
        locust_log="l",
        csv_prefix="c",
        json_file="j.json",
        users=4,
        spawn_rate=4.0,
        run_time=3600.0,
        proc_start="42",
        rate=400.0,
        batch=4,
    )
    assert runner.LoadHandle.from_dict(json.loads(json.dumps(handle.to_dict()))) == handle
    with pytest.raises(BadInput, match="missing"):
        runner.LoadHandle.from_dict({"pid": 1})
    # a handle recorded before loads were paced (a stale run's context) still reads
    old = {k: v for k, v in handle.to_dict().items() if k not in ("rate", "batch")}
    assert runner.LoadHandle.from_dict(old).batch == 1


def test_the_summary_of_a_finished_load(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (tmp_path / "acks.csv").write_text(
        "c1,1,100.0\nc1,2,100.0\nc2,1,100.5\nc2,2,100.5\nc1,3,102.0\nc1,4,102.0\n"
    )
    (tmp_path / "locust_final.json").write_text(
        json.dumps(
            [
                {
                    "name": "write",
                    "num_requests": 4,
                    "num_failures": 1,
                    "response_times": {"2": 2, "9": 1, "30": 1},
                },
                {"name": "read", "num_requests": 2, "num_failures": 0, "response_times": {"1": 2}},
            ]
        )
    )
    handle = runner.LoadHandle(
        pid=int(dead.stdout),
        started_at=99.0,
        run_dir=str(tmp_path),
        ack_log=str(tmp_path / "acks.csv"),
        ack_offset=0,
        locust_log=str(tmp_path / "l"),
        csv_prefix=str(tmp_path / "locust"),
        json_file=str(tmp_path / "locust_final.json"),
        users=2,
        spawn_rate=2.0,
        run_time=60.0,
        proc_start="not this process",
        rate=3.0,
        batch=2,
    )
    summary = runner.stop(handle)
    assert summary["writes_acknowledged"] == 6 and summary["writes_per_second"] == 3.0
    assert (summary["requests"], summary["failures"]) == (6, 1)
    assert summary["latency_ms"] == {"p50": 2, "p95": 30, "p99": 30}  # reads and writes
    assert summary["write_latency_ms"] == {"p50": 9, "p95": 30, "p99": 30}  # writes only
    assert (summary["target_writes_per_second"], summary["rows_per_transaction"]) == (3.0, 2)


def test_start_refuses_a_bad_rate_or_batch_before_starting_anything(tmp_path):
    for bad in ({"rate": 0}, {"batch": 0}, {"users": 0}):
        with pytest.raises(BadInput):
            runner.start("host=127.0.0.1", tmp_path, **bad)
    assert not (tmp_path / "locust.log").exists()


def test_multi_host_conninfo_demands_a_writable_instance():
    info = conninfo_for([("10.0.0.1", 5432), ("10.0.0.2", 5433)], "app", "postgres")
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
        assert (started["rate"], started["batch"]) == (400.0, 4)  # the defaults
        assert count_acks(tmp_path / "acks.csv") >= 1  # start_load waited for the first ack
        poll_until(
            lambda: count_acks(tmp_path / "acks.csv") >= 300,
            timeout=60,
            what="300 acknowledged writes",
        )
        with pytest.raises(ActivityFailed, match="already runs"):
            start_load(configuration=cfg)
    finally:
        summary = stop_load(configuration=cfg)

    assert gone(started["pid"]), "Locust still runs after stop_load"
    acks = read_acks(tmp_path / "acks.csv")
    assert summary["writes_acknowledged"] == len(acks) >= 300
    assert summary["rows_per_transaction"] == 4 and len(acks) % 4 == 0
    assert summary["requests"] > len(acks) // 4  # a request per transaction; reads too
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
    poll_until(
        lambda: not runner.running(handle), timeout=30, what="Locust to stop after its duration"
    )
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
        poll_until(
            lambda: count_acks(log) >= after_heal + 200,
            timeout=60,
            what="200 acknowledged writes on the new primary",
        )
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


@sandbox_test
def test_a_transaction_that_fails_is_not_acknowledged_and_no_ack_lacks_its_row(sandbox, tmp_path):
    """Against real PostgreSQL, on a scratch copy of the ledger: a batch refused at COMMIT (a
    deferred constraint trigger), a batch refused by the primary key, and a batch a rule cut
    short are not acknowledged; every acknowledged row is there."""
    import psycopg

    table = f"pgdrill_ledger_test_{uuid.uuid4().hex[:8]}"
    writer = AckWriter(tmp_path / "acks.csv")
    sandbox.wait_ready(timeout=180)
    with sandbox.connect(sandbox.primary(), "app") as conn:
        conn.execute(runner.LEDGER_DDL.replace("pgdrill_ledger", table))
        try:
            conn.execute(f"""
                CREATE FUNCTION {table}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF NEW.seq = 6 THEN RAISE EXCEPTION 'refused at commit'; END IF;
                  RETURN NULL;
                END $$;
                CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON {table}
                  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_refuse();
                CREATE RULE skip_high AS ON INSERT TO {table} WHERE NEW.seq > 100
                  DO INSTEAD NOTHING;""")

            def write(seqs):
                return commit_and_ack(conn, writer, "c1", seqs, insert_sql(len(seqs), table))

            write([1, 2, 3, 4])
            with pytest.raises(psycopg.errors.RaiseException, match="refused at commit"):
                write([5, 6, 7, 8])  # the INSERT ran; its COMMIT failed
            with pytest.raises(psycopg.errors.UniqueViolation):
                write([4, 9])  # one row taken: neither is written
            with pytest.raises(NotAcknowledged):
                write([99, 100, 101, 102])  # two rows committed, two skipped by the rule
            write([10, 11])
            rows = {(c, int(s)) for c, s in conn.execute(f"SELECT client_id, seq FROM {table}")}
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}; DROP FUNCTION IF EXISTS {table}_refuse()")
    acked = {(a.client_id, a.seq) for a in read_acks(tmp_path / "acks.csv")}
    assert acked == {("c1", s) for s in (1, 2, 3, 4, 10, 11)}
    assert acked <= rows
    assert rows - acked == {("c1", 99), ("c1", 100)}  # committed, never claimed


@sandbox_test
def test_measure_load_counts_no_lost_write_against_the_source(sandbox, tmp_path):
    """What `make bench` runs: the drill's load, then ground truth from the source primary.
    Throughput is reported, not asserted here."""
    sandbox.wait_ready(timeout=180)
    result = measure_load(sandbox, seconds=3, run_dir=tmp_path / "run")
    assert result["lost_write_count_error"] == 0 and result["lost_examples"] == []
    assert result["unacknowledged_rows"] == 0  # a clean stop leaves no transaction in doubt
    assert result["acknowledged_writes"] > 0 and result["failures"] == 0
    assert (result["users"], result["rows_per_transaction"]) == (4, 4)
    assert result["acknowledged_writes"] == 4 * result["transactions_acknowledged"]
    assert result["acked_writes_per_second"] > 0 and result["latency_ms"]["p50"] is not None
    assert result["synchronous_commit"] == "on"
    acks = read_acks(tmp_path / "run" / "acks.csv")
    by_transaction: dict = {}
    for ack in acks:
        by_transaction.setdefault((ack.client_id, ack.acked_at), []).append(ack.seq)
    for seqs in by_transaction.values():  # an ack covers exactly one transaction's 4 rows
        assert seqs == list(range(seqs[0], seqs[0] + 4))

    # the same through a bare connection string, unpaced, one row per transaction
    conninfo = sandbox.load_connection("app").conninfo
    bare = measure_load(conninfo, seconds=2, rate=None, batch=1)
    assert bare["lost_write_count_error"] == 0 and bare["acknowledged_writes"] > 0
    assert bare["run_dir"] is None and bare["target_writes_per_second"] is None


@sandbox_test
def test_a_load_stops_when_the_process_that_started_it_is_gone(sandbox, tmp_path):
    sandbox.wait_ready(timeout=180)
    script = (
        "import sys; from pathlib import Path; from pgdrill.load import runner; "
        "h = runner.start(sys.argv[1], Path(sys.argv[2])); print(h.pid)"
    )
    parent = subprocess.run(
        [sys.executable, "-c", script, sandbox.load_connection("app").conninfo, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert parent.returncode == 0, parent.stderr
    pid = int(parent.stdout.split()[-1])
    poll_until(lambda: gone(pid), timeout=60, what="the orphaned load to stop")
    assert "that started this load is gone" in (tmp_path / "locust.log").read_text()
    assert (tmp_path / "locust_final.json").exists()  # a clean stop: statistics written
    missing = {(a.client_id, a.seq) for a in read_acks(tmp_path / "acks.csv")} - ledger(sandbox)
    assert not missing
