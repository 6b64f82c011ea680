"""What must hold before a drill touches anything: the environment is allowed on this target,
a production drill is backed by a recent passing staging run in the verified ledger, and the
target is ready (repaired in place, never rebuilt)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pgdrill import policy
from pgdrill.errors import PgdrillError, PreflightRefused


def environment_of(configuration: dict) -> str:
    return str(configuration.get("environment") or policy.DEFAULT_ENVIRONMENT).strip().lower()


def check_environment(configuration: dict, experiment: str, target_kind: str,
                      reports: Path) -> None:
    """Raise PreflightRefused naming everything missing (guardrail 3: non-prod first)."""
    environment = environment_of(configuration)
    reasons = []
    wrong_place = policy.environment_refusal(target_kind, environment)
    if wrong_place:
        reasons.append(wrong_place)
    if policy.is_production(environment):
        from pgdrill import ledger

        window = float(configuration.get("nonprod_window_days") or 30)
        try:
            entries = ledger.verified_entries(reports)
        except PgdrillError as exc:
            entries = []
            reasons.append(f"the ledger does not verify, so no staging run counts: {exc.message}")
        why = policy.production_refusal(
            environment, experiment, target_kind, entries, datetime.now(UTC),
            window_days=window, allow_production=_truthy(configuration.get("allow_production")))
        if why:
            reasons.append(why)
    if reasons:
        raise PreflightRefused(
            "; ".join(reasons),
            fix=f"run it in staging on a real cluster first (chaos run experiments/{experiment}"
            f".json --var environment:str=staging with pgdrill_target cnpg) so that its passing "
            f"run is in {reports}/ledger.jsonl, then set allow_production: true"
            if policy.is_production(environment) else
            "use environment develop on the sandbox (the default)")


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
