"""Guardrails as pure functions over ledger entries: environments, non-prod first, and
no backup without restore (the --require-verified gate)."""

from datetime import UTC, datetime, timedelta

import pytest

from pgdrill.core.model import Backup
from pgdrill.evidence.policy import (
    DEFAULT_ENVIRONMENT,
    backup_gate,
    environment_refusal,
    is_production,
    normalize_environment,
    production_refusal,
    staging_proof,
    verified_backups,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
IDENTITY = "7714097768629908191"


def entry(
    environment="staging",
    verdict="passed",
    days_ago=1.0,
    experiment="pvc-loss",
    target="cnpg",
    seq=1,
    run_id=None,
    backup_id=None,
    identity=IDENTITY,
):
    return {
        "seq": seq,
        "run_id": run_id or f"run-{seq}",
        "experiment": experiment,
        "environment": environment,
        "target": target,
        "verdict": verdict,
        "cluster_identity": identity,
        "backup": {
            "id": backup_id,
            "begin_lsn": "0/4000028",
            "end_lsn": "0/4000120",
            "end_time": None,
        }
        if backup_id
        else None,
        "ended_at": (NOW - timedelta(days=days_ago)).isoformat(),
    }


def backup(backup_id, days_ago, status="DONE"):
    end = NOW - timedelta(days=days_ago)
    return Backup(
        id=backup_id,
        status=status,
        begin_time=end - timedelta(minutes=5),
        end_time=end,
        begin_lsn="0/4000028",
        end_lsn="0/4000120",
        size=4805220,
    )


# -- environments -------------------------------------------------------------------------------
def test_environment_names():
    assert DEFAULT_ENVIRONMENT == "develop"
    assert normalize_environment("prod") == normalize_environment(" Production ") == "production"
    assert normalize_environment(None) == normalize_environment("") == "develop"
    assert normalize_environment("qa") is None
    assert is_production("prod") and is_production("production")
    assert not is_production("staging") and not is_production("develop")


def test_the_sandbox_is_always_develop():
    assert environment_refusal("sandbox", "develop") is None
    assert environment_refusal("sandbox", None) is None
    for env in ("staging", "production", "prod"):
        reason = environment_refusal("sandbox", env)
        assert reason and "develop environment" in reason and "cnpg" in reason


def test_real_clusters_take_every_known_environment_and_unknown_names_are_refused():
    for env in ("develop", "staging", "production", "prod"):
        assert environment_refusal("cnpg", env) is None
    for kind in ("sandbox", "cnpg"):
        reason = environment_refusal(kind, "qa")
        assert reason and "unknown environment 'qa'" in reason and "staging" in reason


# -- non-prod first -----------------------------------------------------------------------------
def refusal(entries, environment="production", allow=True, kind="cnpg", **kw):
    return production_refusal(
        environment, "pvc-loss", kind, entries, NOW, allow_production=allow, **kw
    )


def test_non_production_is_never_refused_here():
    assert refusal([], environment="staging", allow=False) is None
    assert refusal([], environment="develop", allow=False) is None


def test_production_needs_a_recent_passing_staging_run_and_allow_production():
    assert refusal([entry()]) is None
    assert refusal([entry()], environment="prod") is None


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [entry(verdict="failed")],
        [entry(verdict="interrupted")],
        [entry(days_ago=31)],
        [entry(environment="develop")],
        [entry(environment="production")],
        [entry(experiment="table-corruption")],
        [entry(target="sandbox")],
        [entry(days_ago=-1)],  # ended in the future: not a proof
    ],
)
def test_what_does_not_count_as_staging_proof(bad):
    reason = refusal(bad)
    assert reason == (
        "production drill of 'pvc-loss' refused (guardrail: non-prod first): no "
        "passing staging run of 'pvc-loss' on a cnpg target in the ledger within "
        "the last 30 days"
    )


def test_the_refusal_names_everything_missing():
    both = refusal([], allow=False)
    assert "no passing staging run" in both and "allow_production is not set" in both
    only_allow = refusal([entry(run_id="20261123T120000Z-pvc-loss")], allow=False)
    assert "allow_production is not set" in only_allow and "no passing" not in only_allow
    assert "staging" in only_allow and "20261123T120000Z-pvc-loss" in only_allow


def test_the_window_is_configurable():
    assert refusal([entry(days_ago=10)], window_days=7) is not None
    assert "within the last 7 days" in refusal([entry(days_ago=10)], window_days=7)
    assert refusal([entry(days_ago=10)], window_days=14) is None


def test_the_newest_proof_is_returned():
    newest = entry(days_ago=1, seq=3)
    entries = [entry(days_ago=5, seq=1), newest, entry(days_ago=2, seq=2)]
    assert staging_proof("pvc-loss", "cnpg", entries, NOW) is newest
    assert staging_proof("pvc-loss", "sandbox", entries, NOW) is None


# -- no backup without restore ------------------------------------------------------------------
def test_a_backup_is_verified_only_by_a_passing_restore_of_it_on_the_same_cluster():
    entries = [
        entry(seq=1, days_ago=9, backup_id="b1", run_id="old-pass"),
        entry(seq=2, days_ago=3, backup_id="b1", run_id="new-pass"),
        entry(seq=3, days_ago=1, backup_id="b1", verdict="failed", run_id="newest-fail"),
        entry(seq=4, backup_id="b2", verdict="failed"),
        entry(seq=5, backup_id="b3", identity="1111"),
        entry(seq=6, backup_id="b4", identity=None),
        entry(seq=7),  # passed without restoring anything
    ]
    assert verified_backups(entries, IDENTITY) == {"b1": "new-pass"}
    assert verified_backups(entries, "1111") == {"b3": "run-5"}
    assert verified_backups(entries, None) == {}


def test_the_gate_without_a_max_age_needs_the_newest_backup_verified():
    backups = [backup("b1", 10), backup("b2", 1), backup("b3", 0.5, status="FAILED")]
    assert backup_gate(backups, {"b2": "run-9"}, NOW) is None
    reason = backup_gate(backups, {"b1": "run-1"}, NOW)
    assert "newest backup b2" in reason and "b1" in reason and "run-1" in reason
    assert "no backup is verified" in backup_gate(backups, {}, NOW)


def test_the_gate_with_a_max_age_needs_some_recent_verified_backup():
    backups = [backup("b1", 40), backup("b2", 20), backup("b3", 1)]
    assert backup_gate(backups, {"b2": "run-2"}, NOW, max_age_days=35) is None
    reason = backup_gate(backups, {"b1": "run-1"}, NOW, max_age_days=35)
    assert "35 days" in reason and "b2, b3" in reason and "b1" in reason
    assert "no backup ended in that period" in backup_gate(
        [backup("b1", 40)], {"b1": "r"}, NOW, max_age_days=7
    )


def test_no_backup_fails_the_gate():
    for max_age in (None, 35):
        assert "no completed backup" in backup_gate([], {}, NOW, max_age_days=max_age)
        assert "no completed backup" in backup_gate(
            [backup("b1", 1, status="FAILED")], {"b1": "r"}, NOW, max_age_days=max_age
        )
