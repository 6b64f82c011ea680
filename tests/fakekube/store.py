"""The fake Kubernetes API server's objects: a thread-safe in-memory `Store` with
resourceVersions, a change history for watches, optimistic concurrency, finalizers and garbage
collection by `ownerReferences`. Tests and the fake CNPG operator also use it directly as a
back door (those calls are not recorded)."""

from __future__ import annotations

import base64
import contextlib
import copy
import random
import string
import threading
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from .errors import AlreadyExists, BadRequest, Invalid, NotFound, conflict, not_found
from .kinds import (
    NAMESPACES,
    PODS,
    PVCS,
    SECRETS,
    Kind,
    api_version,
    is_namespaced,
    kind_name,
    resource_name,
)
from .params import field_matcher, label_matcher
from .patches import merge_patch


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict]:
        return self.snapshot(kind, namespace, label_selector, field_selector)[1]

    def snapshot(
        self,
        kind: Kind,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[int, list[dict]]:
        """(version, matching objects sorted by namespace and name), read atomically."""
        labels, fields = label_matcher(label_selector), field_matcher(kind, field_selector)
        with self._lock:
            items = [
                obj
                for (ns, _), obj in sorted(self._objects.get(kind, {}).items())
                if (namespace is None or ns == namespace) and labels(obj) and fields(obj)
            ]
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

    def mutate(
        self, kind: Kind, namespace: str | None, name: str, fn: Callable[[dict], dict]
    ) -> dict:
        """Atomic read-modify-write: `fn` gets a copy of the object and returns the new one.
        A `metadata.resourceVersion` in the result that differs from the stored one raises
        Conflict; identity fields (uid, creationTimestamp, ...) are kept."""

        def op():
            current = self._objects.get(kind, {}).get((namespace or "", name))
            if current is None:
                raise not_found(kind, name)
            return self._update(kind, current, fn(copy.deepcopy(current)))

        return self._write(op)

    def delete(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        propagation_policy: str | None = None,
        preconditions: dict | None = None,
    ) -> dict | None:
        """Delete (or, with finalizers, mark with deletionTimestamp); None when absent.
        Dependents (ownerReferences) are deleted too unless the policy is "Orphan"."""

        def op():
            current = self._objects.get(kind, {}).get((namespace or "", name))
            if current is None:
                return None
            meta = current["metadata"]
            for field in ("uid", "resourceVersion"):
                if (preconditions or {}).get(field) not in (None, meta.get(field)):
                    raise conflict(kind, name)
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
                    random.choices(string.ascii_lowercase + string.digits, k=5)
                )
        if (ns, meta["name"]) in objects:
            raise AlreadyExists(
                f'{resource_name(kind)} "{meta["name"]}" already exists', kind, meta["name"]
            )
        obj.setdefault("apiVersion", api_version(kind))
        obj.setdefault("kind", kind_name(kind))
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            generation=1,
            resourceVersion=self._next_version(),
        )
        if kind in (PODS, PVCS, NAMESPACES):
            obj.setdefault("status", {}).setdefault(
                "phase", "Active" if kind == NAMESPACES else "Pending"
            )
        self._fold_string_data(kind, obj)
        objects[(ns, meta["name"])] = obj
        self._commit(kind, "ADDED", obj, None)
        return obj

    def _update(self, kind: Kind, current: dict, new: dict) -> dict:
        old_meta, meta = current["metadata"], new.setdefault("metadata", {})
        name = old_meta["name"]
        if meta.get("name", name) != name or (meta.get("namespace") or "") not in (
            "",
            old_meta.get("namespace", ""),
        ):
            raise BadRequest(
                f"the name or namespace of {resource_name(kind)} {name!r} cannot change", kind, name
            )
        if meta.get("resourceVersion") not in (None, "", old_meta["resourceVersion"]):
            raise conflict(kind, name)
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
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
        new["metadata"].update(
            deletionTimestamp=_now(),
            deletionGracePeriodSeconds=0,
            resourceVersion=self._next_version(),
        )
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
                        ref for ref in refs if ref.get("uid") != meta["uid"]
                    ]
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
