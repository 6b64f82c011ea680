"""Polling with deadlines: never sleep-and-hope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from pgdrill.core.errors import DeadlineExceeded

T = TypeVar("T")


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str,
    fix: str | None = None,
) -> T:
    """Call `check` until it returns something truthy; return it.

    Raises DeadlineExceeded naming `what` when `timeout` seconds pass first.
    Exceptions from `check` propagate: a check that can tell failure from
    "not yet" should raise on failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"timed out after {timeout:.0f}s waiting for {what}", fix=fix)
        time.sleep(interval)
