"""What the fake API server delegates to the fake CNPG operator: pods/exec (a command run as
PostgreSQL's OS user with the PGDATA of the pod's sandbox instance), pods/portforward (to the
instance's local port) and pod logs (the operator's own decisions; PostgreSQL's log, with the
kubelet's timestamps)."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime

from pgdrill.targets.sandbox import postgres
from pgdrill.targets.sandbox.state import RESTORE_NAME

from .cnpg import OPERATOR_NS, OPERATOR_POD, deleting, micro
from .kinds import PODS

PG_LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (\S+) ")


class PodIOMixin:
    """exec, port-forward and logs of the pods. A mixin of `FakeCnpgOperator` (operator.py):
    it uses the operator's state (`store`, `sandbox`, `pods`, `_restores`, `events`, ...)."""

    def _instance_for(self, namespace: str, pod: str) -> str | None:
        """The sandbox instance behind a live pod (restore-test for a recovered one)."""
        obj = self.store.get(PODS, namespace, pod)
        if obj is None or deleting(obj):
            return None
        if namespace == self.namespace and pod in self.pods:
            return self.pods[pod]
        restored = [
            f"{n}-1" for n, w in self._restores.values() if w.done() and w.exception() is None
        ]
        return RESTORE_NAME if namespace == self.restore_namespace and pod in restored else None

    def _exec(self, namespace, pod, container, command, stdin):
        """The command runs as PostgreSQL's OS user with PGDATA of the pod's instance."""
        instance = self._instance_for(namespace, pod)
        if instance is None:
            return b"", f"pod {namespace}/{pod} runs no PostgreSQL instance\n".encode(), 1
        layout, state = self.sandbox.layout, self.sandbox.layout.read()
        port = state.restore_port if instance == RESTORE_NAME else state.instances[instance].port
        env = {
            "PGDATA": str(layout.data_dir(instance)),
            "PGHOST": "127.0.0.1",
            "PGPORT": str(port),
            "PGUSER": "postgres",
            "LANG": "C.UTF-8",
            "PATH": f"{postgres.BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(layout.instance_dir(instance)),
        }
        try:
            proc = subprocess.run(
                command,
                input=stdin or b"",
                capture_output=True,
                env=env,
                timeout=120,
                **self._run_as.popen_kwargs(),
            )
        except OSError as exc:
            return b"", f"exec: {exc}\n".encode(), 127
        except subprocess.TimeoutExpired:
            return b"", b"exec: command timed out after 120s\n", 124
        return proc.stdout, proc.stderr, proc.returncode

    def _resolve(self, namespace, pod, port):
        instance = self._instance_for(namespace, pod)
        if instance is None or int(port) != 5432:
            raise ConnectionRefusedError(f"nothing listens on {namespace}/{pod}:{port}")
        state = self.sandbox.layout.read()
        local = state.restore_port if instance == RESTORE_NAME else state.instances[instance].port
        if not local or postgres.postmaster_pid(self.sandbox.layout.data_dir(instance)) is None:
            raise ConnectionRefusedError(f"PostgreSQL of {namespace}/{pod} is not running")
        return "127.0.0.1", local

    def _logs(self, namespace, pod, container) -> str:
        if namespace == OPERATOR_NS and pod == OPERATOR_POD:
            with self._lock:
                return "".join(f"{e['ts']} {json.dumps(e)}\n" for e in self.events)
        if namespace == self.namespace and pod in self.pods:
            return timestamped(self.sandbox.layout.log_file(self.pods[pod]))
        if namespace == self.restore_namespace and any(
            pod.startswith(f"{n}-1") for n, _ in self._restores.values()
        ):
            return timestamped(self.sandbox.layout.log_file(RESTORE_NAME))
        return ""


def timestamped(path) -> str:
    """A PostgreSQL log (log_line_prefix '%m [%p] ') as container log lines, each starting
    with an RFC 3339 timestamp; a continuation line takes its record's."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    out, ts = [], micro()
    for line in lines:
        match = PG_LOG_TS.match(line)
        if match:
            when = datetime.fromisoformat(match.group(1))
            ts = micro(
                when.replace(tzinfo=UTC) if match.group(2) in ("UTC", "GMT") else when.astimezone()
            )
        out.append(f"{ts} {line}\n")
    return "".join(out)
