"""Guardrail 3, non-prod first: a production drill is refused unless the same experiment
passed in staging recently. Pure: the caller loads the evidence files."""

from __future__ import annotations

from datetime import datetime, timedelta

PRODUCTION = {"production", "prod"}
STAGING = "staging"


def is_production(environment: str) -> bool:
    return environment.strip().lower() in PRODUCTION


def staging_proof(experiment: str, evidences: list[dict], now: datetime,
                  max_age: timedelta) -> dict | None:
    """The newest passing staging evidence of `experiment` younger than `max_age`, or None."""
    fresh = []
    for ev in evidences:
        if (ev.get("experiment") == experiment and ev.get("environment") == STAGING
                and ev.get("verdict") == "passed" and ev.get("ended_at")):
            ended = datetime.fromisoformat(ev["ended_at"])
            if now - max_age <= ended <= now:
                fresh.append((ended, ev))
    return max(fresh, key=lambda pair: pair[0])[1] if fresh else None


def production_refusal(environment: str, experiment: str, evidences: list[dict],
                       now: datetime, max_age: timedelta) -> str | None:
    """Why a drill must not run, or None when it may."""
    if not is_production(environment):
        return None
    if staging_proof(experiment, evidences, now, max_age) is not None:
        return None
    return (f"production drill of {experiment!r} refused: no passing staging evidence of it "
            f"in the last {max_age.days} days (guardrail: non-prod first)")
