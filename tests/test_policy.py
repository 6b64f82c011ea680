from datetime import UTC, datetime, timedelta

from pgdrill.policy import production_refusal, staging_proof

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MONTH = timedelta(days=30)


def ev(environment="staging", verdict="passed", days_ago=1, experiment="pvc-loss"):
    return {"experiment": experiment, "environment": environment, "verdict": verdict,
            "ended_at": (NOW - timedelta(days=days_ago)).isoformat()}


def test_non_production_always_runs():
    assert production_refusal("staging", "pvc-loss", [], NOW, MONTH) is None
    assert production_refusal("sandbox", "pvc-loss", [], NOW, MONTH) is None


def test_production_needs_recent_passing_staging_evidence_of_the_same_experiment():
    assert production_refusal("production", "pvc-loss", [ev()], NOW, MONTH) is None
    for bad in ([], [ev(verdict="failed")], [ev(days_ago=31)], [ev(environment="develop")],
                [ev(experiment="table-corruption")]):
        reason = production_refusal("production", "pvc-loss", bad, NOW, MONTH)
        assert reason and "non-prod first" in reason and "30 days" in reason


def test_the_newest_proof_is_returned():
    newest = ev(days_ago=1)
    assert staging_proof("pvc-loss", [ev(days_ago=5), newest], NOW, MONTH) is newest


def test_production_drill_is_refused_before_anything_runs(tmp_path):
    import json

    import pytest
    from chaoslib.exceptions import InterruptExecution

    from pgdrill.chaos.control import after_experiment_control, before_experiment_control

    cfg = {"environment": "production", "reports_dir": str(tmp_path),
           "pgdrill_target": "no-such-target"}  # never reached: the policy refuses first
    with pytest.raises(InterruptExecution, match="non-prod first"):
        before_experiment_control({"title": "t"}, configuration=cfg,
                                  experiment_name_override="pvc-loss")
    journal = {"status": "interrupted", "deviated": False, "run": [], "rollbacks": [],
               "steady_states": {"before": None, "after": None, "during": []}}
    after_experiment_control({}, state=journal, configuration=cfg)
    evidence = json.loads(next(tmp_path.glob("*-pvc-loss/evidence.json")).read_text())
    assert evidence["verdict"] == "interrupted"
    assert "preflight refused" in evidence["reasons"][0]
