"""What every Chaos Toolkit activity of pgdrill shares: its target, its run context, and
turning pgdrill's expected errors into ActivityFailed with a one-line message."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from chaoslib.exceptions import ActivityFailed

from pgdrill.errors import PgdrillError
from pgdrill.runcontext import RunContext
from pgdrill.targets import get_target, target_kind
from pgdrill.targets.base import Target

F = TypeVar("F", bound=Callable)


def activity(fn: F) -> F:
    """Raise ActivityFailed (message and fix) instead of a pgdrill traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PgdrillError as exc:
            raise ActivityFailed(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def ready_target(configuration: dict | None) -> Target:
    target = get_target(configuration)
    target.ensure_ready()
    return target


def run_context(configuration: dict | None) -> RunContext:
    ctx = RunContext.from_configuration(configuration)
    if not ctx.read():
        cfg = configuration or {}
        ctx.update(target=target_kind(cfg), cluster=cfg.get("cluster") or "sandbox")
    return ctx
