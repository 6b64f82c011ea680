"""Each fault experiment of the catalogue, through `chaos run`, under load, on a real sandbox."""

import json

import pytest

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
    assert isinstance(rpo["acknowledged_writes"], int) and rpo["acknowledged_writes"] > 0
    assert isinstance(rpo["lost_writes"], int) and rpo["lost_writes"] >= 0
    assert evidence["objectives"]["rpo"]["met"] is True
    assert evidence["validation"] and all(v["passed"] for v in evidence["validation"])
    return evidence


@pytest.mark.parametrize("experiment", ["primary-pod-loss", "backup-restore"])
def test_experiment_passes_under_load(experiment, sandbox_env, tmp_path):
    evidence = run_and_load_evidence(f"experiments/{experiment}.json", sandbox_env, tmp_path)
    assert evidence["fingerprints"]["match"] is True
    if experiment == "primary-pod-loss":
        assert evidence["fault"]["kind"] == "delete_primary_pod"
        assert evidence["failover"]["seconds"] > 0
        assert isinstance(evidence["failover"]["lost_writes"], int)


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
    assert evidence["rpo"]["lost_writes"] == 0      # a restore point loses nothing acked before it
