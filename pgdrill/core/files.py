"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: Path, text: str, *, mode: int | None = None, durable: bool = False
) -> Path:
    """Replace `path` with `text` in one rename, from a unique temporary file beside it
    (concurrent writers never share it). `mode`: permissions set before any byte is written
    (0o600 for secrets). `durable`: fsync the file and its folder (ledger, key material);
    without it a killed process still leaves a whole file, only a machine crash may not."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def shown_path(path: str | os.PathLike | None, base: Path | None = None) -> str | None:
    """A path as evidence and reports show it: relative to the project (the working folder,
    or `base`) when it is inside it, `~/...` inside the home folder, else unchanged. A
    report travels (evidence sinks, tickets): it should not spell out the operator's home
    folder or the checkout's location."""
    if path is None:
        return None
    text = os.fspath(path)
    candidate = Path(text)
    if not candidate.is_absolute():
        return text
    try:
        return str(candidate.relative_to((base or Path.cwd()).resolve()))
    except ValueError:
        pass
    home = Path.home()
    try:
        return "~/" + str(candidate.relative_to(home)) if home != Path("/") else text
    except ValueError:
        return text


def shown_command(argv: list[str]) -> str:
    """A command line for evidence: the program by its name, not its absolute path."""
    import shlex

    return shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else ""
