"""A real WebSocket upstream for tests (the `websockets` package's server) that records every
handshake it receives, and small helpers around the proxy's WebSocket metrics."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import REGISTRY
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

Handler = Callable[[ServerConnection], Awaitable[None]]
Gate = Callable[[ServerConnection, Request], Response | None]


async def echo(ws: ServerConnection) -> None:
    """Send every message back as it came (text stays text, bytes stay bytes) until the
    connection ends, however it ends."""
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            await ws.send(message)


@dataclass
class WsUpstream:
    """The server and what it saw: each handshake's headers, each connection's close code."""

    server: Server
    tls: bool
    handshakes: list[Headers] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def ws_upstream(
    handler: Handler = echo,
    *,
    gate: Gate | None = None,
    tls: ssl.SSLContext | None = None,
    max_size: int | None = 2**20,
) -> AsyncIterator[WsUpstream]:
    """Serve `handler` on 127.0.0.1 (TLS with `tls`); `gate` may answer a handshake itself (a
    403, a 401) instead of accepting it."""
    holder: list[WsUpstream] = []

    def record(connection: ServerConnection, request: Request) -> Response | None:
        holder[0].handshakes.append(request.headers)
        holder[0].paths.append(request.path)
        return gate(connection, request) if gate is not None else None

    async with serve(
        handler,
        "127.0.0.1",
        0,
        process_request=record,
        ssl=tls,
        ping_interval=None,
        max_size=max_size,
    ) as server:
        upstream = WsUpstream(server, tls is not None)
        holder.append(upstream)
        yield upstream


def sample(name: str, **labels: str) -> float:
    """The current value of one series of the proxy's metrics (0 when it has none yet)."""
    value = REGISTRY.get_sample_value(name, labels)
    return value if value is not None else 0.0
