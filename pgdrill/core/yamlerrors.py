"""Where a YAML parse error is, for one-line messages (FILE:LINE:COLUMN)."""

from __future__ import annotations


def yaml_error_position(exc: Exception) -> tuple[int, int] | None:
    """(line, column), 1-based, of a PyYAML error, or None when it has no mark."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return (mark.line + 1, mark.column + 1) if mark else None


def yaml_error_where(exc: Exception) -> str:
    """ ":LINE:COLUMN" to append to a file name, or "" when unknown."""
    position = yaml_error_position(exc)
    return f":{position[0]}:{position[1]}" if position else ""
