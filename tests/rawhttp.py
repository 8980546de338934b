"""Raw-socket HTTP/1.1 for tests: a client that sends bytes exactly as written, and an upstream
that records the request line and headers exactly as they arrived (RFC 9112 framing).

aiohttp's client and yarl normalise URLs (they re-quote `%2F`, collapse dot segments, sort out
`+`), and an aiohttp server hands out a parsed request; both would hide the very bytes the
forwarding tests are about. Everything here is plain `asyncio` streams, bounded by timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

TIMEOUT = 5.0
MAX_HEAD = 64 * 1024


class Truncated(Exception):
    """The peer closed the connection before the message it announced was complete."""


@dataclass
class Message:
    """One HTTP message as seen on the wire: start line, header pairs in order, body."""

    start_line: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    complete: bool = True  # False when the connection ended before the framing said it would
    chunked: bool = False

    def get_all(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for k, v in self.headers if k.lower() == lower]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    @property
    def status(self) -> int:
        return int(self.start_line.split(" ", 2)[1])

    @property
    def method(self) -> str:
        return self.start_line.split(" ", 1)[0]

    @property
    def target(self) -> str:
        """The request-target of a request line, byte for byte (latin-1 text)."""
        return self.start_line.split(" ")[1]


async def read_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]] | None:
    """Read a start line and headers; None on a clean end of stream before any byte."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise Truncated("connection closed inside the message head") from None
    if len(head) > MAX_HEAD:
        raise ValueError("message head too large")
    lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    return lines[0], headers


async def read_body(
    reader: asyncio.StreamReader, headers: list[tuple[str, str]], *, until_close: bool
) -> tuple[bytes, bool, bool]:
    """Read a body framed by `headers`; return `(body, complete, chunked)`."""
    message = Message("", headers)
    encoding = (message.get("transfer-encoding") or "").lower()
    if "chunked" in encoding:
        parts: list[bytes] = []
        try:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # Trailer section (none expected) ends with an empty line.
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass
                    return b"".join(parts), True, True
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        except asyncio.IncompleteReadError as exc:
            parts.append(exc.partial)
            return b"".join(parts), False, True
    length = message.get("content-length")
    if length is not None:
        try:
            return await reader.readexactly(int(length)), True, False
        except asyncio.IncompleteReadError as exc:
            return exc.partial, False, False
    if until_close:
        return await reader.read(), True, False
    return b"", True, False


async def read_response(reader: asyncio.StreamReader, *, head_request: bool = False) -> Message:
    """Read one response; HEAD, 1xx, 204 and 304 responses have no body (RFC 9112 §6.3)."""
    parsed = await read_head(reader)
    if parsed is None:
        raise Truncated("connection closed before a response")
    start, headers = parsed
    response = Message(start, headers)
    if head_request or response.status in (204, 304) or response.status < 200:
        return response
    response.body, response.complete, response.chunked = await read_body(
        reader, headers, until_close=True
    )
    return response


async def round_trip(
    port: int, raw: bytes, *, host: str = "127.0.0.1", timeout: float = TIMEOUT
) -> Message:
    """Send `raw` (a whole request, bytes exactly as given) on a new connection; read the reply."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(raw)
            await writer.drain()
            return await read_response(reader, head_request=raw.startswith(b"HEAD "))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def port_of(server: object) -> int:
    """The bound port of an aiohttp `TestClient`/`TestServer` (typed `int | None` there)."""
    port = getattr(server, "port", None)
    assert isinstance(port, int)
    return port


def get(target: str, *, host: str = "proxy.test", headers: str = "") -> bytes:
    """A raw GET with `target` written into the request line untouched."""
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n".encode(
        "latin-1"
    )


@dataclass
class Received:
    """One request as the raw upstream saw it, and on which TCP connection (0, 1, ...)."""

    connection: int
    request: Message


Responder = Callable[[Message, asyncio.StreamWriter], Awaitable[None]]
U = TypeVar("U", bound="RawUpstream")


async def ok(request: Message, writer: asyncio.StreamWriter) -> None:
    """Default responder: 200 with a small body (none for HEAD, RFC 9110 §9.3.2)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\n"
    writer.write(head if request.method == "HEAD" else head + b"ok")
    await writer.drain()


def scripted(*responses: bytes | Sequence[bytes], close: bool = False) -> Responder:
    """A responder answering request n with `responses[n]` (a list: parts sent 50 ms apart);
    with `close`, it closes the connection after each answer."""
    count = 0

    async def respond(request: Message, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        script = responses[min(count, len(responses) - 1)]
        count += 1
        for i, part in enumerate([script] if isinstance(script, bytes) else script):
            if i:
                await asyncio.sleep(0.05)
            writer.write(part)
            await writer.drain()
        if close:
            writer.close()

    return respond


@dataclass
class RawUpstream:
    """A local HTTP/1.1 server that records every request byte for byte.

    `responder` writes the whole response for each request; it may close the transport to
    simulate a reset. Keep-alive is honoured, so `connections` counts TCP connections.
    """

    responder: Responder = ok
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    server: asyncio.Server | None = None
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def targets(self) -> list[str]:
        return [r.request.target for r in self.received]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        self.writers.add(writer)
        try:
            while not writer.is_closing():
                parsed = await read_head(reader)
                if parsed is None:
                    return
                start, headers = parsed
                body, complete, chunked = await read_body(reader, headers, until_close=False)
                request = Message(start, headers, body, complete, chunked)
                self.received.append(Received(number, request))
                await self.responder(request, writer)
        except (Truncated, ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.writers.discard(writer)
            writer.close()


@dataclass
class SilentUpstream:
    """An upstream that answers its first `warm` requests `200 ok` on one connection, then reads
    the next request head and never answers: it waits (10 s at most) for the proxy to let the
    connection go. `asked` is set when that head has come, `released` when the connection ends."""

    warm: int = 0
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(self.warm):
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await read_head(reader)
        self.asked.set()
        try:
            await asyncio.wait_for(reader.read(), 10)  # never answers; waits for the EOF
        finally:
            self.released.set()
            writer.close()


@contextlib.asynccontextmanager
async def silent_upstream(warm: int = 0) -> AsyncIterator[tuple[SilentUpstream, str]]:
    """Serve a `SilentUpstream` on 127.0.0.1 for the block: it and its base URL."""
    upstream = SilentUpstream(warm)
    server = await asyncio.start_server(upstream._serve, "127.0.0.1", 0)
    async with server:
        yield upstream, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@contextlib.asynccontextmanager
async def raw_upstream(responder: Responder = ok) -> AsyncIterator[RawUpstream]:
    """Serve a `RawUpstream` on 127.0.0.1 for the duration of the block."""
    async with serving(RawUpstream(responder)) as upstream:
        yield upstream


@contextlib.asynccontextmanager
async def serving(upstream: U) -> AsyncIterator[U]:
    """Serve `upstream` (a `RawUpstream` or a subclass) on 127.0.0.1 for the block."""
    upstream.server = await asyncio.start_server(upstream._serve, "127.0.0.1", 0)
    try:
        yield upstream
    finally:
        upstream.server.close()
        # Handlers may still sit in a keep-alive read; closing their transports ends them
        # (`Server.close_clients()` is Python 3.13+).
        for writer in list(upstream.writers):
            writer.close()
        await asyncio.wait_for(upstream.server.wait_closed(), TIMEOUT)


@contextlib.asynccontextmanager
async def opened(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw client connection to 127.0.0.1:`port`, closed on exit."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
