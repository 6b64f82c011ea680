"""Module paths that moved when pgdrill was grouped by concern (0.2): the old path keeps
working for one release, with a DeprecationWarning naming the new one.

`import pgdrill.walscan` (or `from pgdrill import walscan`) finds `pgdrill.restore.walscan`
through a meta path finder; the module object is the new one, so state is shared. The two
old modules whose names are now packages (`pgdrill.evidence`, `pgdrill.credentials`) give
their old names through the package's `__getattr__` (`old_names`)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

REMOVED_IN = "0.3"

MOVED = {
    "pgdrill.errors": "pgdrill.core.errors",
    "pgdrill.console": "pgdrill.core.console",
    "pgdrill.files": "pgdrill.core.files",
    "pgdrill.times": "pgdrill.core.times",
    "pgdrill.waiting": "pgdrill.core.waiting",
    "pgdrill.procs": "pgdrill.core.procs",
    "pgdrill.yamlerrors": "pgdrill.core.yamlerrors",
    "pgdrill.model": "pgdrill.core.model",
    "pgdrill.pgbin": "pgdrill.pg.bin",
    "pgdrill.pgversions": "pgdrill.pg.versions",
    "pgdrill.replication": "pgdrill.pg.replication",
    "pgdrill.corruption": "pgdrill.pg.corruption",
    "pgdrill.amcheck": "pgdrill.verification.amcheck",
    "pgdrill.checklist": "pgdrill.verification.checklist",
    "pgdrill.fingerprint": "pgdrill.verification.fingerprint",
    "pgdrill.rpo": "pgdrill.verification.rpo",
    "pgdrill.walscan": "pgdrill.restore.walscan",
    "pgdrill.restore_plan": "pgdrill.restore.plan",
    "pgdrill.recovery_position": "pgdrill.restore.position",
    "pgdrill.restore_checks": "pgdrill.restore.checks",
    "pgdrill.restored": "pgdrill.restore.facts",
    "pgdrill.repair": "pgdrill.restore.repair",
    "pgdrill.ledger": "pgdrill.evidence.ledger",
    "pgdrill.sink": "pgdrill.evidence.sink",
    "pgdrill.runcontext": "pgdrill.evidence.runcontext",
    "pgdrill.policy": "pgdrill.evidence.policy",
    "pgdrill.logs": "pgdrill.evidence.logs",
    "pgdrill.environments": "pgdrill.credentials.environments",
    "pgdrill.s3client": "pgdrill.credentials.s3client",
    "pgdrill.sops": "pgdrill.credentials.sops",
    "pgdrill.bucket.location": "pgdrill.credentials.location",
    "pgdrill.experiments": "pgdrill.chaos.experiments",
    "pgdrill.verify": "pgdrill.verify_backup",
    "pgdrill.chaos.runfiles": "pgdrill.runs.finish",
    "pgdrill.chaos.stale": "pgdrill.runs.stale",
}


def new_name(old: str) -> str | None:
    """`pgdrill.sops.tree` -> `pgdrill.credentials.sops.tree`; None if it did not move."""
    for prefix, target in MOVED.items():
        if old == prefix or old.startswith(prefix + "."):
            return target + old[len(prefix) :]
    return None


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} moved to {new}; the old path goes in pgdrill {REMOVED_IN}",
        DeprecationWarning,
        stacklevel=3,
    )


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec) -> ModuleType:
        _warn(spec.name, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """The new module is already executed."""


class MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = new_name(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())


def old_names(package: str, module: str, name: str):
    """For a package's `__getattr__`: a name the old module `package` had, now in `module`."""
    target = importlib.import_module(module)
    if name.startswith("__") or not hasattr(target, name):
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    _warn(f"{package}.{name}", f"{module}.{name}")
    return getattr(target, name)
