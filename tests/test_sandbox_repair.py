"""Nothing is destroyed to make a drill run: a broken sandbox is repaired in place, an emptied
object store (moto keeps it in memory) is refused with the fix, and only `pgdrill sandbox
reset` discards a sandbox. Real processes, killed by pid; no mocks."""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pgdrill.cli import main
from pgdrill.core.errors import PreflightRefused
from pgdrill.core.procs import pid_alive
from pgdrill.core.waiting import poll_until
from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.cluster import SandboxCluster, replica_streaming
from pgdrill.targets.sandbox.osuser import resolve_run_as
from pgdrill.targets.sandbox.state import InstanceState, Layout, SandboxState
from pgdrill.targets.sandbox.target import SandboxTarget
from tests.conftest import PGDRILL, REPO, run_chaos, running_sandbox


@pytest.fixture
def own_sandbox():
    """A sandbox of this test's own (it gets broken on purpose), always stopped at the end."""
    with running_sandbox() as target:
        yield target


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    poll_until(lambda: not pid_alive(pid), timeout=10, what=f"pid {pid} to die")


def identity(path: Path) -> tuple[int, int, bytes]:
    st = path.stat()
    return st.st_dev, st.st_ino, path.read_bytes()


def system_identifier(target: SandboxTarget) -> str:
    return target.cluster_identity()


def mark_data_dir(target: SandboxTarget, name: str) -> Path:
    """A file of ours in the data directory: re-initialising or re-cloning would lose it."""
    path = target.layout.data_dir(name) / "pgdrill-test-keep"
    path.write_text(f"{name} {time.time()}\n")
    return path


def cluster_of(target: SandboxTarget) -> SandboxCluster:
    state = target.layout.read()
    return SandboxCluster(target.layout, state, resolve_run_as(state.run_as or None))


@pytest.mark.sandbox
def test_killed_supervisor_and_replica_are_repaired_in_place(own_sandbox):
    target = own_sandbox
    state = target.layout.read()
    primary, replica = "sandbox-1", "sandbox-2"
    keep = {n: mark_data_dir(target, n) for n in (primary, replica)}
    before = {n: identity(p) for n, p in keep.items()}
    primary_pid = postgres.postmaster_pid(target.layout.data_dir(primary))
    sysid = system_identifier(target)
    s3_pid = state.s3_pid

    t0 = time.monotonic()
    assert target.prepare() == []
    assert time.monotonic() - t0 < 0.5  # the fast path: pids only, no S3 round trip

    kill(state.supervisor_pid)
    kill(postgres.kill_postmaster(target.layout.data_dir(replica)))

    t0 = time.monotonic()
    repairs = target.prepare()
    repair_seconds = time.monotonic() - t0
    print(f"repair of supervisor + replica: {repair_seconds:.2f}s: {repairs}")
    assert len(repairs) == 2, repairs
    assert any(f"started {replica}" in r and "in place" in r for r in repairs), repairs
    assert any("supervisor" in r for r in repairs), repairs

    after = target.layout.read()
    assert after.supervisor_pid != state.supervisor_pid and pid_alive(after.supervisor_pid)
    assert after.s3_pid == s3_pid  # the S3 server was fine: left alone
    assert after.store_lost is None
    # same data directories, same primary process, same cluster
    assert {n: identity(p) for n, p in keep.items()} == before
    assert postgres.postmaster_pid(target.layout.data_dir(primary)) == primary_pid
    assert system_identifier(target) == sysid
    poll_until(
        lambda: replica_streaming(cluster_of(target), replica),
        timeout=60,
        what=f"{replica} to stream again",
    )
    assert target.prepare() == []
    assert target.is_up()


