"""Who PostgreSQL runs as. PostgreSQL refuses root, so as root (CI) every instance and every
archive/restore command runs as an unprivileged user that must be able to run our venv."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pgdrill.core.console import say
from pgdrill.core.errors import PreflightRefused

DEFAULT_USER = "pgdrill"


@dataclass(frozen=True)
class RunAs:
    """The OS identity PostgreSQL processes use; `None` uid means "the current user"."""

    name: str
    uid: int | None = None
    gid: int | None = None

    @property
    def switches(self) -> bool:
        return self.uid is not None

    def popen_kwargs(self) -> dict:
        """Keyword arguments for subprocess so the child runs as this user."""
        if not self.switches:
            return {}
        # cwd "/": the caller's working directory may not be readable by this user
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "cwd": "/"}

    def chown(self, path: Path) -> None:
        if self.switches:
            os.chown(path, self.uid, self.gid)

    def chown_tree(self, path: Path) -> None:
        if not self.switches:
            return
        for root, dirs, files in os.walk(path):
            os.chown(root, self.uid, self.gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)


def resolve_run_as(user: str | None = None) -> RunAs:
    """As root: the unprivileged user (created if missing). Otherwise: ourselves."""
    if os.geteuid() != 0:
        return RunAs(name=pwd.getpwuid(os.geteuid()).pw_name)
    name = user or os.environ.get("PGDRILL_OS_USER", DEFAULT_USER)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _create_user(name)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise PreflightRefused(
            f"OS user {name!r} is root and PostgreSQL refuses to run as root",
            fix="set PGDRILL_OS_USER to an unprivileged user",
        )
    return RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _create_user(name: str) -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    say(f"creating unprivileged OS user {name!r} to run PostgreSQL (PostgreSQL refuses root)")
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise PreflightRefused(
            f"could not create OS user {name!r}: {result.stderr.strip()}",
            fix=f"create it yourself (useradd --system {name}) or set PGDRILL_OS_USER",
        )


def _can_run(run_as: RunAs, argv: list[str]) -> tuple[bool, str]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, **run_as.popen_kwargs())
    except OSError as exc:
        return False, str(exc)
    return result.returncode == 0, (result.stderr or result.stdout).strip()


def _grant_traverse(path: Path) -> list[str]:
    """Add o+x to every directory from / down to `path` that lacks it; return those changed."""
    changed = []
    for directory in [*reversed(path.parents), path]:
        if not directory.is_dir():
            continue
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(directory, mode | stat.S_IXOTH)
            changed.append(str(directory))
    return changed


def ensure_can_run_python(run_as: RunAs, workdir: Path) -> None:
    """Make sure `run_as` can execute this interpreter with barman importable and can reach
    `workdir`: archive_command and restore_command run our venv's barman-cloud as that user.

    A venv built from a pyenv Python under /root fails with "Permission denied" (exit 126)
    because /root is not traversable. As root we grant traverse-only (o+x) permission on the
    directories on the way and say so; otherwise we refuse with the fix."""
    if not run_as.switches:
        return
    probe = [
        sys.executable,
        "-c",
        "import barman, psycopg, os, sys; os.stat(sys.argv[1])",
        str(workdir),
    ]
    ok, err = _can_run(run_as, probe)
    if not ok:
        targets = {
            Path(sys.executable).parent,
            Path(os.path.realpath(sys.executable)).parent,
            Path(sys.base_prefix) / "lib",
            Path(sys.prefix) / "lib",
            workdir,
        }
        changed = sorted({d for t in targets for d in _grant_traverse(t)})
        if changed:
            say(
                f"granted traverse permission (o+x) to {', '.join(changed)} so that "
                f"user {run_as.name!r} can run {sys.executable}"
            )
        ok, err = _can_run(run_as, probe)
    if not ok:
        raise PreflightRefused(
            f"OS user {run_as.name!r} cannot run {sys.executable}: {err}",
            fix=f"make the interpreter, its libraries, the venv and {workdir} reachable by "
            f"{run_as.name!r}, or use directories that are world-readable",
        )
