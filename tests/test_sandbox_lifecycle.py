"""`pgdrill sandbox up` is idempotent, status tells how to connect, `down` leaves nothing."""

import json
import os
import signal

import psycopg
import pytest

from pgdrill.cli import main
from pgdrill.core.procs import pid_alive
from pgdrill.core.waiting import poll_until
from pgdrill.targets.sandbox import postgres

pytestmark = pytest.mark.sandbox


def test_up_twice_status_and_down_leaves_no_process(sandbox_dir, capsys):
    home = str(sandbox_dir / "sb")
    assert main(["sandbox", "up", "--home", home]) == 0
    first = json.loads((sandbox_dir / "sb" / "state.json").read_text())

    assert main(["sandbox", "up", "--home", home]) == 0
    assert "already up" in capsys.readouterr().err
    second = json.loads((sandbox_dir / "sb" / "state.json").read_text())
    assert (second["s3_pid"], second["supervisor_pid"]) == (
        first["s3_pid"],
        first["supervisor_pid"],
    )

    assert main(["sandbox", "status", "--json", "--home", home]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["up"] is True
    roles = {i["name"]: i["role"] for i in status["instances"]}
    assert roles == {"sandbox-1": "primary", "sandbox-2": "replica"}
    assert status["latest_backup"]["status"] == "DONE"
    assert status["archiver"]["failed_count"] == 0
    for inst in status["instances"]:
        with psycopg.connect(
            host=inst["host"], port=inst["port"], dbname=inst["dbname"], user=inst["user"]
        ) as conn:
            assert conn.execute("SELECT value FROM pgdrill_sentinel").fetchone() == ("ok",)
    replica = next(i for i in status["instances"] if i["role"] == "replica")
    assert replica["streaming"] is True

    postmasters = [
        postgres.postmaster_pid(sandbox_dir / "sb" / "instances" / n / "data") for n in roles
    ]
    pids = [first["s3_pid"], first["supervisor_pid"], *postmasters]
    assert all(pids) and all(pid_alive(p) for p in pids)

    # an unreachable S3 endpoint is reported, not a traceback
    os.kill(first["s3_pid"], signal.SIGKILL)
    poll_until(lambda: not pid_alive(first["s3_pid"]), timeout=10, what="moto to die")
    capsys.readouterr()
    assert main(["sandbox", "status", "--json", "--home", home]) == 1
    broken = json.loads(capsys.readouterr().out)
    assert broken["up"] is False and broken["s3"]["running"] is False
    assert "in memory" in broken["s3"]["store_lost"]  # moto's objects died with it
    assert "cannot list backups at http://127.0.0.1:" in broken["latest_backup"]["error"]
    assert main(["sandbox", "status", "--home", home]) == 1
    out = capsys.readouterr()
    assert "DEGRADED" in out.out and "Traceback" not in out.out + out.err

    assert main(["sandbox", "down", "--home", home]) == 0
    assert [p for p in pids if pid_alive(p)] == []
    assert not (sandbox_dir / "sb").exists()
    assert main(["sandbox", "status", "--home", home]) == 1
