"""Locust users writing to `pgdrill_ledger`, logging every acknowledged write.

Run only by `pgdrill.load.runner` (as `python -m locust -f this-file --headless ...`), with:

- PGDRILL_LOAD_CONNINFO: a libpq connection string, normally multi-host with
  `target_session_attrs=read-write`, so that after a failover users reconnect to whichever
  instance is now the primary;
- PGDRILL_ACK_LOG: the ack log to append to (see `pgdrill.load.acklog`);
- PGDRILL_LOAD_BATCH: rows per transaction (default 1);
- PGDRILL_LOAD_INTERVAL: seconds from one transaction of a user to its next (default 0: back
  to back); the runner derives it from the load's target rate (`pgdrill.load.pacing`);
- PGDRILL_LOAD_PARENT_PID (optional): quit when that process is gone, so that a load
  outlives neither the drill that started it nor its `--run-time` safety cap.

Each user has a unique `client_id` and writes `(client_id, seq)` rows with seq = 1, 2, ...,
`batch` rows per transaction: one multi-row INSERT in autocommit, so the rows commit
together or not at all. They are logged as acknowledged, all in one append, only after that
COMMIT returned and reported as many rows as were asked (`pgdrill.load.writes`: the rule in
one place). A transaction that raised has an unknown outcome (it may have committed before
the connection broke): it is not logged and its seqs are never reused, so a row without an
ack is possible but an ack without a committed row is a real lost write. Between the COMMIT
returning and the ack being appended nothing yields to gevent, so a user stopped by Locust
either logged the ack of a transaction or never saw its COMMIT return. Users start their
transactions on a schedule (`pgdrill.load.pacing.Pacer`) and read their own rows back every
READ_EVERY transactions.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid

# Locust monkey-patches the process with gevent when imported; psycopg must be imported
# after that, so that it picks a gevent-friendly wait function instead of its C one.
import gevent
import psycopg
from locust import User, events, task
from locust.exception import StopUser
from psycopg.conninfo import conninfo_to_dict

from pgdrill.load.acklog import AckLogBroken, AckWriter
from pgdrill.load.pacing import READ_EVERY, Pacer
from pgdrill.load.writes import NotAcknowledged, commit_and_ack, insert_sql

RETRY_PAUSE = 0.2  # seconds to back off after an error, before reconnecting
# Defaults unless the connection string says otherwise: notice a dead peer within seconds
# even when its TCP connection was not reset (a partitioned or vanished pod).
CONNECT_DEFAULTS = {
    "connect_timeout": "2",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "2",
    "tcp_user_timeout": "10000",
    "application_name": "pgdrill-load",
}

_acks: AckWriter | None = None
_stopping = False  # the load is stopping: start no new transaction


def conninfo() -> dict:
    raw = os.environ.get("PGDRILL_LOAD_CONNINFO")
    if not raw:
        raise RuntimeError(
            "PGDRILL_LOAD_CONNINFO is not set: start the load with pgdrill.load.runner.start"
        )
    params = conninfo_to_dict(raw)
    for key, value in CONNECT_DEFAULTS.items():
        params.setdefault(key, value)
    return params


def setting(name: str, default: str, kind):
    raw = os.environ.get(name) or default
    try:
        value = kind(raw)
    except ValueError:
        raise RuntimeError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if value < 0:
        raise RuntimeError(f"{name}={raw!r} must not be negative")
    return value


def batch_size() -> int:
    return max(1, setting("PGDRILL_LOAD_BATCH", "1", int))


def pace_interval() -> float:
    return setting("PGDRILL_LOAD_INTERVAL", "0", float)


def ack_writer() -> AckWriter:
    global _acks
    if _acks is None:
        path = os.environ.get("PGDRILL_ACK_LOG")
        if not path:
            raise RuntimeError(
                "PGDRILL_ACK_LOG is not set: start the load with pgdrill.load.runner.start"
            )
        _acks = AckWriter(path)
    return _acks


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    conninfo()  # fail at start-up, in the log, rather than in every task
    batch_size()
    pace_interval()
    ack_writer()
    parent = os.environ.get("PGDRILL_LOAD_PARENT_PID")
    if parent:
        gevent.spawn(_quit_when_gone, environment, int(parent))


@events.test_stopping.add_listener
def _on_test_stopping(**_kwargs) -> None:
    """Locust is about to stop the users: those sleeping are killed, those in a transaction
    may finish it (`--stop-timeout`). A user whose sleep ends in between must not start a
    transaction, or the kill (asynchronous) would interrupt it while waiting for its COMMIT,
    leaving a committed row without an ack."""
    global _stopping
    _stopping = True


def _quit_when_gone(environment, pid: int) -> None:
    """Stop the test (stats are still written) once the process that started it is gone:
    Locust is its direct child, so its parent pid changes when that process exits."""
    while os.getppid() == pid:
        gevent.sleep(1)
    logging.getLogger(__name__).warning("process %s that started this load is gone: stopping", pid)
    if environment.runner is not None:
        environment.runner.quit()


class LedgerWriter(User):
    """Commits `batch` new rows of its own per transaction on its pacer's schedule, and
    reads its rows back every READ_EVERY transactions."""

    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.client_id = uuid.uuid4().hex[:16]
        self.seq = 1
        self.batch = batch_size()
        self.insert = insert_sql(self.batch)
        self.pacer = Pacer(pace_interval(), phase=random.random())
        self.transactions = 0
        self.conn: psycopg.Connection | None = None
        self.params = conninfo()
        self.acks = ack_writer()

    def wait_time(self) -> float:
        return self.pacer.wait(time.monotonic())

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(autocommit=True, **self.params)
        return self.conn

    def _drop_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _report(self, name: str, started: float, exc: BaseException | None, rows: int = 0) -> None:
        self.environment.events.request.fire(
            request_type="SQL",
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=rows,
            exception=exc,
            context={"client_id": self.client_id},
        )

    @task
    def cycle(self) -> None:
        if _stopping:
            raise StopUser()
        if self.write():
            self.transactions += 1
            if self.transactions % READ_EVERY == 0 and not _stopping:
                self.read()

    def write(self) -> bool:
        """One transaction of `batch` new rows; True once it is acknowledged."""
        first = self.seq
        self.seq += self.batch  # never reused: a failed write's outcome is unknown
        started = time.perf_counter()
        try:
            commit_and_ack(
                self._connection(),
                self.acks,
                self.client_id,
                range(first, first + self.batch),
                self.insert,
            )
        except psycopg.Error as exc:  # the outcome is unknown: not acknowledged
            self._failed("write", started, exc)
            return False
        except NotAcknowledged as exc:  # committed, but not what an ack would claim
            self._report("write", started, exc)
            return False
        except AckLogBroken as exc:  # committed, but acks can no longer be recorded: stop
            self._report("write", started, exc)
            logging.getLogger(__name__).error("%s: stopping the load", exc)
            if self.environment.runner is not None:
                gevent.spawn(self.environment.runner.quit)
            raise
        except Exception as exc:  # not expected: count it, and let Locust log the traceback
            self._drop_connection()
            self._report("write", started, exc)
            raise
        self._report("write", started, None, self.batch)
        return True

    def read(self) -> None:
        started = time.perf_counter()
        try:
            self._connection().execute(
                "SELECT max(seq) FROM pgdrill_ledger WHERE client_id = %s", (self.client_id,)
            ).fetchone()
        except psycopg.Error as exc:
            self._failed("read", started, exc)
            return
        except Exception as exc:
            self._drop_connection()
            self._report("read", started, exc)
            raise
        self._report("read", started, None)

    def _failed(self, name: str, started: float, exc: psycopg.Error) -> None:
        """Expected during faults: drop the connection, count the failure, back off; the
        next task reconnects (to the new primary, thanks to target_session_attrs)."""
        self._drop_connection()
        self._report(name, started, exc)
        gevent.sleep(RETRY_PAUSE)

    def on_stop(self) -> None:
        self._drop_connection()
