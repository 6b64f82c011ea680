"""pg_amcheck on the restored copy: a clean restore passes, a page that was already damaged
when the backup was taken is restored damaged and fails, a broken check is an error."""

import dataclasses
import json

import pytest

from actions.restore import cleanup_restore, restore_latest_backup
from pgdrill.core.errors import TargetError
from pgdrill.core.model import Instance, Role
from pgdrill.core.waiting import poll_until
from pgdrill.evidence.runcontext import RUN_DIR_KEY
from pgdrill.targets.sandbox.state import free_port
from pgdrill.verification.amcheck import parse_stdout, run_amcheck

VICTIM = "amcheck_victim"


def test_unreachable_instance_is_a_broken_check_not_a_verdict():
    port = free_port()  # bound and released: nothing listens on it
    nowhere = Instance(name="nowhere", role=Role.RESTORE, host="127.0.0.1", port=port)
    with pytest.raises(TargetError) as err:
        run_amcheck(nowhere, timeout=60)
    message = str(err.value)
    assert f"port {port} failed" in message and "Connection refused" in message
    assert err.value.fix and "accepts connections" in err.value.fix
    assert "Traceback" not in message and 'File "' not in message


def test_stdout_blocks_become_one_line_problems_and_sqlstate_separates_broken_checks():
    # pg_amcheck --verbose stdout: an error block as captured from a real corrupt restore, a
    # verify_heapam row (pg_amcheck.c's format), and a permission error (no corruption)
    stdout = (
        'heap table "app.public.amcheck_victim":\n'
        '    ERROR:  XX001: invalid page in block 21 of relation "base/16384/16449"\n'
        "    LOCATION:  buffer_readv_report, bufmgr.c:7385\n"
        "query was: SELECT v.blkno, v.offnum, v.attnum, v.msg FROM pg_catalog.pg_class c, "
        '"pg_catalog".verify_heapam(\n'
        "relation := c.oid, on_error_stop := false, check_toast := true, skip := 'none'\n"
        ") v WHERE c.oid = 16449 AND c.relpersistence != 't'\n"
        'heap table "app.public.t", block 3, offset 7:\n'
        "    xmin 4294967295 equals or exceeds next valid transaction ID 0:758\n"
        'heap table "app.pg_catalog.pg_proc":\n'
        "    ERROR:  42501: permission denied for function verify_heapam\n"
        "    LOCATION:  aclcheck_error, aclchk.c:2800\n"
    )
    report = parse_stdout(stdout)
    assert report.problems == [
        'heap table "app.public.amcheck_victim": ERROR: XX001: invalid page in block 21 of '
        'relation "base/16384/16449"',
        'heap table "app.public.t", block 3, offset 7: xmin 4294967295 equals or exceeds '
        "next valid transaction ID 0:758",
    ]
    assert report.check_errors == [
        'heap table "app.pg_catalog.pg_proc": ERROR: 42501: permission denied for function '
        "verify_heapam"
    ]


@pytest.mark.sandbox
def test_clean_restore_passes_amcheck(sandbox, sandbox_env, tmp_path):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    sandbox.wait_ready(timeout=120)
    backup = sandbox.backup(timeout=300)
    try:
        assert restore_latest_backup(configuration=cfg)["backup_id"] == backup.id
        restored = sandbox.restored_instance()
        result = run_amcheck(restored)
        print(
            f"\npg_amcheck on the clean copy: {result.seconds}s, "
            f"{result.relations_checked} relations in {result.databases}"
        )
        assert result.passed is True, result.problems
        assert result.exit_code == 0 and result.problems == [] and result.problem_count == 0
        assert "app" in result.databases and "template0" not in result.databases
        assert result.relations_checked > 0
        assert "--heapallindexed" in result.command and "--all" in result.command
        assert json.loads(json.dumps(result.to_dict()))["passed"] is True

        # a role that may not run amcheck's functions: exit 2 from pg_amcheck, but the
        # errors are 42501, not corruption, so it is a broken check and no verdict
        with sandbox.connect(restored, "postgres") as conn:
            conn.execute("CREATE ROLE amcheck_nobody LOGIN")
        with pytest.raises(TargetError) as err:
            run_amcheck(dataclasses.replace(restored, user="amcheck_nobody"), databases=["app"])
        assert "permission denied for function" in err.value.message and err.value.fix
    finally:
        cleanup_restore(configuration=cfg)
    assert sandbox.restored_instance() is None


@pytest.mark.sandbox
def test_page_damaged_before_the_backup_is_restored_damaged_and_fails_amcheck(
    sandbox, sandbox_env, tmp_path
):
    cfg = {RUN_DIR_KEY: str(tmp_path)}
    sandbox.wait_ready(timeout=120)
    try:
        with sandbox.connect(sandbox.primary()) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {VICTIM}")
            conn.execute(f"CREATE TABLE {VICTIM} (id int PRIMARY KEY, payload text NOT NULL)")
            conn.execute(
                f"INSERT INTO {VICTIM} SELECT g, md5(g::text) FROM generate_series(1, 5000) g"
            )
            conn.execute(f"VACUUM (FREEZE) {VICTIM}")  # hint bits set: nothing left to write
            created_at = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        damage = sandbox.corrupt_page(VICTIM, "app")
        assert damage["detected_by"] == "data checksums", damage

        # barman-cloud-backup copies files as they are: it does not verify checksums
        backup = sandbox.backup(timeout=300)
        assert backup.completed
        assert restore_latest_backup(configuration=cfg)["backup_id"] == backup.id

        result = run_amcheck(sandbox.restored_instance())
        print(
            f"\npg_amcheck on the damaged copy: {result.seconds}s, exit {result.exit_code}:"
            + "".join(f"\n  {p}" for p in result.problems)
        )
        assert result.passed is False
        assert result.exit_code == 2 and result.problem_count == len(result.problems) >= 1
        assert all(VICTIM in p for p in result.problems), result.problems
        assert any(
            f'heap table "app.public.{VICTIM}"' in p
            and f"invalid page in block {damage['block']}" in p
            for p in result.problems
        )
        assert "app" in result.databases
        assert result.to_dict()["problems"] == result.problems

        # physical damage does not replicate: the streaming replica reads every page
        replica = next(i for i in sandbox.instances() if i.role == Role.REPLICA)
        with sandbox.connect(replica) as conn:
            poll_until(
                lambda: conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (created_at,)
                ).fetchone()[0],
                timeout=60,
                what="the replica to replay the victim table",
            )
            conn.execute("SET enable_indexscan = off")
            conn.execute("SET enable_indexonlyscan = off")
            conn.execute("SET enable_bitmapscan = off")
            assert conn.execute(f"SELECT count(*) FROM {VICTIM}").fetchone()[0] == 5000
    finally:
        cleanup_restore(configuration=cfg)
        with sandbox.connect(sandbox.primary()) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {VICTIM}")
        sandbox.backup(timeout=300)  # the newest backup is clean again for later tests
    assert sandbox.restored_instance() is None
