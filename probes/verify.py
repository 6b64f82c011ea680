"""Verification probes: the Restore Verification Checklist against the restored copy."""

from __future__ import annotations

import time

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target, run_context
from pgdrill.checklist import describe_failures, load_checklist, run_checklist
from pgdrill.console import say
from pgdrill.errors import PgdrillError

__all__ = ["checklist_passes"]


@activity
def checklist_passes(checklist: str = "experiments/checklists/app.yaml",
                     configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """Run the checklist (YAML: named SQL queries with expected values) against the
    restore-test copy, record every result as evidence, and fail naming each query whose
    value differs. Evidence-first: a restore succeeds only once this passes."""
    plan = load_checklist(checklist)
    target = ready_target(configuration)
    restored = target.restored_instance()
    if restored is None:
        raise PgdrillError("there is no restore-test instance to validate",
                           fix="run actions.restore.restore_latest_backup first")
    t0 = time.monotonic()
    with target.connect(restored, plan.database) as conn:
        results = run_checklist(conn, plan)
    elapsed = round(time.monotonic() - t0, 3)
    run_context(configuration).update(validation=[r.to_dict() for r in results],
                                      validation_seconds=elapsed, checklist=plan.path)
    for r in results:
        say(f"  check {r.name}: {'passed' if r.passed else 'FAILED'} "
            f"(expected {r.expected!r}, got {r.actual!r})")
    if not all(r.passed for r in results):
        raise PgdrillError("validation failed on the restored copy: " + describe_failures(results))
    return True
