"""Locust users writing to `pgdrill_ledger`, logging every acknowledged write.

Run only by `pgdrill.load.runner` (as `python -m locust -f this-file --headless ...`), with:

- PGDRILL_LOAD_CONNINFO: a libpq connection string, normally multi-host with
  `target_session_attrs=read-write`, so that after a failover users reconnect to whichever
  instance is now the primary;
- PGDRILL_ACK_LOG: the ack log to append to (see `pgdrill.load.acklog`);
- PGDRILL_LOAD_PARENT_PID (optional): quit when that process is gone, so that a load
  outlives neither the drill that started it nor its `--run-time` safety cap.

Each user has a unique `client_id` and writes `(client_id, seq)` rows with seq = 1, 2, ...
in autocommit mode. A write is logged as acknowledged only after its COMMIT returned. A
write that raised has an unknown outcome (it may have committed before the connection
broke): it is not logged and its seq is never reused, so a row without an ack is possible
but an ack without a committed row is a real lost write.
"""

from __future__ import annotations

import logging
import os
import time
import uuid

# Locust monkey-patches the process with gevent when imported; psycopg must be imported
# after that, so that it picks a gevent-friendly wait function instead of its C one.
import gevent
from locust import User, between, events, task

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgdrill.load.acklog import AckWriter

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


def conninfo() -> dict:
    raw = os.environ.get("PGDRILL_LOAD_CONNINFO")
    if not raw:
        raise RuntimeError("PGDRILL_LOAD_CONNINFO is not set: start the load with "
                           "pgdrill.load.runner.start")
    params = conninfo_to_dict(raw)
    for key, value in CONNECT_DEFAULTS.items():
        params.setdefault(key, value)
    return params


def ack_writer() -> AckWriter:
    global _acks
    if _acks is None:
        path = os.environ.get("PGDRILL_ACK_LOG")
        if not path:
            raise RuntimeError("PGDRILL_ACK_LOG is not set: start the load with "
                               "pgdrill.load.runner.start")
        _acks = AckWriter(path)
    return _acks


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    conninfo()  # fail at start-up, in the log, rather than in every task
    ack_writer()
    parent = os.environ.get("PGDRILL_LOAD_PARENT_PID")
    if parent:
        gevent.spawn(_quit_when_gone, environment, int(parent))


def _quit_when_gone(environment, pid: int) -> None:
    """Stop the test (stats are still written) once the process that started it is gone:
    Locust is its direct child, so its parent pid changes when that process exits."""
    while os.getppid() == pid:
        gevent.sleep(1)
    logging.getLogger(__name__).warning("process %s that started this load is gone: stopping",
                                        pid)
    if environment.runner is not None:
        environment.runner.quit()


class LedgerWriter(User):
    """Writes (weight 3) and reads (weight 1) its own rows of pgdrill_ledger."""

    wait_time = between(0.005, 0.02)

    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.client_id = uuid.uuid4().hex[:16]
        self.seq = 1
        self.conn: psycopg.Connection | None = None
        self.params = conninfo()
        self.acks = ack_writer()

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

    def _report(self, name: str, started: float, exc: BaseException | None) -> None:
        self.environment.events.request.fire(
            request_type="SQL", name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=0, exception=exc, context={"client_id": self.client_id},
        )

    @task(3)
    def write(self) -> None:
        seq, self.seq = self.seq, self.seq + 1  # never reused: a failed write's outcome is unknown
        started = time.perf_counter()
        try:
            self._connection().execute(
                "INSERT INTO pgdrill_ledger (client_id, seq, payload) VALUES (%s, %s, %s)",
                (self.client_id, seq, f"pgdrill load {self.client_id} #{seq}"))
        except psycopg.Error as exc:  # the outcome is unknown: not acknowledged
            self._failed("write", started, exc)
            return
        except Exception as exc:  # not expected: count it, and let Locust log the traceback
            self._drop_connection()
            self._report("write", started, exc)
            raise
        # The COMMIT returned: acknowledged. No gevent switch can happen before the ack is
        # appended (a single write(2)), so a stopped user never loses an ack it received.
        self.acks.ack(self.client_id, seq, time.time())
        self._report("write", started, None)

    @task(1)
    def read(self) -> None:
        started = time.perf_counter()
        try:
            self._connection().execute(
                "SELECT max(seq) FROM pgdrill_ledger WHERE client_id = %s",
                (self.client_id,)).fetchone()
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
