"""Every shipped experiment must load and validate as Chaos Toolkit would run it, and every
activity must be documented (its docstring is what `chaos discover` shows)."""

import importlib
import inspect
import json
from pathlib import Path

import pytest
from chaoslib.experiment import ensure_experiment_is_valid

EXPERIMENTS = sorted(Path("experiments").glob("*.json"))
from pgdrill.chaos.discovery import ACTION_MODULES, PROBE_MODULES

ACTIVITY_MODULES = [*ACTION_MODULES, *PROBE_MODULES]


def test_there_are_experiments():
    assert Path("experiments/pvc-loss.json") in EXPERIMENTS


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_is_valid(path):
    experiment = json.loads(path.read_text())
    ensure_experiment_is_valid(experiment)
    assert experiment["runtime"]["rollbacks"]["strategy"] == "always"
    modules = [c["provider"]["module"] for c in experiment.get("controls", [])]
    assert "pgdrill.chaos.control" in modules, "without the control there is no evidence"


@pytest.mark.parametrize("name", ACTIVITY_MODULES)
def test_activity_modules_export_documented_functions(name):
    module = importlib.import_module(name)
    assert module.__all__, f"{name} must declare __all__ for chaos discover"
    for func_name in module.__all__:
        func = getattr(module, func_name)
        assert inspect.getdoc(func), f"{name}.{func_name} has no docstring"
        params = inspect.signature(func).parameters
        assert "configuration" in params and "secrets" in params


def test_discovery_lists_every_activity():
    from pgdrill.chaos.discovery import discover

    names = {a["name"] for a in discover()["activities"]}
    assert {"drop_pvc", "trigger_backup", "restore_latest_backup", "checklist_passes",
            "wait_until_healthy", "writes_succeed"} <= names
