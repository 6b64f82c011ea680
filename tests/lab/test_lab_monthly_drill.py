"""deploy/ on the lab (issue 18): the monthly staging drill's CronJob applied with kustomize
(kubectl apply -k, the overlay `make lab` writes), one Job run from it in the pgdrill image
as the ServiceAccount of deploy/base/rbac.yaml, and its evidence read back from the S3 sink.
Runs after the drills (file order): applying deploy/'s RBAC replaces the drill suite's Roles
with the CronJob's (no cluster-loss rules)."""

from __future__ import annotations

import json
import time

from tests.lab.conftest import LAB, NAMESPACE, kubectl

CRONJOB = "pgdrill-monthly-staging-drill"
JOB = "pgdrill-lab-once"
EVIDENCE_BUCKET, EVIDENCE_PREFIX = "pgdrill-lab-evidence", "staging/"


def job_state() -> dict:
    job = json.loads(kubectl("-n", NAMESPACE, "get", "job", JOB, "-o", "json").stdout)
    return {c["type"]: c["status"] for c in job.get("status", {}).get("conditions", [])}


def job_logs() -> str:
    return kubectl("-n", NAMESPACE, "logs", f"job/{JOB}", "--tail", "80", check=False).stdout


def sink():
    from pgdrill.credentials.s3client import s3_client
    from pgdrill.credentials.secret import load_s3_credentials

    creds = load_s3_credentials(LAB / "cnpg-backup-s3.enc.yaml", [str(LAB / "age" / "keys.txt")])
    return s3_client(creds.endpoint, creds), creds


def test_the_cronjob_applied_with_kustomize_runs_a_drill_whose_evidence_is_in_the_sink():
    overlay = LAB / "deploy"
    assert (overlay / "kustomization.yaml").is_file(), "make lab writes the overlay"
    rendered = kubectl("kustomize", str(overlay)).stdout
    assert "pgdrill.local/pgdrill:0.1.0" in rendered
    kubectl("apply", "-k", str(overlay))
    kubectl("-n", NAMESPACE, "delete", "job", JOB, "--ignore-not-found", "--wait=true")
    client, creds = sink()
    before = {
        o["Key"]
        for o in client.list_objects_v2(Bucket=EVIDENCE_BUCKET, Prefix=EVIDENCE_PREFIX).get(
            "Contents", []
        )
    }
    kubectl("-n", NAMESPACE, "create", "job", JOB, f"--from=cronjob/{CRONJOB}")
    deadline = time.monotonic() + 1800
    state: dict = {}
    while time.monotonic() < deadline:
        state = job_state()
        if state.get("Complete") == "True" or state.get("Failed") == "True":
            break
        time.sleep(5)
    logs = job_logs()
    assert state.get("Complete") == "True", (state, logs[-4000:])

    # the pod ran the image's drill as uid 10001 with the CronJob's ServiceAccount
    pod = json.loads(
        kubectl("-n", NAMESPACE, "get", "pods", "-l", f"job-name={JOB}", "-o", "json").stdout
    )["items"][0]
    assert pod["spec"]["serviceAccountName"] == "pgdrill"
    assert pod["spec"]["containers"][0]["image"] == "pgdrill.local/pgdrill:0.1.0"

    # the evidence is in the sink: a new run folder whose evidence says passed
    after = {
        o["Key"]: o
        for o in client.list_objects_v2(Bucket=EVIDENCE_BUCKET, Prefix=EVIDENCE_PREFIX).get(
            "Contents", []
        )
    }
    new = sorted(k for k in after if k not in before and k.endswith("/evidence.json"))
    assert len(new) == 1, (sorted(after), logs[-2000:])
    evidence = json.loads(client.get_object(Bucket=EVIDENCE_BUCKET, Key=new[0])["Body"].read())
    assert evidence["verdict"] == "passed", evidence["reasons"]
    assert evidence["target"] == "cnpg"
    assert evidence["restore"]["position_ok"] is True
    assert f"{EVIDENCE_PREFIX}ledger.jsonl" in after
    # no credential value in the pod's log nor in what the sink keeps
    kept = b"".join(
        client.get_object(Bucket=EVIDENCE_BUCKET, Key=k)["Body"].read()
        for k in after
        if k not in before
    )
    for value in (creds.access_key_id, creds.secret_access_key):
        assert value not in logs and value.encode() not in kept
