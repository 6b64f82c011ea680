"""Opt-in: the cnpg target against a REAL CloudNativePG cluster (kind or k3d on a machine with a
container engine; see README.md beside this file). It checks what the fake API server cannot:
RBAC as enforced, admission webhooks, CRD defaulting, grace periods, scheduling and CNPG's own
reconciliation.

    PGDRILL_REAL_CLUSTER_ENV=environments/kind.yaml .venv/bin/python -m pytest tests/real_cluster

Without PGDRILL_REAL_CLUSTER_ENV every test here is skipped (CI has no cluster). With
PGDRILL_REAL_CLUSTER_FAULTS=1 it also deletes the primary pod and drops a PVC: only on a
throw-away cluster."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.conftest import CHAOS, PGDRILL, REPO, newest_evidence

ENV_FILE = os.environ.get("PGDRILL_REAL_CLUSTER_ENV")
pytestmark = [
    pytest.mark.real_cluster,
    pytest.mark.skipif(
        not ENV_FILE,
        reason="opt-in: set PGDRILL_REAL_CLUSTER_ENV to an environment file (target cnpg)",
    ),
]
FAULTS = (
    ["primary-pod-loss", "pvc-loss"] if os.environ.get("PGDRILL_REAL_CLUSTER_FAULTS") == "1" else []
)


def settings() -> dict:
    return yaml.safe_load(open(ENV_FILE))


def drill(experiment: str, tmp_path) -> tuple[subprocess.CompletedProcess, dict]:
    env = {
        **os.environ,
        "PGDRILL_ENVIRONMENT_FILE": ENV_FILE,
        "PGDRILL_REPORTS": str(tmp_path / "reports"),
    }
    out = subprocess.run(
        [
            CHAOS,
            "--no-version-check",
            "--no-log-file",
            "run",
            "--journal-path",
            str(tmp_path / "journal.json"),
            f"experiments/{experiment}.json",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return out, newest_evidence(tmp_path / "reports")


def test_plan_reads_the_cluster_and_every_manifest_passes_the_real_api_server_dry_run(tmp_path):
    cfg = settings()
    plan = subprocess.run(
        [
            PGDRILL,
            "plan",
            "experiments/backup-restore.json",
            "--target",
            "cnpg",
            "--cluster",
            cfg["cluster"],
            "--namespace",
            cfg["namespace"],
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plan.returncode == 0, plan.stderr
    (tmp_path / "plan.yaml").write_text(plan.stdout)
    # the real API server's admission (CNPG's webhooks included) on what pgdrill would create
    check = subprocess.run(
        ["kubectl", "apply", "--dry-run=server", "-f", str(tmp_path / "plan.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("experiment", ["backup-restore", *FAULTS])
def test_drill_passes_on_the_real_cluster(experiment, tmp_path):
    out, evidence = drill(experiment, tmp_path)
    assert out.returncode == 0 and evidence["verdict"] == "passed", (
        evidence.get("reasons"),
        out.stdout[-3000:],
    )
    assert evidence["target"] == "cnpg" and evidence["restore"]["position_ok"] is True
