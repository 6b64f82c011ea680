"""Progress output for long steps. Goes to stderr so that --json output stays clean."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime


def say(message: str) -> None:
    """Print one progress line with a UTC timestamp."""
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[pgdrill {stamp}] {message}", file=sys.stderr, flush=True)


class Stopwatch:
    """Measures named phases in seconds (monotonic clock)."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._started = time.monotonic()

    def phase(self, name: str) -> _Phase:
        return _Phase(self, name)

    @property
    def total(self) -> float:
        return time.monotonic() - self._started


class _Phase:
    def __init__(self, watch: Stopwatch, name: str) -> None:
        self.watch = watch
        self.name = name

    def __enter__(self) -> _Phase:
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.watch.phases[self.name] = round(time.monotonic() - self._t0, 3)
