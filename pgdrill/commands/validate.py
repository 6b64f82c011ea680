"""`pgdrill validate EXPERIMENT...`: check experiments before a drill runs, so that bad input
is one line naming the file, the problem and the fix — never Chaos Toolkit's traceback of a
truncated file, never a drill that fails half-way over a typo.

Per file: it parses (JSON, or YAML for .yaml/.yml; a syntax error is reported as
`FILE:LINE:COLUMN: what`), passes Chaos Toolkit's own validation (which loads the
configuration and secrets, imports every python activity's module and binds its arguments
to the function), then pgdrill's: the pgdrill control is declared, the rollback strategy is
`always`, the target kind and the environment are known, every checklist the experiment
would load (the `checklist` configuration key, each checklist_passes argument) loads, and
each restore's recovery target parses. Exit 0 printing `FILE: valid` per file; 2 (BadInput)
at the first bad one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from pgdrill.core.errors import BadInput, PgdrillError
from pgdrill.core.yamlerrors import yaml_error_position
from pgdrill.evidence import policy

CONTROL_MODULE = "pgdrill.chaos.control"
CONTROL_FIX = (
    'declare it: "controls": [{"name": "pgdrill", "provider": {"type": "python", '
    '"module": "pgdrill.chaos.control"}}]'
)
ROLLBACKS_FIX = 'set "runtime": {"rollbacks": {"strategy": "always"}}'
DEFAULT_CHECKLIST = "experiments/checklists/app.yaml"


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def parse_experiment(path: Path) -> dict:
    """The experiment as Chaos Toolkit would load it, or BadInput naming line and column."""
    if path.suffix not in (".json", ".yaml", ".yml"):
        raise BadInput(
            f"{path}: an experiment file ends in .json, .yaml or .yml",
            fix="rename it, or pass the experiment file (experiments/*.json)",
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise BadInput(
            f"{path}: cannot read it: {why}",
            fix="pass the path of an experiment file (experiments/*.json)",
        ) from None
    if path.suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            what = exc.msg[:-3] + " here" if exc.msg.endswith(" at") else exc.msg
            if exc.msg.startswith("Unterminated string") or exc.pos >= len(text.rstrip()):
                what += "; the file ends before the JSON does (truncated?)"
            raise BadInput(
                f"{path}:{exc.lineno}:{exc.colno}: {what}",
                fix=f"fix the JSON at line {exc.lineno}, column {exc.colno} (a "
                f"truncated or hand-edited file: compare with `git diff -- "
                f"{path}`)",
            ) from None
    else:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            line, column = yaml_error_position(exc) or (1, 1)
            what = getattr(exc, "problem", None) or one_line(exc)
            raise BadInput(
                f"{path}:{line}:{column}: {one_line(what)}",
                fix=f"fix the YAML at line {line}, column {column}",
            ) from None
    if not isinstance(doc, dict):
        raise BadInput(
            f"{path}: an experiment is an object (title, description, method, "
            f"...), this is {type(doc).__name__}",
            fix="see README, Writing experiments",
        )
    return doc


def python_activities(experiment: dict) -> list[dict]:
    """Every activity with a python provider: steady state, method, rollbacks."""
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    found = []
    for group in (
        hypothesis.get("probes") if isinstance(hypothesis, dict) else None,
        experiment.get("method"),
        experiment.get("rollbacks"),
    ):
        for activity in group or []:
            provider = activity.get("provider") if isinstance(activity, dict) else None
            if isinstance(provider, dict) and provider.get("type") == "python":
                found.append(activity)
    return found


def chaostoolkit_checks(path: Path, experiment: dict) -> None:
    """Chaos Toolkit's own validation, its errors as one line."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    try:
        ensure_experiment_is_valid(experiment)
    except ChaosException as exc:
        raise BadInput(
            f"{path}: {one_line(exc)}",
            fix="see README, Writing experiments, and `chaos discover --no-install "
            "pgdrill` for the activities and their arguments",
        ) from None
    except Exception as exc:
        raise BadInput(
            f"{path}: Chaos Toolkit cannot validate it ({type(exc).__name__}: "
            f"{one_line(exc)}): a section has the wrong shape",
            fix="compare it with a shipped experiment (experiments/*.json)",
        ) from None


