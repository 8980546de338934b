"""Forward-proxy test helpers: a proxy with `forwardProxy` on, and a raw CONNECT client.

The client speaks bytes exactly as written (`tests/rawhttp.py` reads the answers), then TLS
through the tunnel with Python's `ssl`, trusting only the proxy's CA: what a real
`HTTPS_PROXY` client does, visible at every step.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from proxy.connections.runtime import build_runtime
from proxy.dataplane.access_log import AccessLog
from proxy.dataplane.plane import DataPlane, create_app
from tests.plane import PlaneServer
from tests.rawhttp import TIMEOUT, Message, Truncated, read_body, read_head, read_response

CANARY = "fwd-canary-token-5f2d"


def forward_tree(echo_port: int, **forward: Any) -> dict[str, Any]:
    """A config with one bearer connection to the echo upstream, bound to its address and to
    `localhost` on the same port."""
    return {
        "forwardProxy": {"enabled": True, **forward},
        "connections": [
            {
                "name": "echo",
                "baseUrl": f"http://127.0.0.1:{echo_port}",
                "hosts": [f"127.0.0.1:{echo_port}", f"localhost:{echo_port}"],
                "credentials": [
                    {
                        "authSchemeConfig": {"type": "bearer"},
                        "credential": {"type": "string", "data": {"string": {"value": CANARY}}},
                    }
                ],
            }
        ],
    }


@asynccontextmanager
async def running_plane(
    tree: dict[str, Any], access_log: AccessLog | None = None
) -> AsyncIterator[tuple[DataPlane, int]]:
    """The data plane of `tree` on a port of its own (with `access_log`, its lines written there);
    yields the plane and the port."""
    plane = create_app(build_runtime(tree, {}), access_log=access_log)
    server = PlaneServer(plane, grace=1.0)
    await server.start_server()
    try:
        assert server.port is not None
        yield plane, server.port
    finally:
        await server.close()


def client_context(plane: DataPlane) -> ssl.SSLContext:
    """A client TLS context trusting the proxy's CA alone."""
    assert plane.forward is not None
    context = ssl.create_default_context(cadata=plane.forward.issuer.root.cert_pem)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def connect(
    port: int, target: str, *, version: str = "1.1", headers: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Message]:
    """Send `CONNECT target` to the proxy on `port`; the streams and the proxy's answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    host = f"Host: {target}\r\n" if version == "1.1" else ""
    writer.write(f"CONNECT {target} HTTP/{version}\r\n{host}{headers}\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(read_connect_answer(reader), TIMEOUT)
    return reader, writer, answer


async def read_connect_answer(reader: asyncio.StreamReader) -> Message:
    """A CONNECT's answer: a 2xx is a head alone (RFC 9110 §9.3.6), anything else has a body."""
    parsed = await read_head(reader)
    if parsed is None:
        raise Truncated("connection closed before a response")
    answer = Message(*parsed)
    if not 200 <= answer.status < 300:
        answer.body, answer.complete, _ = await read_body(reader, answer.headers, until_close=False)
    return answer


async def through_tls(
    writer: asyncio.StreamWriter, context: ssl.SSLContext, server_hostname: str
) -> None:
    await asyncio.wait_for(writer.start_tls(context, server_hostname=server_hostname), TIMEOUT)


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a client connection, TLS inside or not, however the proxy ended its side."""
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


@asynccontextmanager
async def intercepted(
    plane: DataPlane,
    port: int,
    target: str,
    *,
    headers: str = "",
    server_hostname: str = "localhost",
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """`CONNECT target` to the proxy on `port`, which must answer 200, then TLS through the
    tunnel trusting `plane`'s CA alone: the streams of the TLS session, closed on exit."""
    reader, writer, answer = await connect(port, target, headers=headers)
    try:
        assert answer.status == 200
        await through_tls(writer, client_context(plane), server_hostname)
        yield reader, writer
    finally:
        await close(writer)


async def connect_answer(port: int, target: str, *, headers: str = "") -> Message:
    """`CONNECT target` to the proxy on `port`: its answer (a refusal, as a rule); the
    connection closed."""
    _, writer, answer = await connect(port, target, headers=headers)
    await close(writer)
    return answer


async def request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: str, body: bytes = b""
) -> Message:
    writer.write(head.encode() + body)
    await writer.drain()
    head_request = head.startswith("HEAD ")
    return await asyncio.wait_for(read_response(reader, head_request=head_request), TIMEOUT)