@pytest.mark.sandbox
def test_killed_s3_is_refused_with_the_fix_and_reset_builds_a_new_sandbox(
    own_sandbox, tmp_path, capsys
):
    target = own_sandbox
    home = str(target.layout.home)
    state = target.layout.read()
    primary = state.primary_name
    keep = mark_data_dir(target, primary)
    before = identity(keep)
    primary_pid = postgres.postmaster_pid(target.layout.data_dir(primary))
    sysid = system_identifier(target)

    kill(state.s3_pid)

    # the port is taken by someone else: the S3 server cannot be restarted there
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", state.s3_port))
        squatter.listen()
        with pytest.raises(PreflightRefused) as refused:
            target.prepare()
    assert f"port {state.s3_port} is taken" in refused.value.message
    assert "pgdrill sandbox reset --yes" in refused.value.fix

    # the port is free: moto restarts on it, empty, and the drill is refused
    t0 = time.monotonic()
    with pytest.raises(PreflightRefused) as refused:
        target.prepare()
    print(f"S3 refusal (restart moto + detect the emptied store): {time.monotonic() - t0:.2f}s")
    message = refused.value.message
    assert "emptied" in message and "base backup" in message and "WAL archive" in message
    assert f"s3://{state.bucket}/{state.cluster}/" in message
    assert "pgdrill sandbox reset --yes" in refused.value.fix
    assert "\n" not in message and "\n" not in refused.value.fix
    assert identity(keep) == before
    assert postgres.postmaster_pid(target.layout.data_dir(primary)) == primary_pid
    # refused again at once, without another restart
    t0 = time.monotonic()
    with pytest.raises(PreflightRefused):
        target.prepare()
    assert time.monotonic() - t0 < 0.5

    # `pgdrill sandbox up` refuses the same way: one message and the fix, exit 3
    capsys.readouterr()
    assert main(["sandbox", "up", "--home", home]) == 3
    err = capsys.readouterr().err
    assert "emptied" in err and "fix: `pgdrill sandbox reset --yes`" in err
    assert "Traceback" not in err
    # status says so
    assert main(["sandbox", "status", "--home", home]) == 1
    out = capsys.readouterr().out
    assert "DEGRADED" in out and "EMPTIED" in out and "sandbox reset --yes" in out

    # a real drill against it through Chaos Toolkit: refused, nothing touched
    env = {**os.environ, "PGDRILL_HOME": home, "PGDRILL_REPORTS": str(tmp_path / "reports")}
    result = run_chaos("experiments/backup-restore.json", env, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "sandbox reset" in output, output[-3000:]
    assert identity(keep) == before
    assert postgres.postmaster_pid(target.layout.data_dir(primary)) == primary_pid
    assert system_identifier(target) == sysid

    # reset without --yes and without a terminal: exit 2, nothing discarded
    no_tty = subprocess.run(
        [PGDRILL, "sandbox", "reset", "--home", home],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_tty.returncode == 2, no_tty.stderr
    assert "--yes" in no_tty.stderr and "Traceback" not in no_tty.stderr
    assert identity(keep) == before
    assert postgres.postmaster_pid(target.layout.data_dir(primary)) == primary_pid

    # reset --yes: a new sandbox (new system_identifier), ready for drills
    reset = subprocess.run(
        [PGDRILL, "sandbox", "reset", "--yes", "--home", home],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reset.returncode == 0, reset.stderr[-3000:]
    assert not keep.exists()
    assert not pid_alive(primary_pid)
    assert system_identifier(target) != sysid
    assert target.layout.read().store_lost is None
    assert target.prepare() == []
    status = target.status()
    assert status["up"] is True and status["s3"]["store_lost"] is None
    assert status["latest_backup"]["status"] == "DONE"


def test_half_created_sandbox_is_refused_not_removed(sandbox_dir):
    """A sandbox whose creation stopped half-way (no supervisor yet) is not discarded."""
    layout = Layout(sandbox_dir / "home")
    layout.home.mkdir()
    state = SandboxState(
        cluster="sandbox",
        bucket="pgdrill-backups",
        s3_port=1,
        instances={"sandbox-1": InstanceState(port=2, role="primary")},
    )
    layout.write(state)
    data = layout.data_dir("sandbox-1")
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("18\n")
    with pytest.raises(PreflightRefused) as refused:
        SandboxTarget(home=layout.home).prepare()
    assert "never completely created" in refused.value.message
    assert "pgdrill sandbox reset --yes" in refused.value.fix
    assert (data / "PG_VERSION").exists()
    assert json.loads(layout.state_file.read_text())["cluster"] == "sandbox"


def test_reset_on_a_terminal_asks_for_the_cluster_name(sandbox_dir):
    """On a TTY, a wrong answer discards nothing (exit 2)."""
    import pty

    layout = Layout(sandbox_dir / "home")
    layout.home.mkdir()
    layout.write(SandboxState(cluster="sandbox", bucket="pgdrill-backups", s3_port=1))
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [PGDRILL, "sandbox", "reset", "--home", str(layout.home)],
            cwd=REPO,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(master, b"not-the-name\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 2, err
    assert "Type the cluster name" in out + err and "nothing was discarded" in err
    assert layout.state_file.exists()
