"""Every shipped experiment must load and validate as Chaos Toolkit would run it, and every
activity must be documented (its docstring is what `chaos discover` shows)."""

import importlib
import inspect
import json
from pathlib import Path

import pytest
from chaoslib.experiment import ensure_experiment_is_valid

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(Path("experiments").glob("*.json"))
# read from the files, not from pgdrill.chaos.discovery: discovery must not forget one
ACTIVITY_MODULES = sorted(f"{package}.{path.stem}" for package in ("actions", "probes")
                          for path in (REPO / package).glob("*.py")
                          if not path.name.startswith("_"))


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


def test_discovery_lists_every_activity_with_its_docstring():
    """`chaos discover --no-install pgdrill`: every public activity (`__all__`) of every module
    in actions/ and probes/, once, with its docstring."""
    from pgdrill.chaos.discovery import discover

    found = {}
    for activity in discover(discover_system=False)["activities"]:
        key = f"{activity['mod']}.{activity['name']}"
        assert key not in found, f"{key} discovered twice"
        found[key] = activity
    expected = set()
    for name in ACTIVITY_MODULES:
        module = importlib.import_module(name)
        for func_name in module.__all__:
            key = f"{name}.{func_name}"
            expected.add(key)
            assert key in found, f"chaos discover does not list {key}"
            assert found[key]["doc"] == inspect.getdoc(getattr(module, func_name))
            assert found[key]["type"] == ("action" if name.startswith("actions.") else "probe")
    assert set(found) == expected
    assert "actions.rebuild" in {a["mod"] for a in found.values()}


def test_one_discover_for_every_package_of_the_distribution():
    """Chaos Toolkit takes `discover` from whichever top-level package of the distribution it
    finds (through dir()), so all three have it, and it is the same function."""
    import actions
    import probes

    import pgdrill
    from pgdrill.chaos.discovery import discover

    for package in (pgdrill, actions, probes):
        members = dict(inspect.getmembers(package, inspect.isfunction))
        assert members.get("discover") is discover, package.__name__


def test_importing_pgdrill_does_not_import_chaoslib():
    import subprocess
    import sys

    code = "import sys, pgdrill; print(sorted(m for m in sys.modules if m.startswith('chaos')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


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
