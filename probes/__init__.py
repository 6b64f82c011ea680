"""pgdrill's Chaos Toolkit probes: cluster health, SQL, backups and verification."""

__all__ = ["discover"]


def discover(discover_system: bool = True) -> dict:
    """Discover pgdrill's activities for `chaos discover` (whichever top-level package of the
    pgdrill distribution it picks)."""
    from pgdrill.chaos.discovery import discover as discover_all

    return discover_all(discover_system)
