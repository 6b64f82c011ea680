"""An environment file drives a real drill: its settings reach the verdict, and on the sandbox
a credentials file other than the sandbox's own is refused before anything runs."""

import pytest

from tests.conftest import newest_evidence, run_chaos

pytestmark = pytest.mark.sandbox


def drill_with_environment_file(text: str, env: dict, tmp_path):
    """Run the PITR drill with an environment file holding `text`; (exit code, evidence)."""
    env_file = tmp_path / "develop.yaml"
    env_file.write_text(text)
    out = run_chaos(
        "experiments/pitr-restore-point.json",
        {**env, "PGDRILL_ENVIRONMENT_FILE": str(env_file)},
        tmp_path,
    )
    return out.returncode, newest_evidence(tmp_path / "reports")


def test_an_environment_files_settings_reach_the_verdict(sandbox, sandbox_env, tmp_path):
    code, evidence = drill_with_environment_file(
        "environment: develop\ntarget: sandbox\ncluster: sandbox\n"
        "settings:\n  rto_objective_seconds: 0.001\n",
        sandbox_env,
        tmp_path,
    )
    assert code != 0
    assert evidence["verdict"] == "failed"
    assert evidence["objectives"]["rto"]["objective_seconds"] == 0.001
    assert any("exceeds the objective of 0.001s" in r for r in evidence["reasons"])


def test_another_credentials_file_is_refused_on_the_sandbox(sandbox, sandbox_env, tmp_path):
    code, evidence = drill_with_environment_file(
        "environment: develop\ntarget: sandbox\n"
        "credentials: clusters/staging/cnpg-backup-s3.enc.yaml\n",
        sandbox_env,
        tmp_path,
    )
    assert code != 0 and evidence["verdict"] == "refused"
    assert "is for a real cluster (pgdrill_target: cnpg)" in evidence["reasons"][0]
