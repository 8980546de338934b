"""A small, fast HTTP/1.1 upstream for the bench when nginx is not installed.

asyncio protocol + httptools, keep-alive, no framework: `GET /tiny` (13 bytes), `GET /64k`
(64 KiB), and any `POST` answered `ok` once its body has been read (and dropped).
Run: `python bench/fast_upstream.py PORT` (serves 127.0.0.1:PORT until killed; uvloop if there).
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import httptools

TINY = b"hello, world\n"
BIG = b"x" * 65536


def response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


ANSWERS = {b"/tiny": response(TINY), b"/64k": response(BIG)}
POSTED = response(b"ok\n")
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not a subclass of asyncio.Transport, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.parser.get_method() == b"POST":
            self.transport.write(POSTED)
        else:
            self.transport.write(ANSWERS.get(self.url.split(b"?")[0], NOT_FOUND))
        self.url = b""
        if not self.parser.should_keep_alive():
            self.transport.close()


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(int(sys.argv[1])))
    else:
        uvloop.run(main(int(sys.argv[1])))
