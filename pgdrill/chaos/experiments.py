"""The shipped experiments, generated from one source: `python -m pgdrill.chaos.experiments`
(`make experiments`) writes experiments/<name>.json; `--check` only compares.

experiments/<name>.json stay plain Chaos Toolkit files, committed, for people to read, run and
copy. What they share is written once, in experiments/_template/:

- experiment.json: the skeleton every experiment is built from (version, contributions, the
  configuration keys with their environment defaults, the pgdrill control, the rollback
  strategy, the steady-state hypothesis) with placeholders for what each drill brings;
- activities.json: the activities several drills use (start-load, manual-backup, the
  verification of the restored copy, stop-load, remove-restore-test, ...), by name;
- drills/<name>.json: one per experiment, only what differs: title, description, tags, its own
  configuration keys, method and rollbacks.

Placeholders in the skeleton: a string value "{{key}}" becomes the drill's value; "{{key}}"
inside a longer string is replaced by the drill's string; a list item "{{key}}" is replaced by
the items of the drill's list; an object key "{{key}}" by the drill's own entries (optional,
after the shared ones, never overriding one). In a drill's method and rollbacks, a string is
the shared activity of that name, copied as it is, and {"$ref": name, ...} is that activity with
the other keys added or replaced (e.g. "pauses"); anything else is written out in full.

The output is deterministic: the key order of the sources (what users read), 2-space JSON, a
final newline. tests/test_experiments.py fails when a committed file differs from it."""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import re
import sys
from pathlib import Path

from pgdrill.core.errors import BadInput

EXPERIMENTS_DIR = Path("experiments")
TEMPLATE_DIR = "_template"
REGENERATE = "make experiments (or: .venv/bin/python -m pgdrill.chaos.experiments)"

PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
ACTIVITY_LISTS = ("method", "rollbacks")


def template_dir(experiments: Path = EXPERIMENTS_DIR) -> Path:
    return experiments / TEMPLATE_DIR


def _load(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise BadInput(
            f"{path}: cannot read it: {exc.strerror}",
            fix="run from the repository's root (experiments/_template/)",
        ) from None
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}",
            fix=f"fix the JSON at line {exc.lineno}, column {exc.colno}",
        ) from None


def drill_sources(experiments: Path = EXPERIMENTS_DIR) -> list[Path]:
    """experiments/_template/drills/<name>.json, one per generated experiment, sorted."""
    return sorted((template_dir(experiments) / "drills").glob("*.json"))


class _Builder:
    """One drill through the skeleton: placeholders filled, activity names resolved."""

    def __init__(self, source: Path, drill: dict, shared: dict[str, dict]) -> None:
        self.source = source
        self.drill = drill
        self.shared = shared
        self.used: set[str] = set()

    def fail(self, what: str, fix: str) -> BadInput:
        return BadInput(f"{self.source}: {what}", fix=fix)

    def value(self, key: str) -> object:
        if key not in self.drill:
            raise self.fail(
                f"no {key!r}, which experiments/_template/experiment.json asks for",
                fix=f'add "{key}" to {self.source.name}',
            )
        self.used.add(key)
        return copy.deepcopy(self.drill[key])

    def fill(self, node: object) -> object:
        if isinstance(node, str):
            whole = PLACEHOLDER.fullmatch(node)
            if whole:
                return (
                    self.activities(whole[1], self.value(whole[1]))
                    if whole[1] in ACTIVITY_LISTS
                    else self.value(whole[1])
                )
            return PLACEHOLDER.sub(lambda m: self.text(m[1]), node)
        if isinstance(node, list):
            out = []
            for item in node:
                whole = PLACEHOLDER.fullmatch(item) if isinstance(item, str) else None
                if whole:
                    items = self.value(whole[1])
                    if not isinstance(items, list):
                        raise self.fail(
                            f"{whole[1]!r} must be a list", fix=f'write "{whole[1]}": [...]'
                        )
                    out.extend(items)
                else:
                    out.append(self.fill(item))
            return out
        if isinstance(node, dict):
            out: dict = {}
            for key, item in node.items():
                whole = PLACEHOLDER.fullmatch(key)
                if not whole:
                    out[key] = self.fill(item)
                    continue
                own = self.value(whole[1]) if whole[1] in self.drill else {}
                self.used.add(whole[1])
                if not isinstance(own, dict):
                    raise self.fail(
                        f"{whole[1]!r} must be an object", fix=f'write "{whole[1]}": {{...}}'
                    )
                for name, entry in own.items():
                    if name in out or name in node:
                        raise self.fail(
                            f"{whole[1]} key {name!r} is shared already (in "
                            f"experiments/_template/experiment.json)",
                            fix="change the shared value for every drill, or name "
                            "this drill's key differently",
                        )
                    out[name] = entry
            return out
        return node

    def text(self, key: str) -> str:
        value = self.value(key)
        if not isinstance(value, str):
            raise self.fail(f"{key!r} must be a string", fix=f'write "{key}": "..."')
        return value

    def activities(self, where: str, items: object) -> list:
        if not isinstance(items, list):
            raise self.fail(
                f"{where!r} must be a list of activities",
                fix=f'write "{where}": ["start-load", {{...}}]',
            )
        resolved = []
        for item in items:
            if isinstance(item, str) or (isinstance(item, dict) and "$ref" in item):
                name = item if isinstance(item, str) else item["$ref"]
                if name not in self.shared:
                    raise self.fail(
                        f"{where}: no shared activity {name!r}",
                        fix="use one of "
                        + ", ".join(self.shared)
                        + " (experiments/_template/activities.json), or "
                        "write the activity out in full",
                    )
                activity = copy.deepcopy(self.shared[name])
                if isinstance(item, dict):
                    activity.update({k: v for k, v in item.items() if k != "$ref"})
                resolved.append(activity)
            else:
                resolved.append(item)
        return resolved


