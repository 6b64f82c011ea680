"""The pgdrill control: declare it in an experiment's `controls` to get a run folder,
preflight checks before anything runs, and evidence at the end.

    "controls": [{"name": "pgdrill",
                  "provider": {"type": "python", "module": "pgdrill.chaos.control"}}]

before the experiment: creates reports/<UTC stamp>-<experiment>/, hands it to activities
through the configuration, and makes sure the target is ready (the sandbox starts itself);
a failed preflight interrupts the run before anything destructive happens.
after the experiment: writes journal.json, evidence.json and summary.md there, and marks
the journal failed when the evidence verdict is not `passed` (so `chaos run` exits 1)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chaoslib.exceptions import InterruptExecution

from pgdrill.console import say
from pgdrill.errors import PgdrillError, PreflightRefused
from pgdrill.policy import is_production, production_refusal
from pgdrill.evidence import build_evidence, render_summary
from pgdrill.runcontext import RUN_DIR_KEY, RunContext, create_run_dir, slug
from pgdrill.targets import get_target, target_kind

__all__ = ["before_experiment_control", "after_experiment_control"]


def experiment_name(experiment: dict, explicit: str | None = None) -> str:
    """The experiment's file stem: from the control's arguments, else from the `chaos run`
    command line, else the title."""
    if explicit:
        return slug(explicit)
    for arg in reversed(sys.argv[1:]):
        path = Path(arg)
        if path.suffix in (".json", ".yaml", ".yml") and path.is_file():
            return slug(path.stem)
    return slug(experiment.get("title", "experiment"))


def before_experiment_control(context: dict, configuration: dict | None = None,
                              experiment_name_override: str | None = None, **_: object) -> None:
    """Create the run folder and run the preflight checks."""
    if configuration is None:
        raise InterruptExecution("pgdrill needs a `configuration` block in the experiment")
    reports = Path(configuration.get("reports_dir") or "reports")
    name = experiment_name(context, experiment_name_override)
    run_dir = create_run_dir(reports, name)
    configuration[RUN_DIR_KEY] = str(run_dir.resolve())
    RunContext(run_dir).update(
        experiment=name,
        target=target_kind(configuration),
        environment=str(configuration.get("environment") or "sandbox"),
        cluster=configuration.get("cluster") or "sandbox",
        objectives={k: configuration[k] for k in ("rpo_objective_seconds",
                                                   "rto_objective_seconds")
                    if configuration.get(k) is not None},
    )
    say(f"run folder {run_dir}")
    try:
        refuse_unproven_production(configuration, name, reports)
        get_target(configuration).ensure_ready()
    except PgdrillError as exc:
        say(f"preflight failed: {exc}")
        RunContext(run_dir).update(preflight_error=exc.message)
        raise InterruptExecution(f"pgdrill preflight failed: {exc}") from None


def refuse_unproven_production(configuration: dict, experiment: str, reports: Path) -> None:
    """Guardrail 3: production drills need recent passing staging evidence."""
    environment = str(configuration.get("environment") or "sandbox")
    if not is_production(environment):
        return
    evidences = []
    for path in reports.glob("*/evidence.json"):
        try:
            evidences.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    max_age = timedelta(days=float(configuration.get("staging_evidence_max_age_days") or 30))
    reason = production_refusal(environment, experiment, evidences, datetime.now(UTC), max_age)
    if reason:
        raise PreflightRefused(reason, fix=f"run it in staging first (PGDRILL_ENVIRONMENT=staging"
                               f" chaos run experiments/{experiment}.json) with its evidence in "
                               f"{reports}/")


def after_experiment_control(context: dict, state: dict, configuration: dict | None = None,
                             **_: object) -> None:
    """Write journal.json, evidence.json and summary.md; fail the run unless `passed`."""
    run_dir = (configuration or {}).get(RUN_DIR_KEY)
    if not run_dir:
        return
    try:
        _write_evidence(Path(run_dir), state)
    except Exception as exc:  # noqa: BLE001 - Chaos Toolkit would swallow it silently
        say(f"could not write the evidence: {exc}")
        state["status"] = "failed"


def _write_evidence(run_dir: Path, state: dict) -> None:
    data = RunContext(run_dir).read()
    evidence = build_evidence(state, data, experiment=data.get("experiment", "experiment"),
                              target=data.get("target", "sandbox"),
                              environment=data.get("environment", "sandbox"))
    if evidence["verdict"] != "passed" and state.get("status") == "completed":
        state["status"] = "failed"
    (run_dir / "evidence.json").write_text(json.dumps(evidence, indent=2, default=str) + "\n")
    (run_dir / "summary.md").write_text(render_summary(evidence))
    (run_dir / "journal.json").write_text(
        json.dumps(state, indent=2, ensure_ascii=False, default=str) + "\n")
    say(f"verdict: {evidence['verdict'].upper()}  (evidence in {run_dir}/evidence.json)")
    for reason in evidence["reasons"]:
        say(f"  - {reason}")
