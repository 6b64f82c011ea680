"""Evidence that outlives the runner: with `evidence_sink`, a drill's run folder and the ledger
line land in S3 (here the sandbox's real moto S3), `pgdrill runs` lists the run from there after
the local reports folder is gone, and a sink inside the source's backup path is refused."""

import json
import shutil
import subprocess

import pytest
import yaml

from pgdrill.credentials.s3client import s3_client
from pgdrill.targets.sandbox.cluster import sandbox_credentials
from tests.conftest import PGDRILL, newest_evidence, newest_run_folder, run_chaos

pytestmark = pytest.mark.sandbox


def environment(sandbox, tmp_path, sink: str):
    path = tmp_path / "develop.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "environment": "develop",
                "target": "sandbox",
                "age_identity": str(sandbox.layout.age_key_file),
                "settings": {
                    "evidence_sink": sink,
                    "evidence_sink_credentials": str(sandbox.layout.credentials_file),
                },
            }
        )
    )
    return path


def keys(sandbox, prefix: str) -> list[str]:
    creds = sandbox_credentials(sandbox.layout)
    s3 = s3_client(creds.endpoint, creds)
    listing = s3.list_objects_v2(Bucket=creds.bucket, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def test_a_drills_evidence_lives_in_the_sink_and_runs_lists_it_without_local_reports(
    sandbox, sandbox_env, tmp_path
):
    bucket = sandbox_credentials(sandbox.layout).bucket
    env_file = environment(sandbox, tmp_path, f"s3://{bucket}/pgdrill-evidence/")
    env = {**sandbox_env, "PGDRILL_ENVIRONMENT_FILE": str(env_file)}
    out = run_chaos("experiments/backup-restore.json", env, tmp_path)
    reports = tmp_path / "reports"
    evidence = newest_evidence(reports)
    assert out.returncode == 0 and evidence["verdict"] == "passed", (
        evidence.get("reasons"),
        out.stdout[-2000:],
    )
    run_id = newest_run_folder(reports).name
    assert evidence["evidence_sink"]["url"] == f"s3://{bucket}/pgdrill-evidence/"
    stored = keys(sandbox, "pgdrill-evidence/")
    assert "pgdrill-evidence/ledger.jsonl" in stored
    for name in ("evidence.json", "journal.json", "ledger-receipt.json", "acks.csv"):
        assert f"pgdrill-evidence/{run_id}/{name}" in stored, (name, stored)
    assert not any(k.endswith(("run.lock", "context.lock")) for k in stored)

    shutil.rmtree(reports)
    listed = subprocess.run(
        [PGDRILL, "runs", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["run_id"], r["verdict"]) for r in rows] == [(run_id, "passed")]
    verified = subprocess.run(
        [PGDRILL, "ledger", "verify"], env=env, capture_output=True, text=True, timeout=120
    )
    assert verified.returncode == 0 and "ledger OK: 1 runs" in verified.stdout


def test_a_sink_inside_the_source_backup_path_is_refused_and_gets_nothing(
    sandbox, sandbox_env, tmp_path
):
    creds = sandbox_credentials(sandbox.layout)
    archive = f"s3://{creds.bucket}/{sandbox.layout.read().cluster}/"
    env_file = environment(sandbox, tmp_path, archive + "evidence/")
    before = set(keys(sandbox, f"{sandbox.layout.read().cluster}/evidence/"))
    out = run_chaos(
        "experiments/backup-restore.json",
        {**sandbox_env, "PGDRILL_ENVIRONMENT_FILE": str(env_file)},
        tmp_path,
    )
    evidence = newest_evidence(tmp_path / "reports")
    assert out.returncode != 0 and evidence["verdict"] == "refused"
    assert "overlaps the source's backup path" in " ".join(evidence["reasons"]) + out.stdout
    assert set(keys(sandbox, f"{sandbox.layout.read().cluster}/evidence/")) == before == set()
