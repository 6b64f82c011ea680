"""pgdrill's Chaos Toolkit probes: cluster health, SQL, backups and verification. `discover`
(for `chaos discover`) is pgdrill.chaos.discovery's."""

from pgdrill.chaos.discovery import discover

__all__ = ["discover"]
