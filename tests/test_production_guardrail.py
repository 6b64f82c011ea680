"""Acceptance: non-prod first. A production drill on the sandbox is refused before any
activity (the primary keeps its process), the refusal names what is missing (a passing
staging run), the run's verdict is `refused` and its rollbacks report no failure; neither a
copied passing evidence file nor a sandbox run can unlock it."""

import json
import shutil
import subprocess

import pytest

from pgdrill.targets.sandbox import postgres
from tests.conftest import CHAOS, REPO, newest_run_folder, run_chaos
from tests.test_evidence import validate

pytestmark = pytest.mark.sandbox

EXPERIMENT = "experiments/primary-pod-loss.json"


def run_production(env, tmp_path, *extra):
    return subprocess.run(
        [
            CHAOS,
            "--no-version-check",
            "--no-log-file",
            "run",
            "--journal-path",
            str(tmp_path / "journal.json"),
            "--var",
            "environment:str=production",
            *extra,
            EXPERIMENT,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_production_is_refused_before_any_fault_and_nothing_unlocks_it(
    sandbox, sandbox_env, tmp_path
):
    reports = tmp_path / "reports"
    sandbox.wait_ready(timeout=120)
    primary = sandbox.primary()
    pid = postgres.postmaster_pid(sandbox.layout.data_dir(primary.name))

    # a real passing drill on the sandbox (develop), then its evidence copied as "staging"
    passed = run_chaos("experiments/backup-restore.json", sandbox_env, tmp_path)
    assert passed.returncode == 0, passed.stderr[-2000:]
    source = newest_run_folder(reports)
    forged = reports / "20200101T000000Z-primary-pod-loss"
    shutil.copytree(source, forged)
    evidence = json.loads((forged / "evidence.json").read_text())
    evidence.update(experiment="primary-pod-loss", environment="staging")
    (forged / "evidence.json").write_text(json.dumps(evidence))
    (forged / "ledger-receipt.json").unlink()

    for extra in ([], ["--var", "allow_production:bool=true"]):
        out = run_production(sandbox_env, tmp_path, *extra)
        console = out.stdout + out.stderr
        assert out.returncode != 0
        assert "staging" in console and "refused" in console
        folder = newest_run_folder(reports)
        evidence = json.loads((folder / "evidence.json").read_text())
        validate(evidence)
        assert evidence["verdict"] == "refused"
        assert "staging" in evidence["reasons"][0]
        assert "no passing staging run of 'primary-pod-loss'" in evidence["reasons"][0]
        journal = json.loads((folder / "journal.json").read_text())
        assert journal["status"] == "interrupted"
        assert journal["run"] == [] and journal["steady_states"]["before"] is None
        assert {r["status"] for r in journal["rollbacks"]} == {"succeeded"}
        assert evidence["fault"] is None
        # the primary was never touched
        assert sandbox.primary().name == primary.name
        assert postgres.postmaster_pid(sandbox.layout.data_dir(primary.name)) == pid

    # staging itself is refused on the sandbox: a sandbox run can never become the proof
    out = subprocess.run(
        [
            CHAOS,
            "--no-version-check",
            "--no-log-file",
            "run",
            "--journal-path",
            str(tmp_path / "journal.json"),
            "--var",
            "environment:str=staging",
            EXPERIMENT,
        ],
        cwd=REPO,
        env=sandbox_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode != 0
    assert "the sandbox is a develop environment" in out.stdout + out.stderr
    assert postgres.postmaster_pid(sandbox.layout.data_dir(primary.name)) == pid
