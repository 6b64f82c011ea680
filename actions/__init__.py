"""pgdrill's Chaos Toolkit actions: backups, faults, restores and the cluster rebuild. The engine
is `pgdrill`; `discover` (for `chaos discover`) is pgdrill.chaos.discovery's."""

from pgdrill.chaos.discovery import discover

__all__ = ["discover"]
