"""The sandbox's on-disk state under PGDRILL_HOME (default ./.pgdrill), written atomically."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from pgdrill.core.files import write_atomically
from pgdrill.core.procs import pid_alive

DEFAULT_CLUSTER = "sandbox"
DEFAULT_BUCKET = "pgdrill-backups"
RESTORE_NAME = "restore-test"


def sandbox_home(base: str | os.PathLike | None = None) -> Path:
    return Path(base or os.environ.get("PGDRILL_HOME") or Path.cwd() / ".pgdrill").resolve()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:`port` (so a server can be restarted on it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def process_runs(pid: int | None, *needles: str) -> bool:
    """True when `pid` is alive and its command line contains every one of `needles`: a pid
    recorded before a reboot may belong to an unrelated process by now. Cheap (reads /proc)."""
    if not pid or not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except PermissionError:
        return True  # /proc hidden from us (hidepid): liveness is all we can tell
    except OSError:
        return False
    return all(needle in cmdline for needle in needles)


@dataclass
class InstanceState:
    port: int
    role: str  # "primary" | "replica"
    # set when the instance lost its role or storage and must be re-cloned before it rejoins
    needs_rebuild: bool = False


@dataclass
class SandboxState:
    cluster: str
    bucket: str
    s3_port: int
    s3_pid: int | None = None
    supervisor_pid: int | None = None
    run_as: str = ""
    instances: dict[str, InstanceState] = field(default_factory=dict)
    restore_port: int | None = None
    restore_backup_id: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    # set when the object store was found emptied (moto keeps it in memory): the sandbox's
    # backups and WAL archive are gone for good, only `pgdrill sandbox reset` helps
    store_lost: str | None = None
    # the barman serverName the cluster archives and backs up under (s3://<bucket>/<it>/);
    # None = the cluster's name (sandboxes made before a rebuild could change it)
    server_name: str | None = None
    # set (UTC, ISO-8601) while the whole cluster is destroyed (cluster-loss drill): the
    # supervisor heals nothing until an explicit rebuild from the bucket clears it
    destroyed_at: str | None = None

    @property
    def archive_server(self) -> str:
        """The serverName the cluster archives under now."""
        return self.server_name or self.cluster

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def primary_name(self) -> str | None:
        for name, inst in self.instances.items():
            if inst.role == "primary":
                return name
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SandboxState:
        data = json.loads(text)
        data["instances"] = {k: InstanceState(**v) for k, v in data.get("instances", {}).items()}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Layout:
    """Every path the sandbox uses, in one place."""

    def __init__(self, home: Path) -> None:
        self.home = home

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.home / "state.lock"

    @property
    def events_file(self) -> Path:
        return self.home / "events.jsonl"

    @property
    def supervisor_log(self) -> Path:
        return self.home / "supervisor.log"

    @property
    def s3_log(self) -> Path:
        return self.home / "s3.log"

    @property
    def credentials_file(self) -> Path:
        """The sandbox's SOPS/age-encrypted `cnpg-backup-s3` Secret: its S3 credentials."""
        return self.home / "cnpg-backup-s3.enc.yaml"

    @property
    def age_key_file(self) -> Path:
        """The sandbox's own age identity (mode 0600), the recipient of its credentials."""
        return self.home / "age" / "keys.txt"

    @property
    def sockets(self) -> Path:
        return self.home / "sockets"

    def instance_dir(self, name: str) -> Path:
        return self.home / "instances" / name

    def data_dir(self, name: str) -> Path:
        return self.instance_dir(name) / "data"

    def log_file(self, name: str) -> Path:
        return self.instance_dir(name) / "postgres.log"

    def read(self) -> SandboxState | None:
        try:
            return SandboxState.from_json(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def write(self, state: SandboxState) -> None:
        write_atomically(self.state_file, state.to_json())

    @contextmanager
    def locked(self):
        """Serialise read-modify-write of the state between the CLI, drills and supervisor."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def record_event(self, event: str, **detail) -> dict:
        entry = {"ts": datetime.now(UTC).isoformat(), "event": event, **detail}
        with open(self.events_file, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
        return entry

    def events(self) -> list[dict]:
        try:
            lines = self.events_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]
