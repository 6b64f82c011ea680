"""Repairing a damaged table on the primary from the restored copy — only when that cannot
make things worse.

The copy is trusted only when its checklist passed, recovery stopped exactly at the requested
position, and its fingerprints equal those captured before the damage. The repair itself is
one transaction on the primary (TRUNCATE, COPY from the copy), fingerprinted before COMMIT:
unless the repaired table equals the pre-damage fingerprint, it is rolled back and the primary
keeps the table as it was."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql

from pgdrill.core.errors import PgdrillError
from pgdrill.verification.fingerprint import (
    TableFingerprint,
    compare_fingerprints,
    fingerprint_like,
)


class RepairRefused(PgdrillError):
    """The copy is not trustworthy enough to overwrite the primary's table."""


@dataclass
class RepairReport:
    table: str
    reference: str | None
    performed: bool = False
    rows: int | None = None
    refused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def reference_for(context: dict, table: str, label: str) -> TableFingerprint | None:
    """The fingerprint of `table` captured under `label` ("t" matches "public.t")."""
    stored = (context.get("fingerprints_reference") or {}).get(label) or {}
    for name, fp in stored.items():
        if name == table or name.endswith("." + table):
            return TableFingerprint.from_dict(fp)
    return None


def repair_refusals(context: dict, table: str, label: str | None) -> list[str]:
    """Why the restored copy must not be copied into the primary (pure). Empty = trusted."""
    reasons = []
    validation = context.get("validation") or []
    if not validation:
        reasons.append("the restored copy was never validated by its checklist")
    failing = [v["name"] for v in validation if not v.get("passed")]
    if failing:
        reasons.append("the restored copy failed its checklist: " + ", ".join(failing))
    restore = context.get("restore") or {}
    if not restore:
        reasons.append("there was no restore in this run")
    elif restore.get("position_ok") is not True:
        reasons.append(
            "recovery did not provably stop at the requested position"
            + (f": {restore['position_error']}" if restore.get("position_error") else "")
        )
    if label is None:
        reasons.append("the restore had no restore point to compare the table with")
        return reasons
    if reference_for(context, table, label) is None:
        reasons.append(f"no fingerprint of {table} was captured at {label!r}")
    fingerprints = context.get("fingerprints") or {}
    if fingerprints.get("reference") != label:
        reasons.append(f"the restored copy's fingerprints were not compared with {label!r}")
    elif not fingerprints.get("match"):
        reasons.append(f"the restored copy's fingerprints differ from those at {label!r}")
    return reasons


def copy_table_checked(
    source: psycopg.Connection, primary: psycopg.Connection, table: str, reference: TableFingerprint
) -> int:
    """Replace `table` on `primary` with the rows of `source` in one transaction, and
    commit only if the result fingerprints equal to `reference`. Returns the rows copied.
    Raises RepairRefused (after ROLLBACK) when it does not."""
    ident = sql.Identifier(*table.split("."))
    try:
        with primary.transaction():
            primary.execute(sql.SQL("TRUNCATE {}").format(ident))
            with (
                source.cursor().copy(
                    sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(ident)
                ) as out,
                primary.cursor().copy(
                    sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(ident)
                ) as inp,
            ):
                for chunk in out:
                    inp.write(chunk)
            repaired = fingerprint_like(primary, reference)
            diff = compare_fingerprints({reference.table: reference}, {repaired.table: repaired})
            if not diff["match"]:
                raise RepairRefused(
                    f"the repaired {table} does not equal its fingerprint before the damage "
                    f"({repaired.rows} rows, expected {reference.rows}); rolled back, the "
                    "primary's table is unchanged"
                )
            return repaired.rows
    except psycopg.Error as exc:
        raise RepairRefused(
            f"the repair of {table} failed and was rolled back: {str(exc).strip()}"
        ) from None
