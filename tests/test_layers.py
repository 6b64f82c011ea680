"""The layer rule of docs/architecture.md, checked on every import in the tree (module level
and inside functions): a module imports only from its own layer or the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# lowest first; the same list, with what each layer is, is in docs/architecture.md
LAYERS: list[tuple[str, ...]] = [
    ("pgdrill.core",),
    ("pgdrill.pg", "pgdrill.credentials"),
    ("pgdrill.verification", "pgdrill.restore"),
    ("pgdrill.evidence",),
    ("pgdrill.targets",),
    ("pgdrill.bucket", "pgdrill.load", "pgdrill.reports", "pgdrill.runs", "pgdrill.verify_backup"),
    ("pgdrill.chaos",),
    ("pgdrill.commands", "pgdrill.cli"),
    ("actions", "probes"),
]
# the package root holds only __version__, the `chaos discover` entry point (imported on
# first use) and the finder for moved module paths: it belongs to no layer
ROOT_MODULES = {"pgdrill", "pgdrill._moved"}


def layer_of(module: str) -> int | None:
    for rank, packages in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in packages):
            return rank
    return None


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement of a file, relative ones resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from pgdrill import x` imports pgdrill.x
            found += [
                (node.lineno, f"{target}.{a.name}")
                for a in node.names
                if layer_of(target) is None and layer_of(f"{target}.{a.name}") is not None
            ]
    return found


def sources(root: Path = REPO) -> list[Path]:
    return sorted(
        p
        for top in ("pgdrill", "actions", "probes")
        for p in (root / top).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def violations(root: Path = REPO) -> list[str]:
    out = []
    for path in sources(root):
        name = module_name(path, root)
        if name in ROOT_MODULES:
            continue
        own = layer_of(name)
        assert own is not None, f"{name} is in no layer of docs/architecture.md"
        for line, target in imports_of(path, root):
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                out.append(
                    f"{path.relative_to(root)}:{line}: {name} (layer {own}) imports "
                    f"{target} (layer {theirs})"
                )
    return out


def test_no_import_points_up_a_layer():
    assert violations() == []


def test_every_package_is_in_a_layer():
    packages = {module_name(p.parent) for p in sources() if p.name == "__init__.py"}
    assert [p for p in sorted(packages) if p not in ROOT_MODULES and layer_of(p) is None] == []


def test_the_rule_catches_an_import_up_a_layer(tmp_path):
    """A target that imports the chaos layer inside a function, and a relative import from
    a sibling package of a higher layer, are reported: the check can fail."""
    (tmp_path / "pgdrill" / "targets").mkdir(parents=True)
    (tmp_path / "pgdrill" / "targets" / "probe.py").write_text(
        "def f():\n    from pgdrill.chaos import activity\n"
    )
    (tmp_path / "pgdrill" / "core").mkdir()
    (tmp_path / "pgdrill" / "core" / "bad.py").write_text("from ..targets import probe\n")
    assert violations(tmp_path) == [
        "pgdrill/core/bad.py:1: pgdrill.core.bad (layer 0) imports pgdrill.targets (layer 4)",
        "pgdrill/targets/probe.py:2: pgdrill.targets.probe (layer 4) imports pgdrill.chaos "
        "(layer 6)",
    ]


def test_architecture_doc_lists_the_same_layers():
    doc = (REPO / "docs" / "architecture.md").read_text()
    for packages in LAYERS:
        for package in packages:
            assert f"`{package.replace('.', '/')}" in doc or f"`{package}" in doc, package


@pytest.mark.parametrize(
    "old,new",
    [
        ("pgdrill.walscan", "pgdrill.restore.walscan"),
        ("pgdrill.sops.tree", "pgdrill.credentials.sops.tree"),
    ],
)
def test_an_old_module_path_still_imports_with_a_warning(old, new):
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
