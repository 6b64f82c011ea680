"""`chaos discover --no-install pgdrill`: every pgdrill activity with its docstring."""

from __future__ import annotations

from chaoslib.discovery.discover import (
    discover_actions, discover_probes, initialize_discovery_result,
)

from pgdrill import __version__

ACTION_MODULES = ("actions.backup", "actions.faults", "actions.load", "actions.restore")
PROBE_MODULES = ("probes.backup", "probes.cluster", "probes.sql", "probes.verify")


def discover(discover_system: bool = True) -> dict:
    """Discover pgdrill's actions and probes."""
    discovery = initialize_discovery_result("pgdrill", __version__, "pgdrill")
    for module in ACTION_MODULES:
        discovery["activities"].extend(discover_actions(module))
    for module in PROBE_MODULES:
        discovery["activities"].extend(discover_probes(module))
    return discovery
