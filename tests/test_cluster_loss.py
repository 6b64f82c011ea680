"""Acceptance 4 (issue 11), sandbox: `chaos run experiments/cluster-loss.json` destroys the
whole cluster under load — every instance and its data directory — and rebuilds it from the
bucket alone under a new serverName; the evidence proves it. A damaged archive fails the drill
naming the archived writes it lost. Production is refused before anything is destroyed,
whatever allow_production says. Each drill here runs on a sandbox of this module's own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pgdrill.chaos.preflight import check_environment
from pgdrill.core.errors import PreflightRefused
from pgdrill.evidence import policy
from pgdrill.targets.sandbox import postgres
from tests.conftest import (
    REPO,
    newest_evidence,
    newest_run_folder,
    run_chaos,
    running_sandbox,
)
from tests.test_evidence import validate

EXPERIMENT = "experiments/cluster-loss.json"


@pytest.fixture(scope="module")
def own_sandbox():
    with running_sandbox() as target:
        yield target


@pytest.fixture
def env(own_sandbox, tmp_path):
    return {
        **os.environ,
        "PGDRILL_HOME": str(own_sandbox.layout.home),
        "PGDRILL_REPORTS": str(tmp_path / "reports"),
        "PYTHONPATH": str(REPO),
    }


def old_folder_objects(sandbox, server_name: str) -> int:
    from pgdrill.targets.sandbox import s3
    from pgdrill.targets.sandbox.cluster import sandbox_credentials

    state = sandbox.layout.read()
    client = s3.client(state.endpoint_url, sandbox_credentials(sandbox.layout))
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=state.bucket, Prefix=f"{server_name}/"
    )
    return sum(len(p.get("Contents", [])) for p in pages)


# -- the guardrail: pure -----------------------------------------------------------------------
def test_whole_cluster_destruction_is_for_develop_and_staging_only(tmp_path):
    for environment in ("develop", "staging"):
        assert policy.destruction_refusal(environment, "cluster-loss") is None
    for environment in ("production", "prod", "qa"):
        why = policy.destruction_refusal(environment, "cluster-loss")
        assert why and "only develop and staging" in why
    # other experiments keep the non-prod-first rule; the activity itself judges any name
    assert policy.destruction_refusal("production", "pvc-loss") is None
    assert policy.destruction_refusal("production") is not None
    with pytest.raises(PreflightRefused) as refused:
        check_environment(
            {"environment": "production", "allow_production": True},
            "cluster-loss",
            "cnpg",
            tmp_path,
        )
    assert "whatever allow_production" in refused.value.message
    assert "never destroyed" in refused.value.fix


class StubTarget:
    """Just enough of a target for destroy_cluster's checks; records a destruction."""

    def __init__(self, backups, archived_wal="000000010000000000000001"):
        self.backups, self.archived_wal, self.destroyed = backups, archived_wal, False

    def check_ready(self):
        pass

    def bucket_location(self):
        return type("Location", (), {"archive": "s3://bucket/app-db/"})()

    def backup_destination(self):
        return "s3://bucket/app-db/"

    def list_backups(self):
        return self.backups

    def primary(self):
        return None

    def connect(self, instance, dbname=None):
        stub = self

        class Conn:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def execute(self, sql, params=None):
                value = {
                    "pg_switch_wal": "0/3000060",
                    "pg_walfile_name": "000000010000000000000003",
                }
                key = next((k for k in value if k in sql), None)
                row = (value[key],) if key else (stub.archived_wal,)
                return type("Cursor", (), {"fetchone": lambda self: row})()

        return Conn()

    def destroy_cluster(self):
        self.destroyed = True
        raise AssertionError("destroyed although a check failed")


@pytest.mark.parametrize(
    "backups, needle",
    [
        ([], "no completed backup"),
        (None, "to be archived"),  # a backup, but the sealed segment never reaches the archive
    ],
)
def test_nothing_is_destroyed_when_a_check_fails(monkeypatch, tmp_path, backups, needle):
    from datetime import UTC, datetime

    from chaoslib.exceptions import ActivityFailed

    import actions.faults
    from pgdrill.core.model import Backup
    from pgdrill.evidence.runcontext import RUN_DIR_KEY

    done = Backup(
        id="20261201T000000",
        status="DONE",
        begin_time=datetime.now(UTC),
        end_time=datetime.now(UTC),
    )
    stub = StubTarget([done] if backups is None else backups)
    monkeypatch.setattr(actions.faults, "ready_target", lambda *a: stub)
    with pytest.raises(ActivityFailed, match=needle):
        actions.faults.destroy_cluster(
            archive_timeout_seconds=1,
            configuration={RUN_DIR_KEY: str(tmp_path), "environment": "staging"},
        )
    assert stub.destroyed is False


