"""Pod logs as the fake Kubernetes API server serves them: the text comes from the server's
`log_source`; `sinceSeconds`, `sinceTime`, `tailLines`, `timestamps` and `limitBytes` are
applied as the kubelet would (no `follow`)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from .errors import BadRequest
from .params import parse_time, truthy

# (namespace, pod, container) -> the pod's log text; see `filter_log`
LogSource = Callable[[str, str, str | None], str]
_TIMESTAMPED = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2}) ")


def filter_log(text: str, since: datetime | None, tail: int | None, timestamps: bool) -> str:
    """Lines that start with an RFC 3339 timestamp and a space carry the kubelet's timestamp:
    filtered by `since`, and the timestamp is stripped unless `timestamps`. Other lines are
    always kept as they are."""
    kept = []
    for line in text.splitlines(keepends=True):
        m = _TIMESTAMPED.match(line)
        if m and since and parse_time(m[1] + (m[2] or "") + m[3]) < since:
            continue
        kept.append(line if timestamps or not m else line[m.end() :])
    if tail is not None:
        kept = kept[len(kept) - tail :] if 0 <= tail < len(kept) else kept
    return "".join(kept)


async def serve_log(
    request: web.Request, log_source: LogSource | None, namespace, name, container
) -> web.StreamResponse:
    query = request.query
    try:
        since = None
        if "sinceSeconds" in query:
            since = datetime.now(UTC) - timedelta(seconds=int(query["sinceSeconds"]))
        elif "sinceTime" in query:
            since = parse_time(query["sinceTime"])
        tail = int(query["tailLines"]) if "tailLines" in query else None
        limit = int(query["limitBytes"]) if "limitBytes" in query else None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if truthy(query.get("follow")):
        raise BadRequest("the fake kube API server does not support follow")
    timestamps = truthy(query.get("timestamps"))
    text = (
        ""
        if log_source is None
        else await asyncio.get_running_loop().run_in_executor(
            None, log_source, namespace, name, container
        )
    )
    out = filter_log(text, since, tail, timestamps).encode()
    return web.Response(body=out[:limit] if limit is not None else out, content_type="text/plain")
