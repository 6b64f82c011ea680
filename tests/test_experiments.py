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

# actions.rebuild (cluster-loss) is checked here even before discovery lists it
ACTIVITY_MODULES = sorted({*ACTION_MODULES, *PROBE_MODULES, "actions.rebuild"})


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


def test_cluster_loss_destroys_only_after_a_backup_and_rebuilds_and_verifies():
    """The cluster-loss drill's order: load, backup, fingerprints, destroy (which checks and
    seals the archive first), rebuild, then the rebuilt cluster verified; a rollback that
    rebuilds a cluster left destroyed."""
    experiment = json.loads(Path("experiments/cluster-loss.json").read_text())
    funcs = [a["provider"]["func"] for a in experiment["method"]]
    assert funcs.index("trigger_backup") < funcs.index("destroy_cluster") \
        < funcs.index("rebuild_cluster_from_bucket") < funcs.index("lost_writes_after_rebuild")
    assert "capture_fingerprints" in funcs[:funcs.index("destroy_cluster")]
    assert {"rebuilt_checklist_passes", "rebuilt_fingerprints_match", "wait_until_healthy"} \
        <= set(funcs[funcs.index("rebuild_cluster_from_bucket"):])
    rollbacks = [a["provider"]["func"] for a in experiment["rollbacks"]]
    assert rollbacks == ["stop_load", "rebuild_if_destroyed"]
