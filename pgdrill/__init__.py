"""pgdrill: chaos and recovery drills for PostgreSQL on CloudNativePG, with evidence."""

__version__ = "0.1.0"

__all__ = ["discover"]


def discover(discover_system: bool = True) -> dict:
    """Discover pgdrill's activities for `chaos discover` (whichever top-level package of the
    pgdrill distribution it picks)."""
    from pgdrill.chaos.discovery import discover as discover_all

    return discover_all(discover_system)
