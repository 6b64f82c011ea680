"""How fast the load writes: a target rate of acknowledged writes for the whole load, split
over its users, each committing `batch` rows per transaction on a fixed schedule. Pure.

Why paced and not "as fast as it goes": on the 2-core machines drills run on, an unpaced load
of 4 users commits 2,000-3,600 single-row transactions/s (sandbox, synchronous_commit on) and
takes about a whole core between Locust and PostgreSQL, starving the drill it is supposed to
accompany (backups, restores, WAL replay). Paced at the default 400 rows/s in transactions of
4 rows it costs ~5% of a core in Locust and ~4% in PostgreSQL, and holds 400/s through a
backup-restore or pvc-loss drill (no second below 300). The old load (think times of 5-20 ms
between requests, one row per transaction) could not exceed ~200 writes/s with 4 users.

Why a schedule and not Locust's `constant_throughput`: the latter only waits less after a
slow transaction, so every stall (a checkpoint, a busy CPU) is lost rate. `Pacer` keeps each
user on its schedule and catches up on a delay shorter than `max_lag`; behind by more (a
failover: seconds without a primary) it starts a new schedule instead, so a load coming back
after an outage does not burst."""

from __future__ import annotations

from dataclasses import dataclass

from pgdrill.core.errors import BadInput

DEFAULT_USERS = 4
DEFAULT_RATE = 400.0  # acknowledged writes (rows) per second, the whole load
DEFAULT_BATCH = 4  # rows per transaction
MAX_BATCH = 1000
READ_EVERY = 3  # each user reads its own rows once every this many write transactions
MAX_LAG = 1.0  # seconds behind schedule a user still catches up on


@dataclass(frozen=True)
class LoadPlan:
    """`rate`: acknowledged writes (rows) per second wanted from the whole load; None: no
    pacing, every user commits back to back (benchmarks of the ceiling only). `batch`: rows
    per transaction, all acknowledged together when its COMMIT returned."""

    users: int = DEFAULT_USERS
    rate: float | None = DEFAULT_RATE
    batch: int = DEFAULT_BATCH

    def __post_init__(self) -> None:
        if int(self.users) != self.users or self.users < 1:
            raise BadInput(f"users ({self.users}) must be a whole number of at least 1")
        if int(self.batch) != self.batch or not 1 <= self.batch <= MAX_BATCH:
            raise BadInput(
                f"batch ({self.batch}) must be a whole number of rows per transaction "
                f"from 1 to {MAX_BATCH}"
            )
        if self.rate is not None and not float(self.rate) > 0:
            raise BadInput(
                f"rate ({self.rate}) must be a positive number of writes per second, "
                "or None for an unpaced load"
            )

    @property
    def interval(self) -> float:
        """Seconds from one transaction of a user to its next (0: unpaced)."""
        if self.rate is None:
            return 0.0
        return self.users * self.batch / float(self.rate)


class Pacer:
    """One user's schedule: start a transaction every `interval` seconds. `wait(now)` is
    called after each one and returns how long to sleep before the next. `phase` (0 to 1)
    shifts the schedule by that fraction of an interval, so that users started together do
    not all commit at the same instants."""

    def __init__(self, interval: float, phase: float = 0.0, max_lag: float = MAX_LAG) -> None:
        self.interval = max(0.0, float(interval))
        self.phase = min(max(float(phase), 0.0), 1.0)
        self.max_lag = max_lag
        self.due: float | None = None  # when the next transaction should start

    def wait(self, now: float) -> float:
        if self.interval == 0.0:
            return 0.0
        if self.due is None:
            self.due = now + self.phase * self.interval
        else:
            self.due += self.interval
            if now - self.due > self.max_lag:
                self.due = now  # too far behind to catch up (an outage): a new schedule
        return max(0.0, self.due - now)
