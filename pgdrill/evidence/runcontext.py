"""State shared by the activities of one drill run.

Chaos Toolkit cannot pass one activity's output to the next, so each run gets a folder
`reports/<UTC yyyymmddTHHMMSSZ>-<experiment>/` holding `context.json`; activities read and
update it, and the pgdrill control turns it into `evidence.json` at the end."""

from __future__ import annotations

import fcntl
import json
import os
import re
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgdrill.core.files import write_atomically
from pgdrill.evidence.ledger import default_reports_dir

RUN_DIR_KEY = "pgdrill_run_dir"
_ADHOC: dict[int, Path] = {}


def run_folder_name(experiment: str, when: datetime | None = None) -> str:
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{slug(experiment)}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "experiment"


def create_run_dir(reports: Path, experiment: str) -> Path:
    reports.mkdir(parents=True, exist_ok=True)
    base = reports / run_folder_name(experiment)
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir()
    return path


class RunContext:
    """A JSON document in the run folder; every update is written atomically."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.file = run_dir / "context.json"

    @classmethod
    def from_configuration(cls, configuration: dict | None) -> RunContext:
        """The run's context: the folder the pgdrill control created, or (for activities
        used without the control) one ad-hoc folder per process under reports/."""
        configured = (configuration or {}).get(RUN_DIR_KEY) or os.environ.get("PGDRILL_RUN_DIR")
        if configured:
            return cls(Path(configured))
        pid = os.getpid()
        if pid not in _ADHOC:
            reports = default_reports_dir(configuration)
            _ADHOC[pid] = create_run_dir(reports, "adhoc")
        return cls(_ADHOC[pid])

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self.file.read_text())
        except FileNotFoundError:
            return {}

    @contextmanager
    def _locked(self):
        """Serialise read-modify-write: activities, the load thread and the control update
        the same document."""
        with open(self.run_dir / "context.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write(self, data: dict[str, Any]) -> None:
        write_atomically(self.file, json.dumps(data, indent=2, sort_keys=True, default=str))

    def update(self, **values: Any) -> dict[str, Any]:
        """Set top-level keys (atomically, under the context lock)."""
        with self._locked():
            data = self.read()
            data.update(values)
            self._write(data)
            return data

    def merge(self, key: str, **values: Any) -> dict[str, Any]:
        """Merge `values` into the dict at `key` (created if missing), under the lock."""
        with self._locked():
            data = self.read()
            data[key] = {**(data.get(key) or {}), **values}
            self._write(data)
            return data

    def append(self, key: str, value: Any) -> None:
        """Append `value` to the list at `key` (created if missing), under the lock."""
        with self._locked():
            data = self.read()
            data[key] = [*data.get(key, []), value]
            self._write(data)
