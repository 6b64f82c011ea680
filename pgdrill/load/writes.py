"""One write transaction of the load and its acknowledgement: the accounting rule in one
place, used by the Locust users (`pgdrill/load/locustfile.py`) and tested without Locust.

Importing this does not import Locust or gevent."""

from __future__ import annotations

import time
from collections.abc import Sequence

from pgdrill.load.acklog import AckWriter

LEDGER = "pgdrill_ledger"


class NotAcknowledged(Exception):
    """The transaction committed but did not insert the rows asked for: nothing is claimed."""


def insert_sql(batch: int, table: str = LEDGER) -> str:
    """One INSERT of `batch` rows: in autocommit, a transaction of its own."""
    return f"INSERT INTO {table} (client_id, seq, payload) VALUES " + ", ".join(
        ["(%s, %s, %s)"] * batch
    )


def row_values(client_id: str, seqs: Sequence[int]) -> list:
    values: list = []
    for seq in seqs:
        values += (client_id, seq, f"pgdrill load {client_id} #{seq}")
    return values


def commit_and_ack(
    conn, acks: AckWriter, client_id: str, seqs: Sequence[int], sql: str | None = None
) -> float:
    """Insert the rows `(client_id, seq)` for `seqs` in one transaction on the autocommit
    connection `conn` and, once its COMMIT returned, acknowledge exactly those rows in one
    append to the ack log, with the time it was sent; returns the ack time.

    `execute` returns only after the server's ReadyForQuery, i.e. after the implicit
    transaction committed (with synchronous_commit=on: after its WAL was flushed); an error
    at any point, COMMIT included, raises instead. Whatever it raises propagates and nothing
    is acknowledged: the outcome of that transaction is unknown to the caller, who must
    never reuse its seqs. A row count other than len(seqs) (a rule or trigger on the table)
    raises NotAcknowledged: the transaction committed, but not the rows the ack would claim.
    Nothing between the return of `execute` and the append yields to another greenlet."""
    seqs = list(seqs)
    if not seqs:
        raise ValueError("a write transaction needs at least one row")
    values = row_values(client_id, seqs)
    sent_at = time.time()
    rows = conn.execute(sql or insert_sql(len(seqs)), values).rowcount
    if rows != len(seqs):
        raise NotAcknowledged(f"INSERT of {len(seqs)} rows reported {rows}: not acknowledged")
    acked_at = time.time()
    acks.ack_many(client_id, seqs, acked_at, sent_at)
    return acked_at
