"""libpq connection strings pgdrill builds itself."""

from __future__ import annotations

from pgdrill.core.errors import BadInput


def conninfo_for(
    hosts: list[tuple[str, int]], dbname: str, user: str, connect_timeout: int = 2
) -> str:
    """A libpq multi-host connection string that always lands on the writable instance."""
    if not hosts:
        raise BadInput("no instances to send the load to")
    return (
        f"host={','.join(h for h, _ in hosts)} port={','.join(str(p) for _, p in hosts)} "
        f"dbname={dbname} user={user} target_session_attrs=read-write "
        f"connect_timeout={connect_timeout}"
    )
