"""How writes change objects: RFC 7386 JSON merge patch, RFC 6902 JSON patch, the PATCH
content types the fake Kubernetes API server accepts, and the `/status` subresource rule."""

from __future__ import annotations

import copy
from collections.abc import Callable

from .errors import ApiError, BadRequest, Invalid, UnsupportedMediaType
from .kinds import STATUS_SUBRESOURCE, Kind


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


def patcher(content_type: str, body) -> Callable[[dict], dict]:
    if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        if not isinstance(body, dict):
            raise BadRequest("a merge patch must be a JSON object")
        return lambda cur: merge_patch(cur, body)
    if content_type == "application/json-patch+json":
        if not isinstance(body, list):
            raise BadRequest("a JSON patch must be a JSON array of operations")
        return lambda cur: json_patch(cur, body)
    raise UnsupportedMediaType(
        f"the fake kube API server does not support PATCH with content type {content_type!r}"
    )


def status_rule(kind: Kind, sub: str | None, change: Callable[[dict], dict]):
    """/status writes change only status; main-resource writes never change status of
    kinds with a status subresource."""

    def apply(current: dict) -> dict:
        new = change(copy.deepcopy(current))
        if not isinstance(new, dict):
            raise BadRequest("the result of the write is not an object")
        if sub == "status":
            keep, take = current, new
            keep["metadata"]["resourceVersion"] = (new.get("metadata") or {}).get(
                "resourceVersion", current["metadata"]["resourceVersion"]
            )
        elif kind in STATUS_SUBRESOURCE:
            keep, take = new, current
        else:
            return new
        keep.pop("status", None)
        if "status" in take:
            keep["status"] = take["status"]
        return keep

    return apply