# -- the drill on a real sandbox -----------------------------------------------------------------
@pytest.mark.sandbox
def test_production_is_refused_and_nothing_is_destroyed(own_sandbox, env, tmp_path):
    import subprocess

    from tests.conftest import CHAOS

    own_sandbox.wait_ready(timeout=120)
    primary = own_sandbox.primary()
    pid = postgres.postmaster_pid(own_sandbox.layout.data_dir(primary.name))
    out = subprocess.run(
        [
            CHAOS,
            "--no-version-check",
            "--no-log-file",
            "run",
            "--journal-path",
            str(tmp_path / "journal.json"),
            "--var",
            "environment:str=production",
            "--var",
            "allow_production:bool=true",
            EXPERIMENT,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode != 0
    evidence = newest_evidence(tmp_path / "reports")
    validate(evidence)
    assert evidence["verdict"] == "refused" and evidence["fault"] is None
    assert any("only develop and staging" in r for r in evidence["reasons"])
    journal = json.loads((newest_run_folder(tmp_path / "reports") / "journal.json").read_text())
    assert journal["run"] == []
    assert postgres.postmaster_pid(own_sandbox.layout.data_dir(primary.name)) == pid
    assert own_sandbox.layout.read().destroyed_at is None

    # the activity refuses on its own too (an experiment under another name)
    from chaoslib.exceptions import ActivityFailed

    from actions.faults import destroy_cluster
    from pgdrill.evidence.runcontext import RUN_DIR_KEY

    (tmp_path / "direct").mkdir()
    with pytest.raises(ActivityFailed, match="only develop and staging"):
        destroy_cluster(
            configuration={
                RUN_DIR_KEY: str(tmp_path / "direct"),
                "environment": "production",
                "sandbox_home": str(own_sandbox.layout.home),
            }
        )
    assert postgres.postmaster_pid(own_sandbox.layout.data_dir(primary.name)) == pid


@pytest.mark.sandbox
def test_cluster_loss_drill_rebuilds_from_the_bucket_under_a_new_server_name(
    own_sandbox, env, tmp_path
):
    own_sandbox.wait_ready(timeout=120)
    before = own_sandbox.layout.read()
    old_server = before.archive_server
    seen = len(own_sandbox.layout.events())
    out = run_chaos(EXPERIMENT, env, tmp_path)
    evidence = newest_evidence(tmp_path / "reports")
    assert out.returncode == 0 and evidence["verdict"] == "passed", (
        evidence["reasons"],
        out.stdout[-4000:],
        out.stderr[-3000:],
    )
    validate(evidence)
    fault, restore, rpo = evidence["fault"], evidence["restore"], evidence["rpo"]
    assert fault["kind"] == "destroy_cluster" and fault["role"] == "cluster"
    assert sorted(fault["instances"]) == sorted(before.instances)
    assert fault["server_name"] == old_server
    # rebuilt from the OLD archive's backup, into a NEW serverName
    rebuild = restore["rebuild"]
    assert rebuild["server_name_before"] == old_server
    assert rebuild["server_name_after"] == f"{old_server}-r1"
    assert rebuild["archive_after"] != rebuild["archive_before"]
    assert rebuild["new_archive_objects"] > 0 and rebuild["first_backup"]["id"]
    assert evidence["backup"]["id"] == restore["backup_id"] == fault["backup_id"]
    assert evidence["backup"]["validated"] is True
    # recovery replayed the archive to its end, at least to the end sealed before the loss
    assert restore["position_ok"] is True and restore["reached"]["stop_kind"] == "latest"
    from pgdrill.restore.position import lsn_to_int

    assert lsn_to_int(restore["reached"]["lsn"]) >= lsn_to_int(rpo["archived_end"]["lsn"])
    # the old folder got no object after the destruction (the evidence, and a fresh listing)
    assert rebuild["old_archive_untouched"] is True
    assert old_folder_objects(own_sandbox, old_server) == fault["old_archive_at_destroy"]["objects"]
    # no acknowledged write archived before the loss is missing; the RPO is the rest
    assert rpo["acknowledged_writes"] > 0 and rpo["lost_before_archived_end"] == 0
    assert rpo["reference_kind"] == "cluster destroyed"
    assert evidence["objectives"]["rpo"]["met"] is True
    assert all(v["passed"] for v in evidence["validation"])
    assert "archives-into-new-server-name" in [v["name"] for v in evidence["validation"]]
    assert evidence["amcheck"]["passed"] is True
    assert evidence["fingerprints"]["match"] is True
    assert evidence["failover"]["seconds"] > 0
    # the supervisor healed nothing while the cluster was destroyed
    events = own_sandbox.layout.events()[seen:]
    kinds = [e["event"] for e in events]
    assert "destroyed_seen" in kinds and "cluster_rebuilt" in kinds
    between = kinds[kinds.index("destroyed_seen") : kinds.index("cluster_rebuilt")]
    assert not {"reclone_started", "promote_started", "restart", "primary_down"} & set(between)
    # the sandbox now archives and backs up under the new serverName, and lists its backups
    after = own_sandbox.layout.read()
    assert after.server_name == f"{old_server}-r1" and after.destroyed_at is None
    assert own_sandbox.archive().endswith(f"/{old_server}-r1/")
    assert [b.id for b in own_sandbox.list_backups()] == [rebuild["first_backup"]["id"]]
    rollbacks = json.loads((newest_run_folder(tmp_path / "reports") / "journal.json").read_text())[
        "rollbacks"
    ]
    assert {r["status"] for r in rollbacks} == {"succeeded"}


def drop_wal_after_backup(configuration=None, secrets=None) -> int:
    """A test activity: damage the destroyed cluster's archive — every WAL segment after
    the manual backup's last one is deleted, as a broken archive would lose them."""
    from pgdrill.evidence.runcontext import RunContext
    from pgdrill.targets.sandbox.target import SandboxTarget

    data = RunContext.from_configuration(configuration).read()
    location = SandboxTarget(home=configuration["sandbox_home"]).bucket_location()
    end = data["manual_backup"]["end_wal"]
    client = location.client()
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=location.bucket, Prefix=f"{location.prefix}wals/"
    )
    doomed = [
        o["Key"]
        for p in pages
        for o in p.get("Contents", [])
        if len(Path(o["Key"]).name.split(".")[0]) == 24
        and Path(o["Key"]).name.split(".")[0] > end
        and ".backup" not in o["Key"]
    ]
    for key in doomed:
        client.delete_object(Bucket=location.bucket, Key=key)
    return len(doomed)


@pytest.mark.sandbox
def test_a_damaged_archive_fails_the_drill_naming_the_archived_writes_it_lost(
    own_sandbox, env, tmp_path
):
    own_sandbox.wait_ready(timeout=300)
    experiment = json.loads((REPO / EXPERIMENT).read_text())
    method = experiment["method"]
    at = [a["name"] for a in method].index("destroy-whole-cluster") + 1
    method.insert(
        at,
        {
            "type": "action",
            "name": "damage-old-archive",
            "provider": {
                "type": "python",
                "module": "tests.test_cluster_loss",
                "func": "drop_wal_after_backup",
            },
        },
    )
    path = tmp_path / "cluster-loss.json"
    path.write_text(json.dumps(experiment))
    out = run_chaos(str(path), env, tmp_path)
    evidence = newest_evidence(tmp_path / "reports")
    assert out.returncode != 0 and evidence["verdict"] == "failed", evidence["reasons"]
    validate(evidence)
    rpo = evidence["rpo"]
    assert rpo and rpo["lost_before_archived_end"] > 0, (evidence["reasons"], out.stdout[-5000:])
    reasons = " ".join(evidence["reasons"])
    assert "before the archived end" in reasons and "missing from the rebuilt" in reasons
    assert evidence["restore"]["position_ok"] is False
    assert evidence["restore"]["rebuild"]["old_archive_untouched"] is False
    # the cluster still came back (rebuilt from what the archive kept), never left destroyed
    assert own_sandbox.layout.read().destroyed_at is None
    own_sandbox.wait_ready(timeout=300)


@pytest.mark.sandbox
def test_a_destroyed_sandbox_is_not_healed_refuses_drills_and_comes_back_only_by_rebuild(
    own_sandbox,
):
    """The target's operations directly: the supervisor acknowledges the destruction and
    heals nothing (the events say so; no data directory reappears), a drill's preflight is
    refused naming the destruction, an explicit rebuild brings the cluster back."""
    from pgdrill.core.model import RecoveryTarget
    from pgdrill.restore.plan import choose_backup

    own_sandbox.wait_ready(timeout=300)
    backup = choose_backup(own_sandbox.list_backups(), RecoveryTarget())
    old = own_sandbox.layout.read().archive_server
    seen = len(own_sandbox.layout.events())
    destroyed = own_sandbox.destroy_cluster()
    state = own_sandbox.layout.read()
    assert state.destroyed_at == destroyed["destroyed_at"] and destroyed["server_name"] == old
    assert not any(own_sandbox.layout.data_dir(n).exists() for n in state.instances)
    kinds = [e["event"] for e in own_sandbox.layout.events()[seen:]]
    assert kinds.index("destroyed_seen") < kinds.index("cluster_destroyed")
    with pytest.raises(PreflightRefused, match="destroyed"):
        own_sandbox.prepare()
    with pytest.raises(Exception, match="already destroyed"):
        own_sandbox.destroy_cluster()
    result = own_sandbox.rebuild_from_backup(backup, destroyed, timeout=600)
    kinds = [e["event"] for e in own_sandbox.layout.events()[seen:]]
    assert not {"reclone_started", "promote_started", "restart"} & set(kinds)
    assert result.backup.id == backup.id and result.instance.role == "primary"
    assert own_sandbox.layout.read().server_name != old
    report = own_sandbox.wait_ready(timeout=120)
    assert len(report.instances) == len(state.instances)
    with pytest.raises(Exception, match="not destroyed"):
        own_sandbox.rebuild_from_backup(backup, timeout=60)
    # later backups go into the new serverName, and only its backups are the cluster's
    assert own_sandbox.list_backups() == []
    taken = own_sandbox.backup(timeout=300)
    assert [b.id for b in own_sandbox.list_backups()] == [taken.id]
    assert taken.id != backup.id


@pytest.mark.sandbox
def test_a_signal_mid_rebuild_still_leaves_a_rebuilt_cluster(own_sandbox, env, tmp_path):
    """SIGINT while the rebuild restores the base backup: the rollbacks stop the load and
    rebuild the cluster again from the OLD archive (the cut attempt changed nothing the
    retry reads), the verdict is interrupted, and no destroyed cluster is left behind."""
    import signal
    import subprocess

    from pgdrill.core.waiting import poll_until
    from tests.conftest import CHAOS

    own_sandbox.wait_ready(timeout=300)
    before = own_sandbox.layout.read()
    drill = subprocess.Popen(
        [
            CHAOS,
            "--no-version-check",
            "--no-log-file",
            "run",
            "--journal-path",
            str(tmp_path / "journal.json"),
            EXPERIMENT,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def mid_rebuild():
        folders = [p for p in (tmp_path / "reports").glob("*") if p.is_dir()]
        try:
            context = json.loads((folders[0] / "context.json").read_text())
        except (IndexError, OSError, ValueError):
            return None
        current = (context.get("current_activity") or {}).get("name")
        data = own_sandbox.layout.data_dir(before.primary_name)
        return folders[0] if current == "rebuild-cluster-from-bucket" and data.is_dir() else None

    try:
        folder = poll_until(
            mid_rebuild,
            timeout=300,
            interval=0.05,
            what="the drill's rebuild to restore the base backup",
        )
        drill.send_signal(signal.SIGINT)
        output, _ = drill.communicate(timeout=600)
    finally:
        drill.kill()
    assert "verdict: INTERRUPTED" in output, output[-3000:]
    evidence = json.loads((folder / "evidence.json").read_text())
    validate(evidence)
    assert evidence["verdict"] == "interrupted"
    assert evidence["interruption"]["during"] == "rebuild-cluster-from-bucket"
    journal = json.loads((folder / "journal.json").read_text())
    assert [(r["activity"]["name"], r["status"]) for r in journal["rollbacks"]] == [
        ("stop-load", "succeeded"),
        ("rebuild-if-still-destroyed", "succeeded"),
    ]
    after = own_sandbox.layout.read()
    assert after.destroyed_at is None and after.server_name != before.archive_server
    rebuild = evidence["restore"]["rebuild"]
    assert rebuild["server_name_before"] == before.archive_server
    assert rebuild["old_archive_untouched"] is True
    own_sandbox.wait_ready(timeout=300)
