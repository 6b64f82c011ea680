"""Watches as the fake Kubernetes API server serves them: a chunked stream of ADDED /
MODIFIED / DELETED events from the `Store`'s change history, resumed from a recent
resourceVersion (410 Expired beyond it), ended by `timeoutSeconds` or the server stopping."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from aiohttp import web

from .errors import BadRequest
from .params import field_matcher, label_matcher
from .store import Store


async def serve_watch(
    request: web.Request,
    store: Store,
    kind,
    namespace,
    labels,
    fields,
    *,
    stopping: asyncio.Event,
    changed: Callable[[], asyncio.Event],
) -> web.StreamResponse:
    """`changed()` is the event set at the next change of the store (a new one each time);
    the stream ends when `stopping` is set."""
    query = request.query
    matches_labels, matches_fields = label_matcher(labels), field_matcher(kind, fields)
    try:
        timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
        since = query.get("resourceVersion") or "0"
        version = int(since)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None

    def matches(obj):
        return (
            obj is not None
            and (namespace is None or obj["metadata"].get("namespace") == namespace)
            and matches_labels(obj)
            and matches_fields(obj)
        )

    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)

    async def send(type_, obj):
        await response.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

    try:
        if since == "0":
            version, items = store.snapshot(kind, namespace, labels, fields)
            for obj in items:
                await send("ADDED", obj)
        while not stopping.is_set():
            change = changed()
            events = store.events_since(kind, version)
            if events is None:
                await send(
                    "ERROR",
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "reason": "Expired",
                        "code": 410,
                        "message": f"too old resource version: {version}",
                    },
                )
                break
            if events:  # the next round resumes after the newest event seen
                version = events[-1][0]
            for _, _, type_, obj, previous in events:
                now, before = matches(obj), type_ == "MODIFIED" and matches(previous)
                if type_ == "MODIFIED" and now != before:
                    type_ = "ADDED" if now else "DELETED"
                if now or before:
                    await send(type_, obj)
            left = 0.25 if deadline is None else min(0.25, deadline - loop.time())
            if left <= 0 or request.transport is None or request.transport.is_closing():
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(change.wait(), left)
        await response.write_eof()
    except (ConnectionError, RuntimeError):  # the client went away
        pass
    return response
