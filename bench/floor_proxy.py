"""The floor: the least a Python reverse proxy on uvloop and llhttp does per request.

`run.py` runs it beside the proxy (the **floor** row) to show, in the same rounds, how much of
the proxy's time is the runtime every Python proxy pays — the event loop, llhttp, two sockets
each way — and how much is the proxy's own work (routing, policy, the lean head, the
response-head filter, the access log, metrics). It does nothing else: each client connection
gets one upstream connection of its own (kept alive), each GET (no body) goes up with
`Authorization: Bearer ...` added after its head's bytes, unparsed but for llhttp's callbacks,
and the upstream's response bytes go back as they came, once complete. No routing, no header
filtering, no logging, no error answers: not a proxy anyone should run.

Run: `python bench/floor_proxy.py PORT UPSTREAM_PORT TOKEN` (127.0.0.1; uvloop if there).
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import httptools


class Upstream(asyncio.Protocol):
    """The upstream connection of one client connection: collects one response's bytes."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.client.answer(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class Client(asyncio.Protocol):
    """One client connection: its requests go to `upstream_port` one at a time."""

    def __init__(self, upstream_port: int, token: bytes) -> None:
        self.upstream_port = upstream_port
        self.auth = b"Authorization: Bearer " + token + b"\r\n\r\n"
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.upstream: Upstream | None = None
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, self.upstream = await loop.create_connection(
            lambda: Upstream(self), "127.0.0.1", self.upstream_port
        )
        if self.head:
            self._send()

    def data_received(self, data: bytes) -> None:
        self.head += data
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.upstream is not None:
            self._send()

    def _send(self) -> None:
        assert self.upstream is not None and self.upstream.transport is not None
        head, self.head = self.head, b""
        # The head's blank line becomes the added field and a new blank line.
        self.upstream.transport.write(head[:-2] + self.auth)

    def answer(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()


async def main(port: int, upstream_port: int, token: bytes) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(upstream_port, token), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    arguments = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode())
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(*arguments))
    else:
        uvloop.run(main(*arguments))
