"""How the cnpg target reaches PostgreSQL, chosen by configuration (`cnpg_connection`):

- "service" — from inside the cluster (a scheduled drill's pod): the primary through the
  `<cluster>-rw.<namespace>.svc` Service (it follows failovers), a given instance through its
  pod IP, all on port 5432.
- "port-forward" — from a workstation: local listeners on 127.0.0.1 that open a pods/portforward
  session through the API server for every connection, as `kubectl port-forward` does. The
  "primary" listener resolves the current primary at each new connection, so it follows a
  failover like the -rw Service; an instance's listener always goes to that pod.

Both give (host, port) pairs libpq connects to; passwords come from Secrets at connect time."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable

from pgdrill.core.console import say
from pgdrill.targets.cnpg.kube import Kube

PRIMARY = "primary"


class ServiceAddresses:
    """In-cluster addresses: Services for the primary, pod IPs for single instances."""

    def __init__(self, port: int = 5432) -> None:
        self.port = port

    def primary(self, namespace: str, cluster: str, resolve: Callable[[], str]) -> tuple[str, int]:
        return f"{cluster}-rw.{namespace}.svc", self.port

    def pod(self, namespace: str, pod: dict) -> tuple[str, int]:
        ip = (pod.get("status") or {}).get("podIP")
        return (ip or f"{pod['metadata']['name']}.{namespace}.pod"), self.port

    def close(self) -> None:
        pass


PROXY_THREAD = "Kubernetes port forward proxy"
_default_excepthook = threading.excepthook


def _quiet_proxy_resets(args) -> None:
    """The kubernetes client relays each port-forward in a thread of its own; when the pod
    side goes away (the primary was deleted, the drill's connection closed) that thread dies
    with ConnectionResetError and Python prints its traceback. That is an expected end of
    one relayed connection, not a failure: the caller's own connection reports it."""
    if (
        isinstance(args.exc_value, (ConnectionResetError, BrokenPipeError))
        and args.thread is not None
        and args.thread.name.startswith(PROXY_THREAD)
    ):
        return
    _default_excepthook(args)


threading.excepthook = _quiet_proxy_resets


class PortForwards:
    """Local listeners relaying each accepted connection through pods/portforward."""

    def __init__(self, kube: Kube, port: int = 5432) -> None:
        self.kube = kube
        self.port = port
        self._listeners: dict[tuple[str, str], _Listener] = {}
        self._lock = threading.Lock()

    def primary(self, namespace: str, cluster: str, resolve: Callable[[], str]) -> tuple[str, int]:
        return self._listen(namespace, f"{cluster}/{PRIMARY}", resolve)

    def pod(self, namespace: str, pod: dict) -> tuple[str, int]:
        name = pod["metadata"]["name"]
        return self._listen(namespace, name, lambda: name)

    def _listen(self, namespace: str, key: str, resolve: Callable[[], str]) -> tuple[str, int]:
        with self._lock:
            listener = self._listeners.get((namespace, key))
            if listener is None or listener.closed:
                listener = _Listener(self.kube, namespace, resolve, self.port, f"{namespace}/{key}")
                self._listeners[(namespace, key)] = listener
            return "127.0.0.1", listener.local_port

    def close(self) -> None:
        with self._lock:
            for listener in self._listeners.values():
                listener.close()
            self._listeners.clear()


class _Listener:
    def __init__(
        self, kube: Kube, namespace: str, resolve: Callable[[], str], port: int, label: str
    ) -> None:
        self.kube, self.namespace, self.resolve, self.port = kube, namespace, resolve, port
        self.label = label
        self.server = socket.create_server(("127.0.0.1", 0))
        self.local_port = self.server.getsockname()[1]
        self.closed = False
        self.warned = False
        threading.Thread(
            target=self._accept, name=f"pgdrill port-forward {label}", daemon=True
        ).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve,
                args=(client,),
                daemon=True,
                name=f"pgdrill port-forward {self.label} session",
            ).start()

    def _serve(self, client: socket.socket) -> None:
        from kubernetes.stream import portforward

        pf = None
        core = None
        try:
            pod = self.resolve()
            core = self.kube.session_core()  # its own ApiClient: see Kube.session_core
            pf = portforward(
                core.connect_get_namespaced_pod_portforward,
                pod,
                self.namespace,
                ports=str(self.port),
            )
            _relay(client, pf.socket(self.port))
        except Exception as exc:
            if not self.warned:  # say it once per listener, not per libpq retry
                self.warned = True
                say(f"port-forward {self.label}: {type(exc).__name__}: {exc}")
        finally:
            client.close()
            if pf is not None:
                pf.close()
            if core is not None:
                core.api_client.close()

    def close(self) -> None:
        self.closed = True
        try:
            self.server.close()
        except OSError:
            pass


def _relay(a, b) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 5.0)
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            (b if sock is a else a).sendall(data)
