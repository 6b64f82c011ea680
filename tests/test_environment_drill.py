"""An environment file drives a real drill: its settings reach the verdict, and on the sandbox
a credentials file other than the sandbox's own is refused before anything runs."""

import json

import pytest

from tests.conftest import run_chaos

pytestmark = pytest.mark.sandbox


def evidence_of(tmp_path):
    folder = max((p for p in (tmp_path / "reports").iterdir() if p.is_dir()),
                 key=lambda p: p.name)
    return json.loads((folder / "evidence.json").read_text())


def test_an_environment_files_settings_reach_the_verdict(sandbox, sandbox_env, tmp_path):
    env_file = tmp_path / "develop.yaml"
    env_file.write_text("environment: develop\ntarget: sandbox\ncluster: sandbox\n"
                        "settings:\n  rto_objective_seconds: 0.001\n")
    out = run_chaos("experiments/pitr-restore-point.json",
                    {**sandbox_env, "PGDRILL_ENVIRONMENT_FILE": str(env_file)}, tmp_path)
    evidence = evidence_of(tmp_path)
    assert out.returncode != 0
    assert evidence["verdict"] == "failed"
    assert evidence["objectives"]["rto"]["objective_seconds"] == 0.001
    assert any("exceeds the objective of 0.001s" in r for r in evidence["reasons"])


def test_another_credentials_file_is_refused_on_the_sandbox(sandbox, sandbox_env, tmp_path):
    env_file = tmp_path / "develop.yaml"
    env_file.write_text("environment: develop\ntarget: sandbox\n"
                        "credentials: clusters/staging/cnpg-backup-s3.enc.yaml\n")
    out = run_chaos("experiments/pitr-restore-point.json",
                    {**sandbox_env, "PGDRILL_ENVIRONMENT_FILE": str(env_file)}, tmp_path)
    evidence = evidence_of(tmp_path)
    assert out.returncode != 0 and evidence["verdict"] == "refused"
    assert "is for a real cluster (pgdrill_target: cnpg)" in evidence["reasons"][0]
