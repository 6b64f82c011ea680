"""Every shipped experiment must load and validate as Chaos Toolkit would run it, be exactly
what experiments/_template/ generates, and every activity must be documented (its docstring is
what `chaos discover` shows)."""

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest
from chaoslib.experiment import ensure_experiment_is_valid

from pgdrill.chaos import experiments as generator
from pgdrill.core.errors import BadInput

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(Path("experiments").glob("*.json"))
# read from the files, not from pgdrill.chaos.discovery: discovery must not forget one
ACTIVITY_MODULES = sorted(
    f"{package}.{path.stem}"
    for package in ("actions", "probes")
    for path in (REPO / package).glob("*.py")
    if not path.name.startswith("_")
)


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
    import pgdrill
    import probes
    from pgdrill.chaos.discovery import discover

    for package in (pgdrill, actions, probes):
        members = dict(inspect.getmembers(package, inspect.isfunction))
        assert members.get("discover") is discover, package.__name__


def test_importing_pgdrill_does_not_import_chaoslib():
    import subprocess
    import sys

    code = "import sys, pgdrill; print(sorted(m for m in sys.modules if m.startswith('chaos')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


def test_cluster_loss_destroys_only_after_a_backup_and_rebuilds_and_verifies():
    """The cluster-loss drill's order: load, backup, fingerprints, destroy (which checks and
    seals the archive first), rebuild, then the rebuilt cluster verified; a rollback that
    rebuilds a cluster left destroyed."""
    experiment = json.loads(Path("experiments/cluster-loss.json").read_text())
    funcs = [a["provider"]["func"] for a in experiment["method"]]
    assert (
        funcs.index("trigger_backup")
        < funcs.index("destroy_cluster")
        < funcs.index("rebuild_cluster_from_bucket")
        < funcs.index("lost_writes_after_rebuild")
    )
    assert "capture_fingerprints" in funcs[: funcs.index("destroy_cluster")]
    assert {"rebuilt_checklist_passes", "rebuilt_fingerprints_match", "wait_until_healthy"} <= set(
        funcs[funcs.index("rebuild_cluster_from_bucket") :]
    )
    rollbacks = [a["provider"]["func"] for a in experiment["rollbacks"]]
    assert rollbacks == ["stop_load", "rebuild_if_destroyed"]


def test_committed_experiments_are_the_generated_ones():
    """experiments/<name>.json are generated from experiments/_template/ (the shared blocks
    once, drills/<name>.json for what differs): a hand edit, or a template edit without
    regenerating, fails here."""
    problems = generator.stale()
    if problems:
        pytest.fail(
            "experiments/*.json differ from what experiments/_template/ generates: "
            "edit the template (not the generated file), run `make experiments` (or "
            "`.venv/bin/python -m pgdrill.chaos.experiments`) and commit both\n"
            + "\n".join(problems),
            pytrace=False,
        )


def test_every_experiment_has_a_drill_source_and_the_shared_blocks():
    sources = {p.stem for p in generator.drill_sources()}
    assert sources == {p.stem for p in EXPERIMENTS}
    skeleton = json.loads(Path("experiments/_template/experiment.json").read_text())
    for path in EXPERIMENTS:
        experiment = json.loads(path.read_text())
        for block in ("controls", "runtime", "steady-state-hypothesis", "contributions"):
            assert experiment[block] == skeleton[block], f"{path.stem}: {block}"
        shared = {k: v for k, v in skeleton["configuration"].items() if not k.startswith("{{")}
        assert list(experiment["configuration"])[: len(shared)] == list(shared)
        assert {k: experiment["configuration"][k] for k in shared} == shared


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_a_drill_that_starts_load_stops_it_first_in_its_rollbacks(path):
    experiment = json.loads(path.read_text())
    funcs = [a["provider"]["func"] for a in experiment["method"]]
    assert funcs[0] == "start_load"
    assert experiment["rollbacks"][0]["provider"]["func"] == "stop_load"


def _template(tmp_path, drill, name="x"):
    """A copy of the real template in tmp_path with one drill source."""
    template = tmp_path / "experiments" / "_template"
    (template / "drills").mkdir(parents=True)
    for part in ("experiment.json", "activities.json"):
        (template / part).write_text((REPO / "experiments/_template" / part).read_text())
    (template / "drills" / f"{name}.json").write_text(json.dumps(drill))
    return tmp_path / "experiments"


MINIMAL = {
    "title": "t",
    "description": "d.",
    "tags": ["x"],
    "method": ["start-load", {"$ref": "manual-backup", "pauses": {"after": 1}}],
    "rollbacks": ["stop-load"],
}


def test_generator_fills_the_skeleton(tmp_path):
    experiments = _template(tmp_path, {**MINIMAL, "configuration": {"own_key": 1}})
    [(path, text)] = generator.generate(experiments).items()
    assert path == experiments / "x.json"
    experiment = json.loads(text)
    assert text == json.dumps(experiment, indent=2) + "\n"
    assert list(experiment)[:5] == ["version", "title", "description", "tags", "contributions"]
    assert experiment["description"].startswith("d. The steady state is re-checked")
    assert experiment["tags"] == ["postgresql", "cloudnativepg", "backup", "restore", "x", "load"]
    assert list(experiment["configuration"])[-1] == "own_key"
    assert experiment["method"][1]["provider"]["func"] == "trigger_backup"
    assert experiment["method"][1]["pauses"] == {"after": 1}
    assert experiment["rollbacks"][0]["name"] == "stop-load"
    ensure_experiment_is_valid(experiment)
    missing = f"{path}: missing (its source is {experiments}/_template/drills/x.json)"
    assert generator.stale(experiments) == [missing]
    assert generator.main(["--dir", str(experiments)]) == 0
    assert generator.stale(experiments) == []
    assert generator.main(["--check", "--dir", str(experiments)]) == 0
    path.write_text(text.replace('"t"', '"hand-edited"'))
    assert generator.main(["--check", "--dir", str(experiments)]) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"method": ["no-such-activity"]}, "no shared activity 'no-such-activity'"),
        ({"configuration": {"cluster": "other"}}, "configuration key 'cluster' is shared already"),
        ({"secrets": {}}, "'secrets' not used by experiments/_template/experiment.json"),
        ({"tags": "x"}, "'tags' must be a list"),
    ],
)
def test_generator_refuses_a_bad_drill_source(tmp_path, change, message):
    experiments = _template(tmp_path, {**MINIMAL, **change})
    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
        generator.generate(experiments)


def test_generator_names_a_missing_key(tmp_path):
    drill = dict(MINIMAL)
    del drill["title"]
    with pytest.raises(BadInput, match="no 'title'"):
        generator.generate(_template(tmp_path, drill))


def test_readme_lists_every_activity():
    """README, Writing experiments: a row per activity module naming each of its activities."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Writing experiments") :]
    section = section[: section.index("\n## ", 1)]
    rows = dict(re.findall(r"^\| `((?:actions|probes)\.\w+)` \| (.*) \|$", section, re.MULTILINE))
    assert sorted(rows) == ACTIVITY_MODULES
    for name in ACTIVITY_MODULES:
        listed = set(re.findall(r"`(\w+)\(", rows[name]))
        assert listed == set(importlib.import_module(name).__all__), name