def pgdrill_checks(path: Path, experiment: dict) -> None:
    """What pgdrill needs beyond Chaos Toolkit's rules."""
    from chaoslib import substitute
    from chaoslib.configuration import load_configuration

    from pgdrill.chaos.preflight import environment_of
    from pgdrill.core.model import RecoveryTarget
    from pgdrill.targets import KNOWN, TARGET_KEY, target_kind
    from pgdrill.verification.checklist import load_checklist

    controls = experiment.get("controls") or []
    if not any(
        isinstance(c, dict)
        and isinstance(c.get("provider"), dict)
        and c["provider"].get("module") == CONTROL_MODULE
        for c in controls
    ):
        raise BadInput(
            f"{path}: the pgdrill control is not declared, so the drill would run "
            f"without preflight, run folder or evidence",
            fix=CONTROL_FIX,
        )
    runtime = experiment.get("runtime") if isinstance(experiment.get("runtime"), dict) else {}
    rollbacks = runtime.get("rollbacks") if isinstance(runtime.get("rollbacks"), dict) else {}
    if rollbacks.get("strategy") != "always":
        raise BadInput(
            f"{path}: the rollback strategy is {rollbacks.get('strategy')!r}, not "
            f"'always': a failed or interrupted drill would leave its load running "
            f"and restore-test behind",
            fix=ROLLBACKS_FIX,
        )

    configuration = load_configuration(experiment.get("configuration") or {})
    kind = target_kind(configuration)
    if kind not in KNOWN:
        raise BadInput(
            f"{path}: unknown target {kind!r} ({TARGET_KEY} or PGDRILL_TARGET)",
            fix=f"set {TARGET_KEY} to one of {', '.join(KNOWN)}",
        )
    environment = environment_of(configuration)
    if policy.normalize_environment(environment) is None:
        raise BadInput(
            f"{path}: unknown environment {environment!r} (environment or PGDRILL_ENVIRONMENT)",
            fix=f"use one of {', '.join(policy.ENVIRONMENTS)}",
        )

    checklists = []
    if configuration.get("checklist"):
        checklists.append(
            ("configuration key checklist (PGDRILL_CHECKLIST)", configuration["checklist"])
        )
    for activity in python_activities(experiment):
        provider = activity["provider"]
        arguments = substitute(provider.get("arguments") or {}, configuration, {})
        where = f"activity {activity.get('name')!r}"
        if provider.get("func") == "checklist_passes":
            checklists.append((where, arguments.get("checklist", DEFAULT_CHECKLIST)))
        if provider.get("func") == "restore_latest_backup":
            try:
                RecoveryTarget.parse(
                    arguments.get("target_time"),
                    arguments.get("target_lsn"),
                    arguments.get("restore_point"),
                )
            except BadInput as exc:
                raise BadInput(f"{path}: {where}: {exc.message}", fix=exc.fix) from None
    for where, checklist in checklists:
        try:
            load_checklist(str(checklist))
        except BadInput as exc:
            fix = exc.fix
            if exc.message.startswith("cannot read checklist"):
                fix = (
                    f"point {where.split(' (')[0]} at a YAML checklist that exists, e.g. "
                    f"{DEFAULT_CHECKLIST}"
                )
            raise BadInput(f"{path}: {where}: {one_line(exc.message)}", fix=fix) from None


def validate_file(path: Path) -> None:
    experiment = parse_experiment(path)
    chaostoolkit_checks(path, experiment)
    try:
        pgdrill_checks(path, experiment)
    except PgdrillError:
        raise
    except Exception as exc:
        raise BadInput(
            f"{path}: {one_line(exc)}",
            fix="compare it with a shipped experiment (experiments/*.json)",
        ) from None


def run(args: argparse.Namespace) -> int:
    for name in args.experiments:
        validate_file(Path(name))
        print(f"{name}: valid")
    return 0


def register(sub) -> None:
    """Add `validate` to the `pgdrill` subcommands."""
    parser = sub.add_parser(
        "validate",
        help="check experiments before running them (syntax, Chaos Toolkit's rules, pgdrill's)",
    )
    parser.add_argument(
        "experiments", nargs="+", metavar="EXPERIMENT", help="experiment files (.json, .yaml, .yml)"
    )
    parser.set_defaults(func=run)
