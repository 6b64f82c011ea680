"""pods/exec and pods/portforward as the fake Kubernetes API server serves them: the websocket
channel protocols (v5/v4 `channel.k8s.io`), the command run by the server's `exec_handler`,
the forwarded TCP relayed to where its `portforward_resolver` says."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from aiohttp import WSMsgType, web

from .errors import BadRequest
from .params import truthy

WS_EXEC_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
)
WS_PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io", "channel.k8s.io", "portforward.k8s.io")
# (namespace, pod, container, command, stdin) -> (stdout, stderr, exit code)
ExecHandler = Callable[[str, str, str | None, list[str], bytes | None], tuple[bytes, bytes, int]]
# (namespace, pod, port) -> (host, port) of a real TCP endpoint to relay to
PortforwardResolver = Callable[[str, str, int], tuple[str, int]]


async def serve_exec(
    request: web.Request,
    exec_handler: ExecHandler | None,
    websockets: set,
    namespace,
    name,
    container,
) -> web.StreamResponse:
    """The command runs (in an executor) once stdin, if any, is complete."""
    query = request.query
    command = query.getall("command", [])
    if not command:
        raise BadRequest("you must specify at least 1 command")
    ws = web.WebSocketResponse(protocols=WS_EXEC_PROTOCOLS, compress=False, timeout=2)
    await ws.prepare(request)
    websockets.add(ws)
    try:
        stdin = None
        if truthy(query.get("stdin")):
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
            None,
            run_exec,
            exec_handler,
            namespace,
            name,
            container,
            command,
            None if stdin is None else bytes(stdin),
        )
        tty = truthy(query.get("tty"))
        if truthy(query.get("stdout")) and out:
            await ws.send_bytes(b"\x01" + out)
        if truthy(query.get("stderr")) and err:
            await ws.send_bytes((b"\x01" if tty else b"\x02") + err)
        status = (
            {"metadata": {}, "status": "Success"}
            if code == 0
            else {
                "metadata": {},
                "status": "Failure",
                "reason": "NonZeroExitCode",
                "message": f"command terminated with non-zero exit code: exit status {code}",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        )
        await ws.send_bytes(b"\x03" + json.dumps(status).encode())
        await ws.close()
    except (ConnectionError, RuntimeError):
        pass
    finally:
        websockets.discard(ws)
    return ws


def run_exec(
    exec_handler: ExecHandler | None, namespace, name, container, command, stdin
) -> tuple[bytes, bytes, int]:
    if exec_handler is None:
        return b"", b"fakekube: no exec_handler is configured\n", 126
    try:
        return exec_handler(namespace, name, container, command, stdin)
    except Exception as exc:
        return b"", f"fakekube: exec_handler raised {exc!r}\n".encode(), 126


async def serve_portforward(
    request: web.Request, resolver: PortforwardResolver | None, websockets: set, namespace, name
) -> web.StreamResponse:
    """Each requested port gets a data and an error channel; the relays run until either
    side closes."""
    try:
        ports = [
            int(p)
            for value in request.query.getall("ports", [])
            for p in value.split(",")
            if p.strip()
        ]
    except ValueError as exc:
        raise BadRequest(f"invalid port: {exc}") from None
    if not ports or not all(0 < p < 65536 for p in ports):
        raise BadRequest("at least one valid port is required")
    ws = web.WebSocketResponse(protocols=WS_PORTFORWARD_PROTOCOLS, compress=False, timeout=2)
    await ws.prepare(request)
    websockets.add(ws)
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
                if resolver is None:
                    raise RuntimeError("no portforward_resolver is configured")
                host, target = await loop.run_in_executor(None, resolver, namespace, name, port)
                reader, writers[i] = await asyncio.open_connection(host, target)
            except Exception as exc:
                await send(2 * i + 1, f"error forwarding port {port} to pod {name}: {exc}".encode())
                continue
            pumps.append(asyncio.ensure_future(_pump(reader, send, 2 * i)))
        if pumps:
            incoming = asyncio.ensure_future(_ws_to_tcp(ws, writers))
            await asyncio.wait(
                [incoming, asyncio.gather(*pumps, return_exceptions=True)],
                return_when=asyncio.FIRST_COMPLETED,
            )
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
        websockets.discard(ws)
    return ws


async def _pump(reader: asyncio.StreamReader, send, channel: int) -> None:
    """Pod (TCP) to client, until the far end closes."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            await send(channel, data)


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
