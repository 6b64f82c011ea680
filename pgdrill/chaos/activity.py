"""What every Chaos Toolkit activity of pgdrill shares: its target, its run context, and
turning pgdrill's expected errors into ActivityFailed with a one-line message."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from chaoslib.exceptions import ActivityFailed

from pgdrill.core.console import say
from pgdrill.core.errors import PgdrillError
from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext
from pgdrill.targets import get_target, target_kind
from pgdrill.targets.base import Target

F = TypeVar("F", bound=Callable)


def activity(fn: F) -> F:
    """Raise ActivityFailed (message and fix) instead of a pgdrill traceback; do nothing in
    a drill the preflight refused (its rollbacks must not fail over things that never
    existed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _refused(kwargs.get("configuration")):
            say(f"{fn.__name__}: skipped, the drill was refused before it started")
            return None
        try:
            return fn(*args, **kwargs)
        except PgdrillError as exc:
            raise ActivityFailed(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _refused(configuration: dict | None) -> bool:
    run_dir = (configuration or {}).get(RUN_DIR_KEY)
    return bool(run_dir and RunContext(Path(run_dir)).read().get("refused"))


def ready_target(configuration: dict | None, secrets: dict | None = None) -> Target:
    """The drill's target, checked (never changed) before the activity uses it. `secrets`:
    the experiment's secrets (e.g. chaosk8s' KUBERNETES_CONTEXT for the cnpg target)."""
    target = get_target(configuration, secrets)
    target.check_ready()
    return target


def run_context(configuration: dict | None) -> RunContext:
    ctx = RunContext.from_configuration(configuration)
    if not ctx.read():
        cfg = configuration or {}
        ctx.update(target=target_kind(cfg), cluster=cfg.get("cluster") or "sandbox")
    return ctx
