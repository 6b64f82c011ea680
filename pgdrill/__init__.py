"""pgdrill: chaos and recovery drills for PostgreSQL on CloudNativePG, with evidence."""

__version__ = "0.1.0"

__all__ = ["discover"]

# old module paths (before the layout by concern) keep working for one release
from pgdrill import _moved

_moved.install()


def __getattr__(name: str):
    # `discover` (for `chaos discover`) is pgdrill.chaos.discovery's, imported on first use:
    # everything imports pgdrill, and chaoslib costs ~50 ms to import.
    if name == "discover":
        from pgdrill.chaos.discovery import discover

        return discover
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # chaoslib finds `discover` through dir(), so it is listed before it is imported
    return sorted({*globals(), *__all__})
