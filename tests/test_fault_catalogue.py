"""Each fault experiment of the catalogue, through `chaos run`, under load, on a real sandbox."""

import json

import pytest

from pgdrill.targets.sandbox.cluster import ARCHIVE_TIMEOUT_S
from tests.conftest import only_run_folder, run_chaos
from tests.test_evidence import validate

pytestmark = pytest.mark.sandbox


def run_and_load_evidence(experiment, env, tmp_path):
    out = run_chaos(experiment, env, tmp_path)
    folder = only_run_folder(tmp_path / "reports")
    evidence = json.loads((folder / "evidence.json").read_text())
    assert out.returncode == 0, (evidence["reasons"], out.stdout[-3000:], out.stderr[-3000:])
    journal = json.loads((folder / "journal.json").read_text())
    assert journal["status"] == "completed" and journal["deviated"] is False
    assert journal["steady_states"]["after"]["steady_state_met"] is True
    assert evidence["verdict"] == "passed", evidence["reasons"]
    validate(evidence)
    assert evidence["load"]["requests"] > 0
    rpo = evidence["rpo"]
    assert rpo["acknowledged_writes"] > 0
    # what a copy may lack is bounded: at most the WAL not yet archived, archive_timeout
    assert rpo["rpo_seconds"] <= ARCHIVE_TIMEOUT_S + 2
    assert len(rpo["lost_examples"]) == min(5, rpo["lost_writes"])
    assert evidence["objectives"]["rpo"]["met"] is True
    assert evidence["restore"]["position_ok"] is True
    assert evidence["amcheck"]["passed"] is True
    assert all(r["status"] == "succeeded" for r in journal["rollbacks"]), journal["rollbacks"]
    assert evidence["validation"] and all(v["passed"] for v in evidence["validation"])
    return evidence


@pytest.mark.parametrize("experiment", ["primary-pod-loss", "backup-restore"])
def test_experiment_passes_under_load(experiment, sandbox_env, tmp_path):
    evidence = run_and_load_evidence(f"experiments/{experiment}.json", sandbox_env, tmp_path)
    assert evidence["fingerprints"]["match"] is True
    if experiment == "primary-pod-loss":
        assert evidence["fault"]["kind"] == "delete_primary_pod"
        assert evidence["failover"]["seconds"] > 0
        assert evidence["failover"]["acknowledged_writes"] > 0
        assert len(evidence["failover"]["lost_examples"]) == min(
            5, evidence["failover"]["lost_writes"]
        )


@pytest.mark.parametrize("mode", ["logical", "physical"])
def test_table_corruption_is_undone_by_pitr(mode, sandbox_env, tmp_path):
    env = {**sandbox_env, "PGDRILL_CORRUPTION_MODE": mode}
    evidence = run_and_load_evidence("experiments/table-corruption.json", env, tmp_path)
    assert evidence["fault"]["mode"] == mode
    if mode == "physical":
        assert evidence["fault"]["detected"] is True
    else:
        assert evidence["fault"]["rows_deleted"] + evidence["fault"]["rows_updated"] > 0
    assert evidence["fingerprints"]["match"] is True
    assert evidence["fingerprints"]["reference"] == "pre-corruption"
    assert evidence["restore"]["target"]["kind"] == "restore_point"
    point = evidence["restore_points"]["pre-corruption"]
    assert evidence["restore"]["reached"]["lsn"] == point["lsn"]
    assert evidence["rpo"]["lost_writes"] == 0  # a restore point loses nothing acked before it
    # the repair ran only because the copy proved itself, and put back every row
    assert evidence["repair"] == {
        "table": "pgbench_accounts",
        "reference": "pre-corruption",
        "performed": True,
        "rows": 100000,
        "refused": [],
    }
