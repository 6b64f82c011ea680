"""A small fake Kubernetes API server for pgdrill's tests (a test double, not an emulator).

`FakeKubeServer` serves plain HTTP on 127.0.0.1 (a free port) from an aiohttp event loop in a
background thread, so the REAL `kubernetes` client (and chaosk8s, which builds that client
from `KUBERNETES_HOST`) talk to it over sockets exactly as they would to a cluster. Objects
live in a thread-safe in-memory `Store`, which tests and the fake CNPG operator
(`tests/fakekube/operator.py`) also use directly as a back door (those calls are not recorded).
This module routes requests and records them; the rest lives beside it: `kinds` and `errors`,
`params` (selectors), `patches`, `store`, `watch`, `logs` and `streams` (exec, port-forward).

What it does as the real API does: REST paths for core and grouped kinds (any
`(group, version, plural)` works generically as a namespaced kind), uid / resourceVersion /
creationTimestamp / generation / generateName, `Status` errors with the real reasons and codes,
optimistic concurrency on `metadata.resourceVersion`, label and field selectors, JSON merge
patch (strategic merge patch is treated as a JSON merge patch: lists are replaced, never merged
by key) and JSON patch, `/status` subresources that are the only way to write status over HTTP,
finalizers and garbage collection by `ownerReferences`, Secret `stringData`, watches with
resume from a recent resourceVersion and `timeoutSeconds`, pod logs (`sinceSeconds`,
`sinceTime`, `tailLines`, `timestamps`, `limitBytes`; no `follow`), and pods/exec and
pods/portforward over the websocket channel protocols (v5/v4 `channel.k8s.io`).

What it cannot prove (test these against a real cluster):
- RBAC enforcement: every request is allowed. `calls`/`rbac_rules()` only *derive* the rules a
  Role would need. exec/portforward are recorded as verb "create"; the python client opens
  them with a websocket GET, for which a real apiserver checks "get", so `rbac_rules()` emits
  both "create" and "get" for `pods/exec` and `pods/portforward`.
- admission webhooks (CNPG's validation/defaulting), CRD schema validation and defaulting,
  server-side apply, dry-run (refused with 400), pagination (`limit` is ignored: one page).
- grace periods and termination: a deleted pod without finalizers disappears at once (the
  `DeleteOptions` are only recorded in `last_delete_options`); no kubelet, no scheduling, no
  controllers: nothing happens to pods, Jobs or Clusters unless a test or the fake operator
  does it. Deleting a namespace removes its contents and the namespace immediately.
- exec stdin ends only when the client closes channel 0 (v5 protocol, `close_channel(0)`); under
  v4 the stdin is complete only when the websocket closes, too late for a reply.
- discovery is minimal (`/api`, `/apis`, `/version`; no resource lists) and not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
from dataclasses import dataclass
from typing import Self

from aiohttp import web

from .errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Invalid,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
    not_found,
)
from .kinds import (
    BACKUPS,
    CLUSTER_SCOPED,
    CLUSTERS,
    CONFIGMAPS,
    EVENTS,
    JOBS,
    KIND_NAMES,
    KNOWN_KINDS,
    NAMESPACES,
    OBJECT_STORES,
    PODS,
    PVCS,
    SCHEDULED_BACKUPS,
    SECRETS,
    SERVICES,
    STATUS_SUBRESOURCE,
    Kind,
    api_version,
    is_namespaced,
    kind_name,
)
from .logs import LogSource, filter_log, serve_log
from .params import field_matcher, label_matcher, truthy
from .patches import json_patch, merge_patch, patcher, status_rule
from .store import Store
from .streams import (
    WS_EXEC_PROTOCOLS,
    WS_PORTFORWARD_PROTOCOLS,
    ExecHandler,
    PortforwardResolver,
    serve_exec,
    serve_portforward,
)
from .watch import serve_watch

__all__ = [  # what moved out of this module stays importable from it
    "BACKUPS",
    "CLUSTER_SCOPED",
    "CLUSTERS",
    "CONFIGMAPS",
    "EVENTS",
    "JOBS",
    "KNOWN_KINDS",
    "NAMESPACES",
    "OBJECT_STORES",
    "PODS",
    "PVCS",
    "SCHEDULED_BACKUPS",
    "SECRETS",
    "SERVICES",
    "STATUS_SUBRESOURCE",
    "WS_EXEC_PROTOCOLS",
    "WS_PORTFORWARD_PROTOCOLS",
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Call",
    "Conflict",
    "FakeKubeServer",
    "Invalid",
    "Kind",
    "MethodNotAllowed",
    "NotFound",
    "Store",
    "UnsupportedMediaType",
    "api_version",
    "field_matcher",
    "filter_log",
    "is_namespaced",
    "json_patch",
    "kind_name",
    "label_matcher",
    "merge_patch",
]


@dataclass(frozen=True)
class Call:
    """One API request made by a client over HTTP (not in-process Store calls)."""

    verb: str  # RBAC verb: get, list, watch, create, update, patch, delete, deletecollection
    group: str  # "" for core
    resource: str  # plural, e.g. "pods"
    subresource: str | None  # "status", "log", "exec", "portforward" or None
    namespace: str | None  # for a Namespace object: its own name, as RBAC sees it
    name: str | None


class FakeKubeServer:
    """The fake API server; `start()`/`stop()` or use it as a context manager."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or Store()
        self.calls: list[Call] = []
        self.url = ""
        # (namespace, pod, container, command, stdin) -> (stdout, stderr, exit code)
        self.exec_handler: ExecHandler | None = None
        # (namespace, pod, port) -> (host, port) of a real TCP endpoint to relay to
        self.portforward_resolver: PortforwardResolver | None = None
        # (namespace, pod, container) -> the pod's log text; see `filter_log`
        self.log_source: LogSource | None = None
        # (kind, namespace or None, name) -> the last DeleteOptions (body + query) for it
        self.last_delete_options: dict[tuple[Kind, str | None, str], dict] = {}
        self._calls_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._websockets: set[web.WebSocketResponse] = set()

    # lifecycle
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> Self:
        started, failure = threading.Event(), []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                started.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fakekube apiserver", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure or not self.url:
            raise RuntimeError(f"fake kube API server did not start: {failure}")
        self.store.add_listener(self._on_change)
        return self

    async def _astart(self) -> None:
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        self.store.remove_listener(self._on_change)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)

    async def _astop(self) -> None:
        self._stopping.set()
        closing = [asyncio.ensure_future(ws.close(code=1001)) for ws in list(self._websockets)]
        if closing:
            await asyncio.wait(closing, timeout=0.5)
        await self._runner.cleanup()

    def _on_change(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self._wake_watchers)

    def _wake_watchers(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    # clients and recorded calls
    def api_client(self):
        """A real `kubernetes.client.ApiClient` configured for this server."""
        import kubernetes.client

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return kubernetes.client.ApiClient(configuration)

    def reset_calls(self) -> None:
        with self._calls_lock:
            self.calls.clear()

    def rbac_rules(self, exclude_namespaces=()) -> list[dict]:
        """Role-style rules covering the recorded calls: one rule per (group, resource)."""
        verbs: dict[tuple[str, str], set[str]] = {}
        with self._calls_lock:
            calls = list(self.calls)
        for call in calls:
            if call.namespace is not None and call.namespace in exclude_namespaces:
                continue
            resource = call.resource + (f"/{call.subresource}" if call.subresource else "")
            found = verbs.setdefault((call.group, resource), set())
            found.add(call.verb)
            if call.subresource in ("exec", "portforward"):
                found.update({"create", "get"})
        return [
            {"apiGroups": [group], "resources": [resource], "verbs": sorted(v)}
            for (group, resource), v in sorted(verbs.items())
        ]

    # HTTP
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return self._status(exc)

    @staticmethod
    def _status(exc: ApiError) -> web.Response:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": str(exc),
            "reason": exc.reason,
            "code": exc.code,
        }
        if exc.kind or exc.name:
            body["details"] = {"name": exc.name, "kind": exc.kind[2] if exc.kind else None}
            if exc.kind and exc.kind[0]:
                body["details"]["group"] = exc.kind[0]
        return web.json_response(body, status=exc.code)

    def _discovery(self, segs: list[str]) -> web.Response | None:
        kinds = set(KNOWN_KINDS) | self.store.kinds()
        if segs == ["version"]:
            return web.json_response(
                {
                    "major": "1",
                    "minor": "31",
                    "gitVersion": "v1.31.0-fake",
                    "gitCommit": "fake",
                    "gitTreeState": "clean",
                    "buildDate": "2024-08-13T00:00:00Z",
                    "compiler": "gc",
                    "goVersion": "go1.22.5",
                    "platform": "linux/amd64",
                }
            )
        if segs == ["api"]:
            return web.json_response(
                {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        if segs == ["apis"]:
            groups = sorted({(k[0], k[1]) for k in kinds if k[0]})
            return web.json_response(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": g,
                            "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                            "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                        }
                        for g, v in groups
                    ],
                }
            )
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        segs = [s for s in request.path.split("/") if s]
        answer = self._discovery(segs)
        if answer is not None:
            return answer
        if segs[:1] == ["api"] and len(segs) > 2:
            group, version, rest = "", segs[1], segs[2:]
        elif segs[:1] == ["apis"] and len(segs) > 3:
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            raise NotFound("the server could not find the requested resource")
        namespace = None
        if rest[0] == "namespaces" and len(rest) > 2 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise NotFound("the server could not find the requested resource")
        kind = (group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if (namespace is not None) != is_namespaced(kind) and (name or not is_namespaced(kind)):
            raise NotFound("the server could not find the requested resource")
        if sub not in (None, "status") and not (
            kind == PODS and sub in ("log", "exec", "portforward")
        ):
            raise NotFound("the server could not find the requested resource")
        if "dryRun" in request.query:
            raise BadRequest("the fake kube API server does not support dryRun")

        query, method = request.query, request.method
        if name is None:
            verb = {
                "GET": "watch" if truthy(query.get("watch")) else "list",
                "POST": "create",
                "DELETE": "deletecollection",
            }.get(method)
        elif sub in ("exec", "portforward"):
            verb = "create" if method in ("GET", "POST") else None
        else:
            verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
            if sub and verb not in ("get", "update", "patch") or sub == "log" and verb != "get":
                verb = None
        call_ns = name if kind == NAMESPACES else namespace
        with self._calls_lock:
            self.calls.append(Call(verb or method.lower(), group, kind[2], sub, call_ns, name))
        if (
            verb is None
            or namespace is None
            and is_namespaced(kind)
            and verb not in ("list", "watch")
        ):
            raise MethodNotAllowed(f"the server does not allow {method} on this resource")
        body = await self._body(request) if method in ("POST", "PUT", "PATCH", "DELETE") else None

        if verb in ("list", "watch", "deletecollection"):
            labels, fields = query.get("labelSelector"), query.get("fieldSelector")
            if verb == "watch":
                return await serve_watch(
                    request,
                    self.store,
                    kind,
                    namespace,
                    labels,
                    fields,
                    stopping=self._stopping,
                    changed=lambda: self._changed,
                )
            version, items = self.store.snapshot(kind, namespace, labels, fields)
            if verb == "deletecollection":
                deleted = []
                for item in items:
                    with contextlib.suppress(NotFound):  # gone meanwhile (garbage collected)
                        deleted.append(
                            self._delete(
                                kind,
                                item["metadata"].get("namespace"),
                                item["metadata"]["name"],
                                query,
                                body,
                            )
                        )
                items = deleted
            return web.json_response(
                {
                    "kind": kind_name(kind) + "List",
                    "apiVersion": api_version(kind),
                    "metadata": {"resourceVersion": str(version)},
                    "items": items,
                }
            )
        if sub in ("log", "exec", "portforward"):
            pod = self.store.get(PODS, namespace, name)
            if pod is None:
                raise not_found(PODS, name)
            container = query.get("container") or None
            containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers", [])]
            if container and containers and container not in containers:
                raise BadRequest(f"container {container} is not valid for pod {name}")
            if sub == "log":
                return await serve_log(request, self.log_source, namespace, name, container)
            if request.headers.get("Upgrade", "").lower() != "websocket":
                raise BadRequest("Upgrade request required")
            if sub == "exec":
                return await serve_exec(
                    request, self.exec_handler, self._websockets, namespace, name, container
                )
            return await serve_portforward(
                request, self.portforward_resolver, self._websockets, namespace, name
            )
        if verb == "create":
            return web.json_response(self._create(kind, namespace, body), status=201)
        if verb == "get":
            obj = self.store.get(kind, namespace, name)
            if obj is None:
                raise not_found(kind, name)
            return web.json_response(obj)
        if verb == "delete":
            return web.json_response(self._delete(kind, namespace, name, query, body))
        if verb == "update":
            if not isinstance(body, dict):
                raise BadRequest("the body of a PUT must be an object")
            if (body.get("metadata") or {}).get("name", name) != name:
                raise BadRequest(
                    f"the name of the object ({body['metadata']['name']}) does not "
                    f"match the name on the URL ({name})"
                )

            def changed(_current: dict) -> dict:
                return copy.deepcopy(body)
        else:
            changed = patcher(request.content_type, body)
        return web.json_response(
            self.store.mutate(kind, namespace, name, status_rule(kind, sub, changed))
        )

    @staticmethod
    async def _body(request: web.Request):
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BadRequest(f"the request body is not JSON: {exc}") from None

    def _create(self, kind: Kind, namespace: str | None, body) -> dict:
        if not isinstance(body, dict) or not isinstance(body.setdefault("metadata", {}), dict):
            raise BadRequest("the body of a create must be an object with metadata")
        expected = kind_name(kind) if kind[2] in KIND_NAMES else body.get("kind")
        if body.get("kind", expected) != expected or body.get(
            "apiVersion", api_version(kind)
        ) != api_version(kind):
            raise BadRequest(
                f"the body is a {body.get('apiVersion')} {body.get('kind')}, not "
                f"a {api_version(kind)} {expected}"
            )
        if namespace is not None:
            if body["metadata"].get("namespace") not in (None, "", namespace):
                raise BadRequest(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
            body["metadata"]["namespace"] = namespace
        if kind in STATUS_SUBRESOURCE:
            body.pop("status", None)
        return self.store.create(kind, body)

    def _delete(self, kind: Kind, namespace: str | None, name: str, query, body) -> dict:
        options = dict(body) if isinstance(body, dict) else {}
        if body is not None and not isinstance(body, dict):
            raise BadRequest("DeleteOptions must be an object")
        if "dryRun" in options:
            raise BadRequest("the fake kube API server does not support dryRun")
        for key in ("gracePeriodSeconds", "propagationPolicy", "orphanDependents"):
            if key in query:
                options[key] = int(query[key]) if key == "gracePeriodSeconds" else query[key]
        policy = options.get("propagationPolicy") or (
            "Orphan" if options.get("orphanDependents") in (True, "true") else None
        )
        self.last_delete_options[(kind, namespace, name)] = options
        deleted = self.store.delete(kind, namespace, name, policy, options.get("preconditions"))
        if deleted is None:
            raise not_found(kind, name)
        return deleted
