"""A small fake Kubernetes API server for pgdrill's tests (a test double, not an emulator).

`FakeKubeServer` serves plain HTTP on 127.0.0.1 (a free port) from an aiohttp event loop in a
background thread, so the REAL `kubernetes` client (and chaosk8s, which builds that client
from `KUBERNETES_HOST`) talk to it over sockets exactly as they would to a cluster. Objects
live in a thread-safe in-memory `Store`, which tests and the fake CNPG operator
(`tests/fakekube/operator.py`) also use directly as a back door (those calls are not recorded).

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
import base64
import contextlib
import copy
import json
import random
import re
import string
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Self

from aiohttp import WSMsgType, web

Kind = tuple[str, str, str]  # (group, version, plural); the core group is ""
NAMESPACES: Kind = ("", "v1", "namespaces")
PODS: Kind = ("", "v1", "pods")
PVCS: Kind = ("", "v1", "persistentvolumeclaims")
SECRETS: Kind = ("", "v1", "secrets")
SERVICES: Kind = ("", "v1", "services")
EVENTS: Kind = ("", "v1", "events")
CONFIGMAPS: Kind = ("", "v1", "configmaps")
JOBS: Kind = ("batch", "v1", "jobs")
CLUSTERS: Kind = ("postgresql.cnpg.io", "v1", "clusters")
BACKUPS: Kind = ("postgresql.cnpg.io", "v1", "backups")
SCHEDULED_BACKUPS: Kind = ("postgresql.cnpg.io", "v1", "scheduledbackups")
OBJECT_STORES: Kind = ("barmancloud.cnpg.io", "v1", "objectstores")
KNOWN_KINDS = (NAMESPACES, PODS, PVCS, SECRETS, SERVICES, EVENTS, CONFIGMAPS, JOBS, CLUSTERS,
               BACKUPS, SCHEDULED_BACKUPS, OBJECT_STORES)

_KIND_NAMES = {"namespaces": "Namespace", "pods": "Pod", "persistentvolumeclaims":
               "PersistentVolumeClaim", "secrets": "Secret", "services": "Service",
               "events": "Event", "configmaps": "ConfigMap", "jobs": "Job",
               "clusters": "Cluster", "backups": "Backup", "scheduledbackups": "ScheduledBackup",
               "objectstores": "ObjectStore"}
CLUSTER_SCOPED = frozenset({"namespaces", "nodes", "persistentvolumes", "storageclasses",
                            "clusterroles", "clusterrolebindings", "customresourcedefinitions"})
# kinds whose status is a subresource: HTTP writes to the main resource leave status alone and
# HTTP creates drop it (the in-process Store may change anything)
STATUS_SUBRESOURCE = frozenset({NAMESPACES, PODS, PVCS, SERVICES, JOBS, CLUSTERS, BACKUPS,
                                SCHEDULED_BACKUPS, OBJECT_STORES})
# field selectors a real apiserver accepts (besides metadata.name and metadata.namespace)
_FIELD_LABELS = {PODS: {"status.phase", "spec.nodeName", "status.podIP",
                        "spec.serviceAccountName"},
                 EVENTS: {"involvedObject.kind", "involvedObject.name", "involvedObject.uid",
                          "involvedObject.namespace", "reason", "type"},
                 SECRETS: {"type"}, JOBS: {"status.successful"}, NAMESPACES: {"status.phase"}}
WS_EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
                     "v2.channel.k8s.io", "channel.k8s.io")
WS_PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io", "channel.k8s.io", "portforward.k8s.io")


def kind_name(kind: Kind) -> str:
    """The `kind` of objects of this (group, version, plural), e.g. "Pod"."""
    plural = kind[2]
    if plural in _KIND_NAMES:
        return _KIND_NAMES[plural]
    singular = plural[:-3] + "y" if plural.endswith("ies") else plural.removesuffix("s")
    return singular[:1].upper() + singular[1:]


def api_version(kind: Kind) -> str:
    return f"{kind[0]}/{kind[1]}" if kind[0] else kind[1]


def is_namespaced(kind: Kind) -> bool:
    return kind[2] not in CLUSTER_SCOPED


def _resource(kind: Kind) -> str:
    """How the API names the resource in messages: "pods", "clusters.postgresql.cnpg.io"."""
    return f"{kind[2]}.{kind[0]}" if kind[0] else kind[2]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- errors ---------------------------------------------------------------------------------
class ApiError(Exception):
    """Base of the errors the server turns into a `Status` (reason, HTTP code, details)."""
    code, reason = 500, "InternalError"

    def __init__(self, message: str = "", kind: Kind | None = None, name: str | None = None):
        super().__init__(message)
        self.kind, self.name = kind, name


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class Conflict(ApiError):
    code, reason = 409, "Conflict"


class AlreadyExists(Conflict):
    """A create found the name taken (a `Conflict`; HTTP 409 reason AlreadyExists)."""
    reason = "AlreadyExists"


class BadRequest(ApiError, ValueError):
    code, reason = 400, "BadRequest"


class Invalid(ApiError):
    code, reason = 422, "Invalid"


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class UnsupportedMediaType(ApiError):
    code, reason = 415, "UnsupportedMediaType"


def _not_found(kind: Kind, name: str) -> NotFound:
    return NotFound(f'{_resource(kind)} "{name}" not found', kind, name)


def _conflict(kind: Kind, name: str) -> Conflict:
    return Conflict(f'Operation cannot be fulfilled on {_resource(kind)} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and "
                    "try again", kind, name)


# -- selectors ------------------------------------------------------------------------------
_LABEL_TERM = re.compile(r"^(!?)([A-Za-z0-9_./-]+)(?:\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)"
                         r"|\s+(in|notin)\s*\(([^)]*)\))?$")
_FIELD_TERM = re.compile(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for ch in selector:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += ch
    terms.append(current.strip())
    return [t for t in terms if t]


def label_matcher(selector: str | None) -> Callable[[dict], bool]:
    """`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma = AND."""
    checks = []
    for term in _split_terms(selector or ""):
        m = _LABEL_TERM.match(term)
        if not m or (m[1] and (m[3] or m[5])):
            raise BadRequest(f"unable to parse requirement: {term!r}")
        neg, key, op, value, setop, values = m.groups()
        if setop:
            allowed = {v.strip() for v in values.split(",") if v.strip()}
            checks.append(lambda ls, k=key, a=allowed, n=setop == "notin":
                          (ls.get(k) in a) != n)
        elif op:
            checks.append(lambda ls, k=key, v=value, n=op == "!=": (ls.get(k) == v) != n)
        else:
            checks.append(lambda ls, k=key, n=bool(neg): (k in ls) != n)
    return lambda obj: all(c(obj.get("metadata", {}).get("labels") or {}) for c in checks)


def field_matcher(kind: Kind, selector: str | None) -> Callable[[dict], bool]:
    """`path=value`, `path==value`, `path!=value` for the fields the real API supports."""
    checks = []
    for term in _split_terms(selector or ""):
        m = _FIELD_TERM.match(term)
        if not m:
            raise BadRequest(f"invalid field selector: {term!r}")
        path, op, value = m.groups()
        if path not in {"metadata.name", "metadata.namespace"} | _FIELD_LABELS.get(kind, set()):
            raise BadRequest(f'field label not supported: {path}')
        checks.append((path.split("."), value, op == "!="))

    def lookup(obj, parts):
        for part in parts:
            obj = obj.get(part) if isinstance(obj, dict) else None
        return "" if obj is None else str(obj).lower() if isinstance(obj, bool) else str(obj)
    return lambda obj: all((lookup(obj, p) == v) != n for p, v, n in checks)


# -- patches --------------------------------------------------------------------------------
def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (returns a new value; `target` is not modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(doc, operations: list) -> dict:
    """RFC 6902 JSON patch: add, remove, replace, move, copy, test."""
    doc = copy.deepcopy(doc)

    def pointer(path: str) -> list[str]:
        if path and not path.startswith("/"):
            raise BadRequest(f"invalid JSON pointer: {path!r}")
        return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]

    def parent(parts):
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    def get(parts):
        node = doc
        for part in parts:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def remove(parts):
        node, last = parent(parts)
        return node.pop(int(last)) if isinstance(node, list) else node.pop(last)

    def add(parts, value):
        nonlocal doc
        if not parts:
            doc = value
            return
        node, last = parent(parts)
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), value)
        else:
            node[last] = value

    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise BadRequest(f"invalid JSON patch operation: {op!r}")
        path, name = pointer(op["path"]), op["op"]
        try:
            if name == "test":
                if get(path) != op.get("value"):
                    raise Invalid(f"test operation failed at {op['path']}")
            elif name == "remove":
                remove(path)
            elif name == "add":
                add(path, copy.deepcopy(op.get("value")))
            elif name == "replace":
                remove(path)
                add(path, copy.deepcopy(op.get("value")))
            elif name in ("move", "copy"):
                source = pointer(op.get("from", ""))
                value = remove(source) if name == "move" else copy.deepcopy(get(source))
                add(path, value)
            else:
                raise BadRequest(f"unknown JSON patch operation {name!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            if isinstance(exc, ApiError):
                raise
            raise Invalid(f"JSON patch {name} at {op['path']} does not apply: {exc!r}") from None
    return doc


# -- the store ------------------------------------------------------------------------------
class Store:
    """All objects, keyed by kind, namespace ("" when cluster-scoped) and name. Thread-safe
    (one lock); everything returned is a deep copy. Stored dicts are never modified in place,
    so the change history can hold them."""

    def __init__(self, history: int = 5000) -> None:
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._objects: dict[Kind, dict[tuple[str, str], dict]] = {}
        self._version = 0
        self._history: deque = deque(maxlen=history)  # (version, kind, type, obj, previous)
        self._floor = 0  # versions <= this may be missing from the history
        self._listeners: list[Callable[[], None]] = []

    @property
    def version(self) -> int:
        """The current global resourceVersion."""
        return self._version

    # reads
    def get(self, kind: Kind, namespace: str | None, name: str) -> dict | None:
        with self._lock:
            return copy.deepcopy(self._objects.get(kind, {}).get((namespace or "", name)))

    def list(self, kind: Kind, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict]:
        return self.snapshot(kind, namespace, label_selector, field_selector)[1]

    def snapshot(self, kind: Kind, namespace: str | None = None,
                 label_selector: str | None = None,
                 field_selector: str | None = None) -> tuple[int, list[dict]]:
        """(version, matching objects sorted by namespace and name), read atomically."""
        labels, fields = label_matcher(label_selector), field_matcher(kind, field_selector)
        with self._lock:
            items = [obj for (ns, _), obj in sorted(self._objects.get(kind, {}).items())
                     if (namespace is None or ns == namespace) and labels(obj) and fields(obj)]
            return self._version, copy.deepcopy(items)

    def wait_changed(self, since_version: int, timeout: float) -> int:
        """Block until the version exceeds `since_version` (or timeout); return the version."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > since_version, timeout)
            return self._version

    def events_since(self, kind: Kind, version: int) -> list[tuple] | None:
        """Changes of `kind` after `version` as (version, kind, type, object, previous); None
        when the history no longer reaches back that far (a watch answers 410 Gone)."""
        with self._lock:
            if version < self._floor:
                return None
            return [e for e in self._history if e[0] > version and e[1] == kind]

    def kinds(self) -> set[Kind]:
        """The kinds that have (or had) objects."""
        with self._lock:
            return set(self._objects)

    def add_listener(self, callback: Callable[[], None]) -> None:
        """`callback()` runs (outside the lock, in the writer's thread) after every write."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    # writes
    def create(self, kind: Kind, obj: dict) -> dict:
        """Store a new object (namespace from its metadata). Raises AlreadyExists (a
        Conflict) when the name is taken, NotFound when its namespace does not exist."""
        return self._write(lambda: self._create(kind, copy.deepcopy(obj)))

    def patch(self, kind: Kind, namespace: str | None, name: str, patch: dict) -> dict:
        """RFC 7386 merge patch over the whole object, status included."""
        return self.mutate(kind, namespace, name, lambda cur: merge_patch(cur, patch))

    def replace(self, kind: Kind, namespace: str | None, name: str, obj: dict) -> dict:
        """Replace the whole object; a stale `metadata.resourceVersion` in `obj` raises
        Conflict (leave it out for an unconditional replace)."""
        return self.mutate(kind, namespace, name, lambda _cur: copy.deepcopy(obj))

    def mutate(self, kind: Kind, namespace: str | None, name: str,
               fn: Callable[[dict], dict]) -> dict:
        """Atomic read-modify-write: `fn` gets a copy of the object and returns the new one.
        A `metadata.resourceVersion` in the result that differs from the stored one raises
        Conflict; identity fields (uid, creationTimestamp, ...) are kept."""
        def op():
            current = self._objects.get(kind, {}).get((namespace or "", name))
            if current is None:
                raise _not_found(kind, name)
            return self._update(kind, current, fn(copy.deepcopy(current)))
        return self._write(op)

    def delete(self, kind: Kind, namespace: str | None, name: str,
               propagation_policy: str | None = None,
               preconditions: dict | None = None) -> dict | None:
        """Delete (or, with finalizers, mark with deletionTimestamp); None when absent.
        Dependents (ownerReferences) are deleted too unless the policy is "Orphan"."""
        def op():
            current = self._objects.get(kind, {}).get((namespace or "", name))
            if current is None:
                return None
            meta = current["metadata"]
            for field in ("uid", "resourceVersion"):
                if (preconditions or {}).get(field) not in (None, meta.get(field)):
                    raise _conflict(kind, name)
            return self._delete(kind, current, propagation_policy)
        return self._write(op)

    # internals (called with the lock held)
    def _write(self, op: Callable[[], dict | None]):
        with self._lock:
            before = self._version
            result = op()
            if self._version != before:
                self._cond.notify_all()
        if self._version != before:
            for callback in list(self._listeners):
                callback()
        return copy.deepcopy(result)

    def _commit(self, kind: Kind, type_: str, obj: dict, previous: dict | None) -> None:
        if len(self._history) == self._history.maxlen:
            self._floor = self._history[0][0]
        self._history.append((self._version, kind, type_, obj, previous))

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _create(self, kind: Kind, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        if is_namespaced(kind):
            ns = meta.get("namespace") or ""
            if not ns:
                raise Invalid(f"{kind_name(kind)}: metadata.namespace is required", kind)
            if ("", ns) not in self._objects.get(NAMESPACES, {}):
                raise NotFound(f'namespaces "{ns}" not found', NAMESPACES, ns)
        else:
            ns = ""
            meta.pop("namespace", None)
        objects = self._objects.setdefault(kind, {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise Invalid(f"{kind_name(kind)}: name or generateName is required", kind)
            while not meta.get("name") or (ns, meta["name"]) in objects:
                meta["name"] = meta["generateName"] + "".join(
                    random.choices(string.ascii_lowercase + string.digits, k=5))
        if (ns, meta["name"]) in objects:
            raise AlreadyExists(f'{_resource(kind)} "{meta["name"]}" already exists',
                                kind, meta["name"])
        obj.setdefault("apiVersion", api_version(kind))
        obj.setdefault("kind", kind_name(kind))
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1,
                    resourceVersion=self._next_version())
        if kind in (PODS, PVCS, NAMESPACES):
            obj.setdefault("status", {}).setdefault(
                "phase", "Active" if kind == NAMESPACES else "Pending")
        self._fold_string_data(kind, obj)
        objects[(ns, meta["name"])] = obj
        self._commit(kind, "ADDED", obj, None)
        return obj

    def _update(self, kind: Kind, current: dict, new: dict) -> dict:
        old_meta, meta = current["metadata"], new.setdefault("metadata", {})
        name = old_meta["name"]
        if meta.get("name", name) != name or (
                meta.get("namespace") or "") not in ("", old_meta.get("namespace", "")):
            raise BadRequest(f"the name or namespace of {_resource(kind)} {name!r} cannot change",
                             kind, name)
        if meta.get("resourceVersion") not in (None, "", old_meta["resourceVersion"]):
            raise _conflict(kind, name)
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation",
                      "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        new.setdefault("apiVersion", current.get("apiVersion"))
        new.setdefault("kind", current.get("kind"))
        self._fold_string_data(kind, new)
        if new == current:  # a no-op write changes nothing, not even the resourceVersion
            return current
        if new.get("spec") != current.get("spec"):
            meta["generation"] = old_meta.get("generation", 1) + 1
        if old_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(kind, new, None)
        meta["resourceVersion"] = self._next_version()
        self._objects[kind][(meta.get("namespace", ""), name)] = new
        self._commit(kind, "MODIFIED", new, current)
        return new

    def _delete(self, kind: Kind, current: dict, policy: str | None) -> dict:
        meta = current["metadata"]
        if kind == NAMESPACES:  # the namespace controller, instantly
            for other in list(self._objects):
                for (ns, _), obj in list(self._objects[other].items()):
                    if ns == meta["name"] and is_namespaced(other) and self._present(other, obj):
                        self._delete(other, obj, policy)
        if not meta.get("finalizers"):
            return self._remove(kind, current, policy)
        if meta.get("deletionTimestamp"):
            return current
        new = copy.deepcopy(current)
        new["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0,
                               resourceVersion=self._next_version())
        self._objects[kind][(meta.get("namespace", ""), meta["name"])] = new
        self._commit(kind, "MODIFIED", new, current)
        return new

    def _remove(self, kind: Kind, obj: dict, policy: str | None) -> dict:
        meta = obj["metadata"]
        previous = self._objects[kind].pop((meta.get("namespace", ""), meta["name"]))
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = self._next_version()
        self._commit(kind, "DELETED", final, previous)
        for other in list(self._objects):  # garbage collection of dependents
            for child in list(self._objects[other].values()):
                refs = child["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") == meta["uid"] for ref in refs):
                    continue
                if policy == "Orphan":
                    orphan = copy.deepcopy(child)
                    orphan["metadata"]["ownerReferences"] = [
                        ref for ref in refs if ref.get("uid") != meta["uid"]]
                    self._update(other, child, orphan)
                elif self._present(other, child):
                    self._delete(other, child, policy)
        return final

    def _present(self, kind: Kind, obj: dict) -> bool:
        meta = obj["metadata"]
        return self._objects.get(kind, {}).get((meta.get("namespace", ""), meta["name"])) is obj

    @staticmethod
    def _fold_string_data(kind: Kind, obj: dict) -> None:
        if kind == SECRETS:
            obj.setdefault("type", "Opaque")
            for key, value in (obj.pop("stringData", None) or {}).items():
                obj.setdefault("data", {})[key] = base64.b64encode(value.encode()).decode()


# -- the HTTP server ------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One API request made by a client over HTTP (not in-process Store calls)."""
    verb: str  # RBAC verb: get, list, watch, create, update, patch, delete, deletecollection
    group: str  # "" for core
    resource: str  # plural, e.g. "pods"
    subresource: str | None  # "status", "log", "exec", "portforward" or None
    namespace: str | None  # for a Namespace object: its own name, as RBAC sees it
    name: str | None


_TIMESTAMPED = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2}) ")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "t", "true")


def _parse_time(text: str) -> datetime:
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$", text)
    if not m:
        raise BadRequest(f"invalid RFC 3339 time {text!r}")
    zone = "+00:00" if m[3] == "Z" else m[3]
    return datetime.fromisoformat(m[1] + (m[2] or "")[:7] + zone)


def filter_log(text: str, since: datetime | None, tail: int | None, timestamps: bool) -> str:
    """Lines that start with an RFC 3339 timestamp and a space carry the kubelet's timestamp:
    filtered by `since`, and the timestamp is stripped unless `timestamps`. Other lines are
    always kept as they are."""
    kept = []
    for line in text.splitlines(keepends=True):
        m = _TIMESTAMPED.match(line)
        if m and since and _parse_time(m[1] + (m[2] or "") + m[3]) < since:
            continue
        kept.append(line if timestamps or not m else line[m.end():])
    if tail is not None:
        kept = kept[len(kept) - tail:] if 0 <= tail < len(kept) else kept
    return "".join(kept)


class FakeKubeServer:
    """The fake API server; `start()`/`stop()` or use it as a context manager."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or Store()
        self.calls: list[Call] = []
        self.url = ""
        # (namespace, pod, container, command, stdin) -> (stdout, stderr, exit code)
        self.exec_handler: Callable[[str, str, str | None, list[str], bytes | None],
                                    tuple[bytes, bytes, int]] | None = None
        # (namespace, pod, port) -> (host, port) of a real TCP endpoint to relay to
        self.portforward_resolver: Callable[[str, str, int], tuple[str, int]] | None = None
        # (namespace, pod, container) -> the pod's log text; see `filter_log`
        self.log_source: Callable[[str, str, str | None], str] | None = None
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
            except BaseException as exc:  # noqa: BLE001 - reported by start()
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
        return [{"apiGroups": [group], "resources": [resource], "verbs": sorted(v)}
                for (group, resource), v in sorted(verbs.items())]

    # HTTP
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return self._status(exc)

    @staticmethod
    def _status(exc: ApiError) -> web.Response:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": str(exc), "reason": exc.reason, "code": exc.code}
        if exc.kind or exc.name:
            body["details"] = {"name": exc.name, "kind": exc.kind[2] if exc.kind else None}
            if exc.kind and exc.kind[0]:
                body["details"]["group"] = exc.kind[0]
        return web.json_response(body, status=exc.code)

    def _discovery(self, segs: list[str]) -> web.Response | None:
        kinds = set(KNOWN_KINDS) | self.store.kinds()
        if segs == ["version"]:
            return web.json_response({
                "major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "gitCommit": "fake",
                "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z", "compiler": "gc",
                "goVersion": "go1.22.5", "platform": "linux/amd64"})
        if segs == ["api"]:
            return web.json_response({"kind": "APIVersions", "versions": ["v1"],
                                      "serverAddressByClientCIDRs": []})
        if segs == ["apis"]:
            groups = sorted({(k[0], k[1]) for k in kinds if k[0]})
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                for g, v in groups]})
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
        if sub not in (None, "status") and not (kind == PODS and sub in
                                                ("log", "exec", "portforward")):
            raise NotFound("the server could not find the requested resource")
        if "dryRun" in request.query:
            raise BadRequest("the fake kube API server does not support dryRun")

        query, method = request.query, request.method
        if name is None:
            verb = {"GET": "watch" if _truthy(query.get("watch")) else "list", "POST": "create",
                    "DELETE": "deletecollection"}.get(method)
        elif sub in ("exec", "portforward"):
            verb = "create" if method in ("GET", "POST") else None
        else:
            verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
                method)
            if sub and verb not in ("get", "update", "patch") or sub == "log" and verb != "get":
                verb = None
        call_ns = name if kind == NAMESPACES else namespace
        with self._calls_lock:
            self.calls.append(Call(verb or method.lower(), group, kind[2], sub, call_ns, name))
        if verb is None or namespace is None and is_namespaced(kind) and verb not in (
                "list", "watch"):
            raise MethodNotAllowed(f"the server does not allow {method} on this resource")
        body = await self._body(request) if method in ("POST", "PUT", "PATCH", "DELETE") else None

        if verb in ("list", "watch", "deletecollection"):
            labels, fields = query.get("labelSelector"), query.get("fieldSelector")
            if verb == "watch":
                return await self._watch(request, kind, namespace, labels, fields)
            version, items = self.store.snapshot(kind, namespace, labels, fields)
            if verb == "deletecollection":
                deleted = []
                for item in items:
                    with contextlib.suppress(NotFound):  # gone meanwhile (garbage collected)
                        deleted.append(self._delete(kind, item["metadata"].get("namespace"),
                                                    item["metadata"]["name"], query, body))
                items = deleted
            return web.json_response({"kind": kind_name(kind) + "List",
                                      "apiVersion": api_version(kind),
                                      "metadata": {"resourceVersion": str(version)},
                                      "items": items})
        if sub in ("log", "exec", "portforward"):
            pod = self.store.get(PODS, namespace, name)
            if pod is None:
                raise _not_found(PODS, name)
            container = query.get("container") or None
            containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers", [])]
            if container and containers and container not in containers:
                raise BadRequest(f"container {container} is not valid for pod {name}")
            if sub == "log":
                return await self._log(request, namespace, name, container)
            if request.headers.get("Upgrade", "").lower() != "websocket":
                raise BadRequest("Upgrade request required")
            if sub == "exec":
                return await self._exec(request, namespace, name, container)
            return await self._portforward(request, namespace, name)
        if verb == "create":
            return web.json_response(self._create(kind, namespace, body), status=201)
        if verb == "get":
            obj = self.store.get(kind, namespace, name)
            if obj is None:
                raise _not_found(kind, name)
            return web.json_response(obj)
        if verb == "delete":
            return web.json_response(self._delete(kind, namespace, name, query, body))
        if verb == "update":
            if not isinstance(body, dict):
                raise BadRequest("the body of a PUT must be an object")
            if (body.get("metadata") or {}).get("name", name) != name:
                raise BadRequest(f"the name of the object ({body['metadata']['name']}) does not "
                                 f"match the name on the URL ({name})")
            def changed(_current: dict) -> dict:
                return copy.deepcopy(body)
        else:
            changed = self._patcher(request.content_type, body)
        return web.json_response(self.store.mutate(kind, namespace, name,
                                                   self._status_rule(kind, sub, changed)))

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
        expected = kind_name(kind) if kind[2] in _KIND_NAMES else body.get("kind")
        if body.get("kind", expected) != expected or body.get(
                "apiVersion", api_version(kind)) != api_version(kind):
            raise BadRequest(f"the body is a {body.get('apiVersion')} {body.get('kind')}, not "
                             f"a {api_version(kind)} {expected}")
        if namespace is not None:
            if body["metadata"].get("namespace") not in (None, "", namespace):
                raise BadRequest("the namespace of the provided object does not match the "
                                 "namespace sent on the request")
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
            "Orphan" if options.get("orphanDependents") in (True, "true") else None)
        self.last_delete_options[(kind, namespace, name)] = options
        deleted = self.store.delete(kind, namespace, name, policy, options.get("preconditions"))
        if deleted is None:
            raise _not_found(kind, name)
        return deleted

    @staticmethod
    def _patcher(content_type: str, body) -> Callable[[dict], dict]:
        if content_type in ("application/merge-patch+json",
                            "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise BadRequest("a merge patch must be a JSON object")
            return lambda cur: merge_patch(cur, body)
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise BadRequest("a JSON patch must be a JSON array of operations")
            return lambda cur: json_patch(cur, body)
        raise UnsupportedMediaType(f"the fake kube API server does not support PATCH with "
                                   f"content type {content_type!r}")

    @staticmethod
    def _status_rule(kind: Kind, sub: str | None, change: Callable[[dict], dict]):
        """/status writes change only status; main-resource writes never change status of
        kinds with a status subresource."""
        def apply(current: dict) -> dict:
            new = change(copy.deepcopy(current))
            if not isinstance(new, dict):
                raise BadRequest("the result of the write is not an object")
            if sub == "status":
                keep, take = current, new
                keep["metadata"]["resourceVersion"] = (new.get("metadata") or {}).get(
                    "resourceVersion", current["metadata"]["resourceVersion"])
            elif kind in STATUS_SUBRESOURCE:
                keep, take = new, current
            else:
                return new
            keep.pop("status", None)
            if "status" in take:
                keep["status"] = take["status"]
            return keep
        return apply

    async def _watch(self, request, kind, namespace, labels, fields) -> web.StreamResponse:
        query = request.query
        matches_labels, matches_fields = label_matcher(labels), field_matcher(kind, fields)
        try:
            timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
            since = query.get("resourceVersion") or "0"
            version = int(since)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

        def matches(obj):
            return obj is not None and (namespace is None or obj["metadata"].get(
                "namespace") == namespace) and matches_labels(obj) and matches_fields(obj)

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def send(type_, obj):
            await response.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

        try:
            if since == "0":
                version, items = self.store.snapshot(kind, namespace, labels, fields)
                for obj in items:
                    await send("ADDED", obj)
            while not self._stopping.is_set():
                changed = self._changed
                events = self.store.events_since(kind, version)
                if events is None:
                    await send("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                         "status": "Failure", "reason": "Expired", "code": 410,
                                         "message": f"too old resource version: {version}"})
                    break
                for version, _, type_, obj, previous in events:
                    now, before = matches(obj), type_ == "MODIFIED" and matches(previous)
                    if type_ == "MODIFIED" and now != before:
                        type_ = "ADDED" if now else "DELETED"
                    if now or before:
                        await send(type_, obj)
                left = 0.25 if deadline is None else min(0.25, deadline - loop.time())
                if left <= 0 or request.transport is None or request.transport.is_closing():
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), left)
            await response.write_eof()
        except (ConnectionError, RuntimeError):  # the client went away
            pass
        return response

    async def _log(self, request, namespace, name, container) -> web.StreamResponse:
        query = request.query
        try:
            since = None
            if "sinceSeconds" in query:
                since = datetime.now(UTC) - timedelta(seconds=int(query["sinceSeconds"]))
            elif "sinceTime" in query:
                since = _parse_time(query["sinceTime"])
            tail = int(query["tailLines"]) if "tailLines" in query else None
            limit = int(query["limitBytes"]) if "limitBytes" in query else None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if _truthy(query.get("follow")):
            raise BadRequest("the fake kube API server does not support follow")
        timestamps = _truthy(query.get("timestamps"))
        text = "" if self.log_source is None else await asyncio.get_running_loop(
            ).run_in_executor(None, self.log_source, namespace, name, container)
        out = filter_log(text, since, tail, timestamps).encode()
        return web.Response(body=out[:limit] if limit is not None else out,
                            content_type="text/plain")

    async def _exec(self, request, namespace, name, container) -> web.StreamResponse:
        query = request.query
        command = query.getall("command", [])
        if not command:
            raise BadRequest("you must specify at least 1 command")
        ws = web.WebSocketResponse(protocols=WS_EXEC_PROTOCOLS, compress=False, timeout=2)
        await ws.prepare(request)
        self._websockets.add(ws)
        try:
            stdin = None
            if _truthy(query.get("stdin")):
                stdin, ended = bytearray(), False
                async for msg in ws:
                    data = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
                    if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY) or not data:
                        continue
                    if data[0] == 0:
                        stdin += data[1:]
                    elif data[:2] == b"\xff\x00" and ws.ws_protocol == WS_EXEC_PROTOCOLS[0]:
                        ended = True
                        break
                if not ended:  # the client went away before closing stdin
                    return ws
            out, err, code = await asyncio.get_running_loop().run_in_executor(
                None, self._run_exec, namespace, name, container, command,
                None if stdin is None else bytes(stdin))
            tty = _truthy(query.get("tty"))
            if _truthy(query.get("stdout")) and out:
                await ws.send_bytes(b"\x01" + out)
            if _truthy(query.get("stderr")) and err:
                await ws.send_bytes((b"\x01" if tty else b"\x02") + err)
            status = {"metadata": {}, "status": "Success"} if code == 0 else {
                "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                "message": f"command terminated with non-zero exit code: exit status {code}",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
            await ws.send_bytes(b"\x03" + json.dumps(status).encode())
            await ws.close()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._websockets.discard(ws)
        return ws

    def _run_exec(self, namespace, name, container, command, stdin) -> tuple[bytes, bytes, int]:
        if self.exec_handler is None:
            return b"", b"fakekube: no exec_handler is configured\n", 126
        try:
            return self.exec_handler(namespace, name, container, command, stdin)
        except Exception as exc:  # noqa: BLE001 - reported to the client like a failed command
            return b"", f"fakekube: exec_handler raised {exc!r}\n".encode(), 126

    async def _portforward(self, request, namespace, name) -> web.StreamResponse:
        try:
            ports = [int(p) for value in request.query.getall("ports", [])
                     for p in value.split(",") if p.strip()]
        except ValueError as exc:
            raise BadRequest(f"invalid port: {exc}") from None
        if not ports or not all(0 < p < 65536 for p in ports):
            raise BadRequest("at least one valid port is required")
        ws = web.WebSocketResponse(protocols=WS_PORTFORWARD_PROTOCOLS, compress=False, timeout=2)
        await ws.prepare(request)
        self._websockets.add(ws)
        sending = asyncio.Lock()

        async def send(channel: int, data: bytes) -> None:
            async with sending:
                await ws.send_bytes(bytes([channel]) + data)

        writers: dict[int, asyncio.StreamWriter] = {}
        pumps = []
        loop = asyncio.get_running_loop()
        try:
            for i, port in enumerate(ports):  # each channel first says which port it is for
                await send(2 * i, port.to_bytes(2, "little"))
                await send(2 * i + 1, port.to_bytes(2, "little"))
            for i, port in enumerate(ports):
                try:
                    if self.portforward_resolver is None:
                        raise RuntimeError("no portforward_resolver is configured")
                    host, target = await loop.run_in_executor(
                        None, self.portforward_resolver, namespace, name, port)
                    reader, writers[i] = await asyncio.open_connection(host, target)
                except Exception as exc:  # noqa: BLE001 - reported on the error channel
                    await send(2 * i + 1, f"error forwarding port {port} to pod {name}: "
                                          f"{exc}".encode())
                    continue
                pumps.append(asyncio.ensure_future(self._pump(reader, send, 2 * i)))
            if pumps:
                incoming = asyncio.ensure_future(self._ws_to_tcp(ws, writers))
                await asyncio.wait([incoming, asyncio.gather(*pumps, return_exceptions=True)],
                                   return_when=asyncio.FIRST_COMPLETED)
                incoming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await incoming
            for task in pumps:
                task.cancel()
            await ws.close()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            for writer in writers.values():
                writer.close()
            self._websockets.discard(ws)
        return ws

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, send, channel: int) -> None:
        """Pod (TCP) to client, until the far end closes."""
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                await send(channel, data)

    @staticmethod
    async def _ws_to_tcp(ws: web.WebSocketResponse, writers: dict) -> None:
        """Client to pod (TCP), until the client closes the websocket."""
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            data = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
            writer = writers.get(data[0] // 2) if data and data[0] % 2 == 0 else None
            if writer is not None and len(data) > 1:
                writer.write(data[1:])
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
