"""The Restore Verification Checklist: named SQL queries with expected values, in YAML.

    database: app            # optional, default app
    checks:
      - name: sentinel-row
        query: SELECT value FROM pgdrill_sentinel WHERE key = 'drill'
        expected: ok

Each query's first column of its first row is compared with `expected` (numbers compare
as numbers, anything else as text; `null` expects no row or a NULL)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import yaml

from pgdrill.core.errors import BadInput

SCHEMA = {
    "type": "object",
    "required": ["checks"],
    "additionalProperties": False,
    "properties": {
        "database": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "checks": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "query", "expected"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "query": {"type": "string", "minLength": 1},
                    "expected": {"type": ["string", "number", "boolean", "null"]},
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Check:
    name: str
    query: str
    expected: Any


@dataclass(frozen=True)
class Checklist:
    path: str
    database: str
    checks: tuple[Check, ...]


# A built-in check of every restore-test checklist, proven by the target (Target.
# restore_isolation): a checklist entry of the same name is replaced by it.
ISOLATION_CHECK = "isolated-from-source-archive"


@dataclass
class CheckResult:
    name: str
    query: str
    expected: Any
    actual: Any
    passed: bool
    error: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["error"] is None:
            del data["error"]
        return data


def parse_checklist(text: str, path: str = "<checklist>") -> Checklist:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BadInput(f"checklist {path} is not valid YAML: {exc}") from exc
    try:
        jsonschema.validate(doc, SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise BadInput(
            f"checklist {path} is malformed at {where}: {exc.message}",
            fix="each check needs name, query and expected",
        ) from exc
    names = [c["name"] for c in doc["checks"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadInput(f"checklist {path} repeats check names: {', '.join(dupes)}")
    checks = tuple(Check(c["name"], c["query"], c["expected"]) for c in doc["checks"])
    return Checklist(path=path, database=doc.get("database", "app"), checks=checks)


def load_checklist(path: str | Path) -> Checklist:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise BadInput(
            f"cannot read checklist {p}: {exc.strerror}",
            fix="pass the path of a YAML checklist (see experiments/checklists/)",
        ) from exc
    return parse_checklist(text, str(p))


def normalise(value: Any) -> Any:
    """Turn a PostgreSQL value into plain JSON: Decimal -> int/float, dates -> ISO text."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def matches(expected: Any, actual: Any) -> bool:
    """Compare an expected checklist value with a normalised actual value."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and expected == actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return float(expected) == float(actual)
    return str(expected) == str(actual)


def run_checklist(conn: psycopg.Connection, checklist: Checklist) -> list[CheckResult]:
    """Run every check (a failing query fails its check, not the others)."""
    results = []
    for check in checklist.checks:
        try:
            row = conn.execute(check.query).fetchone()
            actual = normalise(row[0]) if row else None
            results.append(
                CheckResult(
                    check.name, check.query, check.expected, actual, matches(check.expected, actual)
                )
            )
        except psycopg.Error as exc:
            results.append(
                CheckResult(
                    check.name,
                    check.query,
                    check.expected,
                    None,
                    False,
                    error=str(exc).strip().splitlines()[0],
                )
            )
    return results


def describe_failures(results: list[CheckResult]) -> str:
    parts = []
    for r in results:
        if r.passed:
            continue
        if r.error:
            parts.append(f"{r.name!r} errored: {r.error}")
        else:
            parts.append(f"{r.name!r} expected {r.expected!r}, got {r.actual!r}")
    return "; ".join(parts)


def record_validation(
    ctx,
    results: list[CheckResult],
    *,
    seconds: float,
    checklist: str,
    amcheck=None,
    copy: str = "the restored copy",
) -> None:
    """Record checklist (and pg_amcheck) results as evidence (`validation`,
    `validation_seconds`, `checklist`, `amcheck` in the run context `ctx`), say each one, and
    raise PgdrillError naming every failure: evidence-first, a copy counts only once this
    passes."""
    from pgdrill.core.console import say
    from pgdrill.core.errors import PgdrillError

    ctx.update(
        validation=[r.to_dict() for r in results],
        validation_seconds=round(seconds, 3),
        checklist=checklist,
        amcheck=amcheck.to_dict() if amcheck else None,
    )
    for r in results:
        say(
            f"  check {r.name}: {'passed' if r.passed else 'FAILED'} "
            f"(expected {r.expected!r}, got {r.actual!r})"
        )
    if not all(r.passed for r in results):
        raise PgdrillError(f"validation failed on {copy}: " + describe_failures(results))
