"""The request parameters the fake Kubernetes API server parses as the real one does: label
and field selectors (also used by `Store` queries), boolean flags and RFC 3339 times."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from .errors import BadRequest
from .kinds import EVENTS, JOBS, NAMESPACES, PODS, SECRETS, Kind

# field selectors a real apiserver accepts (besides metadata.name and metadata.namespace)
FIELD_LABELS = {
    PODS: {"status.phase", "spec.nodeName", "status.podIP", "spec.serviceAccountName"},
    EVENTS: {
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.namespace",
        "reason",
        "type",
    },
    SECRETS: {"type"},
    JOBS: {"status.successful"},
    NAMESPACES: {"status.phase"},
}
_LABEL_TERM = re.compile(
    r"^(!?)([A-Za-z0-9_./-]+)(?:\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)"
    r"|\s+(in|notin)\s*\(([^)]*)\))?$"
)
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
            checks.append(lambda ls, k=key, a=allowed, n=setop == "notin": (ls.get(k) in a) != n)
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
        if path not in {"metadata.name", "metadata.namespace"} | FIELD_LABELS.get(kind, set()):
            raise BadRequest(f"field label not supported: {path}")
        checks.append((path.split("."), value, op == "!="))

    def lookup(obj, parts):
        for part in parts:
            obj = obj.get(part) if isinstance(obj, dict) else None
        return "" if obj is None else str(obj).lower() if isinstance(obj, bool) else str(obj)

    return lambda obj: all((lookup(obj, p) == v) != n for p, v, n in checks)


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "t", "true")


def parse_time(text: str) -> datetime:
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$", text)
    if not m:
        raise BadRequest(f"invalid RFC 3339 time {text!r}")
    zone = "+00:00" if m[3] == "Z" else m[3]
    return datetime.fromisoformat(m[1] + (m[2] or "")[:7] + zone)
