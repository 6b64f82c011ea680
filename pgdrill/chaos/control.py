"""The pgdrill control: declare it in an experiment's `controls` to get a run folder,
preflight checks before anything runs, evidence after every activity, and the final
evidence and ledger line at the end.

    "controls": [{"name": "pgdrill",
                  "provider": {"type": "python", "module": "pgdrill.chaos.control"}}]

before the experiment: finishes runs that died earlier (as `interrupted`, cleaning up what
they left), creates reports/<UTC stamp>-<experiment>/ with a run lock, and runs the
preflight: the environment is allowed on this target (non-prod first), the target is ready
— repaired in place, never rebuilt. A refused preflight ends the run before any activity
(verdict `refused`; the rollbacks then do nothing).
after each activity: partial evidence, so a killed drill leaves readable evidence.
after the experiment: evidence.json, summary.md, journal.json, a line in reports/ledger.jsonl;
the journal is marked failed unless the verdict is `passed` (so `chaos run` exits 1)."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from chaoslib.exceptions import InterruptExecution

from pgdrill.chaos.plan_check import check_restores
from pgdrill.chaos.preflight import (
    apply_environment_file,
    check_cluster_name,
    check_credentials_file,
    check_environment,
    check_flux_owner,
    check_no_plaintext_credentials,
    environment_of,
)
from pgdrill.core.console import say
from pgdrill.core.errors import PgdrillError
from pgdrill.evidence.build import exception_line
from pgdrill.evidence.ledger import default_reports_dir
from pgdrill.evidence.runcontext import RUN_DIR_KEY, RunContext, create_run_dir, slug
from pgdrill.runs.finish import finish_run, write_partial_evidence
from pgdrill.runs.stale import recover_stale_runs, write_lock
from pgdrill.targets import get_target, target_kind
from pgdrill.targets.sandbox.state import sandbox_home

__all__ = [
    "before_experiment_control",
    "after_experiment_control",
    "before_hypothesis_control",
    "after_hypothesis_control",
    "before_method_control",
    "before_rollback_control",
    "before_activity_control",
    "after_activity_control",
]


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


def _interrupt_on_sigterm() -> None:
    """Make SIGTERM (what Kubernetes sends a CronJob's pod, what `kill` sends) interrupt the
    run the way Ctrl-C does: the rollbacks run and the verdict is `interrupted`.

    Chaos Toolkit's own SIGTERM handler raises InterruptExecution, an Exception; when it
    lands inside a Python activity, chaostoolkit-lib <= 1.44 wraps it into ActivityFailed and
    goes on with the next activity, so the drill ended `failed` with its method half run.
    SystemExit(20) is a BaseException that no activity wrapper catches, and it is the code
    Chaos Toolkit itself uses for "stop now, keep the rollbacks" (its SIGUSR1). Chaos
    Toolkit puts its previous handler back when the run ends."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_keeping_rollbacks)


def _terminate_keeping_rollbacks(signum: int, frame: object) -> None:
    say("SIGTERM received: interrupting the drill; the rollbacks run next")
    raise SystemExit(20)


def _context(configuration: dict | None) -> RunContext | None:
    run_dir = (configuration or {}).get(RUN_DIR_KEY)
    return RunContext(Path(run_dir)) if run_dir else None


def before_experiment_control(
    context: dict,
    configuration: dict | None = None,
    secrets: dict | None = None,
    experiment_name_override: str | None = None,
    **_: object,
) -> None:
    """Finish stale runs, create the run folder and its lock, run the preflight checks."""
    _interrupt_on_sigterm()
    if configuration is None:
        raise InterruptExecution("pgdrill needs a `configuration` block in the experiment")
    reports = default_reports_dir(configuration)
    reports.mkdir(parents=True, exist_ok=True)
    recover_stale_runs(reports)
    name = experiment_name(context, experiment_name_override)
    run_dir = create_run_dir(reports, name).resolve()
    configuration[RUN_DIR_KEY] = str(run_dir)
    kind = target_kind(configuration)
    configuration.setdefault("sandbox_home", str(sandbox_home()))
    write_lock(run_dir, _lock_target(configuration, kind))
    ctx = RunContext(run_dir)
    ctx.update(
        experiment=name,
        title=context.get("title"),
        target=kind,
        environment=environment_of(configuration),
        cluster=configuration.get("cluster") or "sandbox",
        started_at=datetime.now(UTC).isoformat(),
        objectives=_objectives(configuration),
    )
    say(f"run folder {run_dir}")
    try:
        environment_file = apply_environment_file(configuration)
        if environment_file:
            kind = target_kind(configuration)
            write_lock(run_dir, _lock_target(configuration, kind))
            ctx.update(
                environment_file=environment_file,
                target=kind,
                environment=environment_of(configuration),
                cluster=configuration.get("cluster") or "sandbox",
                objectives=_objectives(configuration),
            )
        check_no_plaintext_credentials(configuration, secrets)
        target = get_target(configuration, secrets)
        # the ledger the non-prod gate reads may live in the evidence sink (another runner)
        sink = _sink(configuration, target)
        if sink is not None:
            ctx.update(evidence_sink=sink.describe())
            sink.pull_ledger(reports)
        check_environment(configuration, name, kind, reports)
        check_cluster_name(configuration, target)
        check_credentials_file(configuration, secrets, target)
        # the one sandbox-only step: start (or repair in place) the local sandbox; a real
        # cluster is only ever checked
        repairs = target.prepare() if kind == "sandbox" else []
        target.check_ready()
        check_flux_owner(context, configuration, target)
        if sink is not None:
            sink.check_outside(target.archive())
            ctx.update(evidence_sink_checked=True)
        ctx.update(
            preflight_repairs=list(repairs or []),
            target_facts=target.facts(),
            credentials=target.credentials_source(),
            cluster_identity=target.cluster_identity(),
            preflight_restores=check_restores(context, configuration, target),
        )
    except PgdrillError as exc:
        say(f"preflight refused: {exc}")
        ctx.update(refused=exc.message, refused_fix=exc.fix)
        raise InterruptExecution(f"pgdrill preflight refused the drill: {exc}") from None
    write_partial_evidence(run_dir)


_SINKS: dict[str, object] = {}


def _sink(configuration: dict | None, target=None):
    """The run's evidence sink (pgdrill.evidence.sink), decrypted once per process; None without."""
    from pgdrill.evidence.sink import SINK_KEY, sink_from_configuration

    url = (configuration or {}).get(SINK_KEY)
    if not url:
        return None
    if url not in _SINKS:
        _SINKS[url] = sink_from_configuration(configuration, target or get_target(configuration))
    return _SINKS[url]


def _upload(configuration: dict | None, ctx: RunContext, *, final: bool) -> bool:
    """Copy the run folder (and at the end the ledger) to the evidence sink. A failure is
    said, recorded, and — at the end — fails the run; it never hides the local evidence."""
    if not ctx.read().get("evidence_sink_checked"):
        return True  # no sink, or one not yet known to lie outside the source's backup path
    try:
        sink = _sink(configuration)
        count = sink.upload_run(ctx.run_dir)
        if final:
            sink.upload_ledger(ctx.run_dir.parent)
            say(
                f"evidence sink: uploaded {count} files of {ctx.run_dir.name} and the ledger "
                f"to {sink.url}"
            )
        return True
    except PgdrillError as exc:
        say(f"evidence sink: {exc}")
        if not final:
            ctx.update(evidence_sink_error=exc.message)
        return False


def _save_logs(configuration: dict, ctx: RunContext) -> None:
    """The target's log lines since the run started, next to the evidence (logs/)."""
    data = ctx.read()
    if data.get("refused") or not data.get("started_at"):
        return
    try:
        target = get_target(configuration)
        written = target.save_logs(ctx.run_dir / "logs", datetime.fromisoformat(data["started_at"]))
    except PgdrillError as exc:
        say(f"could not save the target's logs: {exc.message}")
        return
    earlier = ctx.read().get("logs") or []
    ctx.update(logs=sorted(set(earlier) | {f"logs/{name}" for name in written}))


def _lock_target(configuration: dict, kind: str) -> dict:
    """What a later process needs to clean up after this run if it dies."""
    keys = (
        "cluster",
        "namespace",
        "restore_namespace",
        "restore_cluster",
        "cnpg_connection",
        "cnpg_operator_namespace",
        "sandbox_home",
    )
    return {
        "pgdrill_target": kind,
        **{k: configuration[k] for k in keys if configuration.get(k) is not None},
    }


def _objectives(configuration: dict) -> dict:
    return {
        k: configuration[k]
        for k in (
            "rpo_objective_seconds",
            "rto_objective_seconds",
            "failover_lost_writes_objective",
        )
        if configuration.get(k) is not None
    }


def _phase(configuration: dict | None, phase: str) -> None:
    ctx = _context(configuration)
    if ctx is not None:
        ctx.update(phase=phase)


def before_hypothesis_control(
    context: dict, configuration: dict | None = None, **_: object
) -> None:
    """Note which steady-state check runs (before or after the method)."""
    ctx = _context(configuration)
    if ctx is not None:
        after = bool(ctx.read().get("method_started"))
        ctx.update(phase="steady-state-after" if after else "steady-state-before")


def after_hypothesis_control(
    context: dict, state: dict | None = None, configuration: dict | None = None, **_: object
) -> None:
    """Partial evidence after a steady-state check."""
    ctx = _context(configuration)
    if ctx is not None:
        write_partial_evidence(ctx.run_dir)


def before_method_control(context: dict, configuration: dict | None = None, **_: object) -> None:
    ctx = _context(configuration)
    if ctx is not None:
        ctx.update(phase="method", method_started=True)


def before_rollback_control(context: dict, configuration: dict | None = None, **_: object) -> None:
    """Save the logs before the rollbacks remove restore-test (its recovery logs go with it)."""
    _phase(configuration, "rollbacks")
    ctx = _context(configuration)
    if ctx is not None:
        _save_logs(configuration, ctx)


def before_activity_control(context: dict, configuration: dict | None = None, **_: object) -> None:
    """Record the activity about to run (named as interrupted if the run dies in it)."""
    ctx = _context(configuration)
    if ctx is None:
        return
    data = ctx.read()
    _note_interrupted(ctx, data)
    phase = data.get("phase") or "method"
    ctx.update(
        current_activity={
            "name": context.get("name"),
            "type": context.get("type"),
            "phase": phase,
            "start": datetime.now(UTC).isoformat(),
        }
    )


def _note_interrupted(ctx: RunContext, data: dict) -> None:
    """An activity that started but never finished was cut short (a signal): remember the
    first such one and what had completed before it, before the rollbacks move on."""
    if data.get("current_activity") and not data.get("interrupted_activity"):
        ctx.update(
            interrupted_activity=data["current_activity"],
            last_completed_before_interruption=data.get("last_completed_activity"),
        )


def after_activity_control(
    context: dict, state: dict | None = None, configuration: dict | None = None, **_: object
) -> None:
    """Log the finished activity and write partial evidence."""
    ctx = _context(configuration)
    if ctx is None:
        return
    state = state or {}
    current = ctx.read().get("current_activity") or {}
    entry = {
        "name": context.get("name"),
        "type": context.get("type"),
        "phase": current.get("phase", "method"),
        "status": state.get("status"),
        "start": state.get("start"),
        "end": state.get("end"),
    }
    if state.get("exception"):
        entry["exception"] = exception_line(state["exception"])
    if "tolerance_met" in state:
        entry["tolerance_met"] = state["tolerance_met"]
    if not entry["status"]:
        # Chaos Toolkit closes the activity's controls even when a signal cut it short,
        # leaving its record without a status
        entry["status"] = "interrupted"
        _note_interrupted(ctx, {**ctx.read(), "current_activity": current})
        ctx.append("activity_log", entry)
        ctx.update(current_activity=None)
    else:
        ctx.append("activity_log", entry)
        ctx.update(current_activity=None, last_completed_activity=entry["name"])
    write_partial_evidence(ctx.run_dir)
    _upload(configuration, ctx, final=False)


def after_experiment_control(
    context: dict, state: dict, configuration: dict | None = None, **_: object
) -> None:
    """Write the evidence, summary, journal and ledger line; fail the run unless `passed`."""
    ctx = _context(configuration)
    if ctx is None:
        return
    _note_interrupted(ctx, ctx.read())
    _save_logs(configuration, ctx)
    try:
        evidence = finish_run(ctx.run_dir, state, pushgateway=configuration.get("pushgateway"))
    except Exception as exc:
        say(f"could not write the evidence: {exc}")
        state["status"] = "failed"
        return
    if not _upload(configuration, ctx, final=True):
        state["status"] = "failed"  # evidence that did not reach the sink fails loudly
    say(f"verdict: {evidence['verdict'].upper()}  (evidence in {ctx.run_dir}/evidence.json)")
    for reason in evidence["reasons"]:
        say(f"  - {reason}")
    if evidence["verdict"] == "refused" and ctx.read().get("refused_fix"):
        say(f"  fix: {ctx.read()['refused_fix']}")
