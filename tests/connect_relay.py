"""A bare `CONNECT` relay for tests: answers `CONNECT host:port` with 200 and copies bytes to the
address its `routes` give that `host:port` (TLS stays end to end), recording every request head.

It stands where a client's HTTPS proxy stands, so a test can see what a tool sends to its proxy
(the `CONNECT` line, `Proxy-Authorization`) and that the tool trusts the certificate the far end
shows, independently of the proxy's own interception."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field


@dataclass
class Relay:
    routes: Mapping[str, tuple[str, int]]
    # Answer 407 with `Proxy-Authenticate: Basic` to a CONNECT without `Proxy-Authorization`, as
    # the proxy does when clients are configured (git's curl sends it only when asked).
    ask_authorization: bool = False
    heads: list[bytes] = field(default_factory=list)
    port: int = 0

    def authorizations(self) -> list[str]:
        """The `Proxy-Authorization` value of each request head (or "" without one)."""
        found: list[str] = []
        for head in self.heads:
            values = [
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")[1:]
                if line.lower().startswith(b"proxy-authorization:")
            ]
            found.append(values[0] if values else "")
        return found

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers = [writer]
        try:
            while True:  # after a 407 the client asks again on the same connection
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                if self.ask_authorization and b"\r\nproxy-authorization:" not in head.lower():
                    writer.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="relay"\r\nContent-Length: 0\r\n\r\n'
                    )
                    continue
                break
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT" or target not in self.routes:
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            up_reader, up_writer = await asyncio.open_connection(*self.routes[target])
            writers.append(up_writer)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for each in writers:
                each.close()
                with contextlib.suppress(OSError):
                    await each.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


@contextlib.asynccontextmanager
async def connect_relay(
    routes: Mapping[str, tuple[str, int]], *, ask_authorization: bool = False
) -> AsyncIterator[Relay]:
    """A relay on 127.0.0.1 (a port from 0) sending `CONNECT` targets per `routes`."""
    relay = Relay(routes, ask_authorization)
    handlers: set[asyncio.Task[None]] = set()

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(relay.handle(reader, writer))
        handlers.add(task)
        task.add_done_callback(handlers.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    try:
        yield relay
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()  # its `finally` closes both of its connections
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