def build(source: Path, experiments: Path = EXPERIMENTS_DIR) -> dict:
    """The experiment generated from one drill source."""
    skeleton = _load(template_dir(experiments) / "experiment.json")
    shared_list = _load(template_dir(experiments) / "activities.json")
    shared = {a["name"]: a for a in shared_list}
    if len(shared) != len(shared_list):
        raise BadInput(
            f"{template_dir(experiments) / 'activities.json'}: two activities share a name",
            fix="give every shared activity its own name",
        )
    drill = _load(source)
    if not isinstance(drill, dict):
        raise BadInput(
            f"{source}: a drill source is an object (title, description, tags, "
            f"method, rollbacks, ...)",
            fix="see README, Writing experiments",
        )
    builder = _Builder(source, drill, shared)
    experiment = builder.fill(skeleton)
    unused = sorted(set(drill) - builder.used)
    if unused:
        raise builder.fail(
            f"{', '.join(map(repr, unused))} not used by experiments/_template/experiment.json",
            fix="a drill source holds title, description, tags, configuration, "
            "method and rollbacks; change the skeleton for anything shared",
        )
    return experiment


def render(experiment: dict) -> str:
    """The committed text: 2-space JSON in the sources' key order, a final newline."""
    return json.dumps(experiment, indent=2) + "\n"


def generate(experiments: Path = EXPERIMENTS_DIR) -> dict[Path, str]:
    """experiments/<name>.json -> its text, for every drill source."""
    sources = drill_sources(experiments)
    if not sources:
        raise BadInput(
            f"no drill sources in {template_dir(experiments) / 'drills'}",
            fix="run from the repository's root",
        )
    return {experiments / source.name: render(build(source, experiments)) for source in sources}


def difference(path: Path, expected: str) -> str | None:
    """None when the committed file equals the generated text, else a short diff summary."""
    actual = path.read_text() if path.exists() else None
    if actual == expected:
        return None
    if actual is None:
        return f"{path}: missing (its source is {template_dir(path.parent)}/drills/{path.name})"
    diff = list(
        difflib.unified_diff(
            actual.splitlines(),
            expected.splitlines(),
            f"{path} (committed)",
            f"{path} (generated)",
            n=0,
            lineterm="",
        )
    )
    changed = [line for line in diff[2:] if line[:1] in "+-"]
    shown = "\n".join(
        "    " + (line if len(line) <= 120 else line[:117] + "...") for line in diff[2:14]
    )
    more = f"\n    ... ({len(diff) - 14} more diff lines)" if len(diff) > 14 else ""
    return (
        f"{path}: {len(changed)} line(s) differ from the template's output (- committed, "
        f"+ generated):\n{shown}{more}"
    )


def stale(experiments: Path = EXPERIMENTS_DIR) -> list[str]:
    """What is out of date: committed files that differ from the generator's output, and
    committed experiments without a drill source."""
    generated = generate(experiments)
    problems = [d for p, text in generated.items() if (d := difference(p, text))]
    for path in sorted(experiments.glob("*.json")):
        if path not in generated:
            problems.append(f"{path}: no source {template_dir(experiments)}/drills/{path.name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgdrill.chaos.experiments",
        description="Write experiments/<name>.json from experiments/_template/.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 naming the files that differ"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=EXPERIMENTS_DIR,
        help="the experiments directory (default: experiments)",
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale(args.dir)
            for problem in problems:
                print(problem)
            if problems:
                print(f"fix: {REGENERATE}, then commit experiments/")
                return 1
            print(f"{args.dir}/*.json: as generated")
            return 0
        for path, text in generate(args.dir).items():
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                print(f"{path}: written")
            else:
                print(f"{path}: unchanged")
        for problem in stale(args.dir):
            print(problem)
        return 0
    except BadInput as exc:
        print(f"pgdrill.chaos.experiments: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
