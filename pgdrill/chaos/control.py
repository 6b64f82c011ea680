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
from pathlib import Path

from chaoslib.exceptions import InterruptExecution

from pgdrill.console import say
from pgdrill.errors import PgdrillError
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
        get_target(configuration).ensure_ready()
    except PgdrillError as exc:
        say(f"preflight failed: {exc}")
        raise InterruptExecution(f"pgdrill preflight failed: {exc}") from None


def after_experiment_control(context: dict, state: dict, configuration: dict | None = None,
                             **_: object) -> None:
    """Write journal.json, evidence.json and summary.md; fail the run unless `passed`."""
    run_dir = (configuration or {}).get(RUN_DIR_KEY)
    if not run_dir:
        return
    run_ctx = RunContext(Path(run_dir))
    data = run_ctx.read()
    evidence = build_evidence(state, data, experiment=data.get("experiment", "experiment"),
                              target=data.get("target", "sandbox"),
                              environment=data.get("environment", "sandbox"))
    if evidence["verdict"] != "passed" and state.get("status") == "completed":
        state["status"] = "failed"
    folder = Path(run_dir)
    (folder / "evidence.json").write_text(json.dumps(evidence, indent=2, default=str) + "\n")
    (folder / "summary.md").write_text(render_summary(evidence))
    (folder / "journal.json").write_text(
        json.dumps(state, indent=2, ensure_ascii=False, default=str) + "\n")
    say(f"verdict: {evidence['verdict'].upper()}  (evidence in {folder}/evidence.json)")
    for reason in evidence["reasons"]:
        say(f"  - {reason}")
