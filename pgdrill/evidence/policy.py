"""Guardrails, as pure functions over the verified run ledger (pgdrill.evidence.ledger): no I/O
here, the caller loads `ledger.verified_entries(...)` and the target's backups.

- Environments: `develop` (the default, and always the sandbox), `staging`, `production`.
- Non-prod first: a production drill needs `allow_production` and a passing staging run of the
  same experiment on the same kind of target within the last `window_days`.
- Whole-cluster destruction (the cluster-loss drill) runs in develop and staging only: in
  production it is refused whatever the ledger or `allow_production` say.
- No backup without restore: a backup is verified only when the ledger holds a passing run
  that restored exactly that backup of that cluster (by PostgreSQL system identifier)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from pgdrill.core.model import Backup

DEVELOP = "develop"
STAGING = "staging"
PRODUCTION = "production"
ENVIRONMENTS = (DEVELOP, STAGING, PRODUCTION)
ALIASES = {"prod": PRODUCTION}
DEFAULT_ENVIRONMENT = DEVELOP
SANDBOX = "sandbox"
PASSED = "passed"
NEVER = datetime.min.replace(tzinfo=UTC)


def normalize_environment(environment: str | None) -> str | None:
    """The canonical environment name (`prod` → `production`; empty → the default), or None
    when the name is unknown."""
    name = (environment or DEFAULT_ENVIRONMENT).strip().lower() or DEFAULT_ENVIRONMENT
    name = ALIASES.get(name, name)
    return name if name in ENVIRONMENTS else None


def is_production(environment: str | None) -> bool:
    """True for `production` (or `prod`)."""
    return normalize_environment(environment) == PRODUCTION


def environment_refusal(target_kind: str, environment: str | None) -> str | None:
    """Why a drill may not run in `environment` on a `target_kind` target, or None.

    Unknown environment names are refused; the sandbox is always a develop environment."""
    name = normalize_environment(environment)
    if name is None:
        return (
            f"unknown environment {environment!r}: use one of {', '.join(ENVIRONMENTS)} "
            f"(or prod for production)"
        )
    if target_kind == SANDBOX and name != DEVELOP:
        return (
            f"the sandbox is a develop environment; {name} drills need a real cluster "
            f"(pgdrill_target: cnpg), so environment {environment!r} is refused on the "
            f"sandbox"
        )
    return None


# Experiments that destroy a whole cluster (every instance and its storage) and rebuild it
# from the bucket: never in production, not even with allow_production and a staging proof.
NEVER_IN_PRODUCTION = ("cluster-loss",)
DESTROY_ALLOWED = (DEVELOP, STAGING)


def destruction_refusal(environment: str | None, experiment: str | None = None) -> str | None:
    """Why destroying a whole cluster is refused in `environment`, or None (develop and
    staging only). With `experiment`, only experiments in NEVER_IN_PRODUCTION are judged."""
    if experiment is not None and experiment not in NEVER_IN_PRODUCTION:
        return None
    name = normalize_environment(environment)
    if name in DESTROY_ALLOWED:
        return None
    what = f"{experiment!r} destroys" if experiment else "destroying"
    return (
        f"{what} a whole cluster (every instance and its storage): refused in environment "
        f"{environment!r}, only develop and staging may run it, whatever allow_production "
        f"and the ledger say"
    )


def _ended_at(entry: Mapping) -> datetime | None:
    try:
        ended = datetime.fromisoformat(str(entry.get("ended_at")))
    except ValueError:
        return None
    return ended if ended.tzinfo is not None else None


def staging_proof(
    experiment: str,
    target_kind: str,
    entries: Iterable[Mapping],
    now: datetime,
    window_days: float = 30,
) -> Mapping | None:
    """The newest passing staging run of `experiment` on a `target_kind` target that ended
    within `window_days` of `now`, or None."""
    since = now - timedelta(days=window_days)
    best: tuple[datetime, int, Mapping] | None = None
    for entry in entries:
        if (
            entry.get("experiment") != experiment
            or entry.get("verdict") != PASSED
            or entry.get("target") != target_kind
            or normalize_environment(entry.get("environment")) != STAGING
        ):
            continue
        ended = _ended_at(entry)
        if ended is None or not since <= ended <= now:
            continue
        key = (ended, int(entry.get("seq") or 0))
        if best is None or key > best[:2]:
            best = (*key, entry)
    return best[2] if best else None


def production_refusal(
    environment: str | None,
    experiment: str,
    target_kind: str,
    entries: Iterable[Mapping],
    now: datetime,
    window_days: float = 30,
    allow_production: bool = False,
) -> str | None:
    """Why a production drill must not run (naming everything that is missing), or None.

    Non-production environments are never refused here (see `environment_refusal`). A
    production drill needs `allow_production` AND a passing staging run of the same
    experiment on the same kind of target in the (verified) ledger within `window_days`."""
    if not is_production(environment):
        return None
    proof = staging_proof(experiment, target_kind, entries, now, window_days)
    missing = []
    if proof is None:
        missing.append(
            f"no passing staging run of {experiment!r} on a {target_kind} target "
            f"in the ledger within the last {window_days:g} days"
        )
    if not allow_production:
        missing.append("allow_production is not set")
    if not missing:
        return None
    found = (
        f" (the staging proof is there: run {proof.get('run_id')} ended {proof.get('ended_at')})"
        if proof is not None
        else ""
    )
    return (
        f"production drill of {experiment!r} refused (guardrail: non-prod first): "
        + "; ".join(missing)
        + found
    )


def verified_backups(entries: Iterable[Mapping], cluster_identity: str | None) -> dict[str, str]:
    """Backup id → run id of the newest passing run that restored exactly that backup of the
    cluster whose PostgreSQL system identifier is `cluster_identity`.

    No backup without restore: only these backups count as verified."""
    if cluster_identity is None:
        return {}
    newest: dict[str, tuple[datetime, int, str]] = {}
    for entry in entries:
        backup = entry.get("backup")
        if (
            entry.get("verdict") != PASSED
            or not isinstance(backup, Mapping)
            or not backup.get("id")
            or entry.get("cluster_identity") is None
            or str(entry["cluster_identity"]) != str(cluster_identity)
        ):
            continue
        key = (_ended_at(entry) or NEVER, int(entry.get("seq") or 0), str(entry.get("run_id")))
        if backup["id"] not in newest or key[:2] > newest[backup["id"]][:2]:
            newest[backup["id"]] = key
    return {backup_id: key[2] for backup_id, key in newest.items()}


def backup_gate(
    backups: Iterable[Backup],
    verified: Mapping[str, str],
    now: datetime,
    max_age_days: float | None = None,
) -> str | None:
    """Why `--require-verified` fails, naming the backups, or None when it passes.

    Without `max_age_days`, the newest completed backup must be verified. With it, some
    verified backup must have ended within the last `max_age_days` days (daily backups with
    monthly drills: the newest backup is usually not drilled yet). No completed backup at
    all fails."""
    done = sorted(
        (b for b in backups if b.completed and b.end_time is not None),
        key=lambda b: (b.end_time, b.id),
    )
    if not done:
        return "the object store holds no completed backup"
    proven = [b for b in done if b.id in verified]
    proven_text = (
        f"the newest verified backup is {proven[-1].id} (ended "
        f"{proven[-1].end_time.isoformat()}, by run {verified[proven[-1].id]})"
        if proven
        else "no backup is verified"
    )
    if max_age_days is None:
        newest = done[-1]
        if newest.id in verified:
            return None
        return (
            f"the newest backup {newest.id} (ended {newest.end_time.isoformat()}) has no "
            f"passing restore drill in the ledger; {proven_text}"
        )
    since = now - timedelta(days=max_age_days)
    if any(b.end_time >= since for b in proven):
        return None
    recent = [b.id for b in done if b.end_time >= since]
    recent_text = (
        f"unverified backups of that period: {', '.join(recent)}"
        if recent
        else "no backup ended in that period"
    )
    return (
        f"no backup that ended within the last {max_age_days:g} days has a passing restore "
        f"drill in the ledger ({recent_text}); {proven_text}"
    )
