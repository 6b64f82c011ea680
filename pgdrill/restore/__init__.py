"""Restoring: which backup to start from, checks before starting, a restore point found in
the WAL, where recovery really stopped (the position proof), facts read from the copy, and
repair from it."""
