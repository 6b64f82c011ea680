"""Shared fixtures. Sandbox tests use real PostgreSQL, S3 (moto server) and barman-cloud."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHAOS = str(Path(sys.executable).parent / "chaos")
PGDRILL = str(Path(sys.executable).parent / "pgdrill")
# SOPS files encrypted by the real sops binary (public test keys): part of the repository so
# that every clone tests them; PGDRILL_SOPS_FIXTURES points at another copy
SOPS_FIXTURES = Path(
    os.environ.get("PGDRILL_SOPS_FIXTURES") or REPO / "tests" / "fixtures" / "sops"
)
assert SOPS_FIXTURES.is_dir(), f"SOPS fixtures missing at {SOPS_FIXTURES}"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


def sandbox_parent_dir() -> Path:
    """A directory for sandbox state outside pytest's basetemp: pytest re-applies mode 0700
    to its base directory at every session start, which would lock the unprivileged
    PostgreSQL user out of a sandbox another pytest session is using."""
    return Path(tempfile.mkdtemp(prefix="pgdrill-test-"))


@pytest.fixture
def sandbox_dir():
    path = sandbox_parent_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_sandbox():
    """A real sandbox of its own, stopped and removed on the way out."""
    from pgdrill.targets.sandbox.target import SandboxTarget

    parent = sandbox_parent_dir()
    target = SandboxTarget(home=parent / "home")
    try:
        target.up()
        yield target
    finally:
        target.down()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox():
    """One real sandbox for the session, removed at the end."""
    with running_sandbox() as target:
        yield target


@pytest.fixture
def sandbox_env(sandbox, monkeypatch, tmp_path):
    """Environment under which activities and `chaos run` use the session sandbox."""
    monkeypatch.setenv("PGDRILL_HOME", str(sandbox.layout.home))
    monkeypatch.setenv("PGDRILL_REPORTS", str(tmp_path / "reports"))
    return {**os.environ}


def run_chaos(experiment: str, env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHAOS,
            "--no-version-check",
            "--no-log-file",
            "run",
            "--journal-path",
            str(tmp_path / "journal.json"),
            experiment,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def newest_run_folder(reports: Path) -> Path:
    """The latest run folder under `reports` (names start with the UTC stamp)."""
    return max((p for p in reports.iterdir() if p.is_dir()), key=lambda p: p.name)


def newest_evidence(reports: Path) -> dict:
    import json

    return json.loads((newest_run_folder(reports) / "evidence.json").read_text())


def only_run_folder(reports: Path) -> Path:
    folders = [p for p in reports.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def assert_failover_hole_closed(evidence: dict) -> None:
    """A primary lost under load may die with WAL its archiver had not uploaded: the drill's
    backfill must have found the archive whole at the failover, or closed its hole."""
    backfill = evidence["wal_backfill"]
    assert backfill["closed"] is True, backfill
    assert set((backfill["segments"] or {}).values()) <= {"requeued", "queued", "marked"}, backfill
    assert all(h["failover_hole"] for h in backfill["holes"])
