"""pgdrill's Chaos Toolkit actions: backups, faults and restores. The engine is `pgdrill`."""

from chaoslib.discovery.discover import (
    discover_actions, discover_probes, initialize_discovery_result,
)

__all__ = ["discover"]


def discover(discover_system: bool = True) -> dict:
    """Discover pgdrill's activities for `chaos discover`."""
    discovery = initialize_discovery_result("pgdrill", "0.1.0", "pgdrill")
    for module in ("actions.backup", "actions.faults", "actions.restore"):
        discovery["activities"].extend(discover_actions(module))
    for module in ("probes.backup", "probes.cluster", "probes.sql", "probes.verify"):
        discovery["activities"].extend(discover_probes(module))
    return discovery
