"""SQL probes for steady-state hypotheses."""

from __future__ import annotations

from chaoslib.types import Configuration, Secrets

from pgdrill.chaos.activity import activity, ready_target
from pgdrill.core.errors import BadInput
from pgdrill.verification.checklist import normalise

__all__ = ["writes_succeed", "query_value"]


@activity
def writes_succeed(
    database: str = "app", configuration: Configuration = None, secrets: Secrets = None
) -> bool:
    """True when the primary commits a write (a row in pgdrill_heartbeat)."""
    target = ready_target(configuration, secrets)
    with target.connect(target.primary(), database) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS pgdrill_heartbeat ("
            "id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
        )
        return (
            conn.execute("INSERT INTO pgdrill_heartbeat DEFAULT VALUES RETURNING id").fetchone()
            is not None
        )


@activity
def query_value(
    sql: str,
    database: str = "app",
    instance: str = "primary",
    configuration: Configuration = None,
    secrets: Secrets = None,
):
    """The first column of the first row of `sql` (None when no row), run on `instance`:
    `primary`, `restore-test` or an instance name. Numbers and times come back as JSON."""
    target = ready_target(configuration, secrets)
    if instance == "primary":
        member = target.primary()
    elif instance == "restore-test":
        member = target.restored_instance()
        if member is None:
            raise BadInput(
                "there is no restore-test instance",
                fix="restore a backup first (actions.restore.restore_latest_backup)",
            )
    else:
        found = [m for m in target.instances() if m.name == instance]
        if not found:
            names = ", ".join(m.name for m in target.instances())
            raise BadInput(
                f"no instance named {instance!r}",
                fix=f"use primary, restore-test or one of: {names}",
            )
        member = found[0]
    with target.connect(member, database) as conn:
        row = conn.execute(sql).fetchone()
    return normalise(row[0]) if row else None
