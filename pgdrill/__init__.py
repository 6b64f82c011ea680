"""pgdrill: chaos and recovery drills for PostgreSQL on CloudNativePG, with evidence."""

__version__ = "0.1.0"
