"""`chaos discover --no-install pgdrill`: every pgdrill activity with its docstring.

The one `discover()`: the packages of the pgdrill distribution (`pgdrill`, `actions`,
`probes`) re-export it, since Chaos Toolkit picks whichever top-level package it finds first.
The activity modules are read from the `actions` and `probes` packages themselves, so a new
module is discovered without being listed here."""

from __future__ import annotations

import importlib
import pkgutil

from chaoslib.discovery.discover import (
    discover_actions,
    discover_probes,
    initialize_discovery_result,
)

from pgdrill import __version__

__all__ = ["activity_modules", "discover"]

ACTIVITY_PACKAGES = {"actions": discover_actions, "probes": discover_probes}


def activity_modules(package: str) -> list[str]:
    """Every public module of an activity package (`actions` or `probes`), sorted."""
    path = importlib.import_module(package).__path__
    return sorted(
        f"{package}.{info.name}"
        for info in pkgutil.iter_modules(path)
        if not info.name.startswith("_")
    )


def discover(discover_system: bool = True) -> dict:
    """Discover pgdrill's actions and probes."""
    discovery = initialize_discovery_result("pgdrill", __version__, "pgdrill")
    for package, discover_activities in ACTIVITY_PACKAGES.items():
        for module in activity_modules(package):
            discovery["activities"].extend(discover_activities(module))
    return discovery
