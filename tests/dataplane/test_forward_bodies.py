"""Bodies stream through untouched in both directions (docs/request-path.md Bodies and
Responses)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests import rawhttp
from tests.builders import bearer, connection
from tests.plane import MakeProxy

MiB = 1024 * 1024


async def start(make_proxy: MakeProxy, base: str) -> Any:
    return await make_proxy({"connections": [connection("svc", base, bearer("canary-body"))]})


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


async def test_chunked_upload_without_content_length(make_proxy: MakeProxy) -> None:
    parts = (b"hello ", b"chunked ", os.urandom(70_000), b"world")
    async with rawhttp.raw_upstream() as upstream:
        port = rawhttp.port_of(await start(make_proxy, upstream.base))
        response = await rawhttp.round_trip(
            port,
            b"POST /svc/upload HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
            + chunked(*parts),
        )
        assert response.status == 200
        [seen] = upstream.received
        assert seen.request.body == b"".join(parts)
        assert seen.request.get("Content-Type") == "application/octet-stream"


async def test_large_streamed_upload_and_download(
    make_proxy: MakeProxy, echo_server: Any, aiohttp_server: Any
) -> None:
    """16 MiB up through an async generator (no Content-Length), hashed by the echo upstream."""
    digest = hashlib.sha256()
    total = 16 * MiB

    async def generate() -> AsyncIterator[bytes]:
        block = os.urandom(MiB)
        for i in range(total // MiB):
            piece = block[i:] + block[:i]
            digest.update(piece)
            yield piece

    proxy = await start(make_proxy, str(echo_server.make_url("")))
    response = await proxy.post("/svc/up", data=generate())
    assert response.status == 200
    seen = await response.json()
    assert seen["bodyLength"] == total
    assert seen["bodySha256"] == digest.hexdigest()


async def test_large_download_streams_identical_bytes(make_proxy: MakeProxy) -> None:
    block = os.urandom(MiB)
    count = 16

    async def respond(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (count * MiB))
        for _ in range(count):
            writer.write(block)
            await writer.drain()

    async with rawhttp.raw_upstream(respond) as upstream:
        port = rawhttp.port_of(await start(make_proxy, upstream.base))
        response = await rawhttp.round_trip(port, rawhttp.get("/svc/big"), timeout=20)
        assert response.complete
        assert response.get("Content-Length") == str(count * MiB)
        assert hashlib.sha256(response.body).digest() == hashlib.sha256(block * count).digest()


async def test_content_encoding_passes_untouched_both_ways(make_proxy: MakeProxy) -> None:
    upload = gzip.compress(b'{"q": "request"}' * 100)
    download = gzip.compress(b"response text " * 500)

    async def respond(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(download), download)
        )
        await writer.drain()

    async with rawhttp.raw_upstream(respond) as upstream:
        port = rawhttp.port_of(await start(make_proxy, upstream.base))
        response = await rawhttp.round_trip(
            port,
            b"POST /svc/x HTTP/1.1\r\nHost: p\r\nContent-Encoding: gzip\r\n"
            b"Accept-Encoding: gzip\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(upload), upload),
        )
        [seen] = upstream.received
        assert seen.request.body == upload
        assert seen.request.get_all("Content-Encoding") == ["gzip"]
        assert seen.request.get_all("Accept-Encoding") == ["gzip"]
        assert response.body == download  # still compressed: never decoded, never re-encoded
        assert response.get_all("Content-Encoding") == ["gzip"]
        assert response.get("Content-Length") == str(len(download))


async def converse(port: int, requests: list[bytes]) -> list[rawhttp.Message]:
    """Several requests on one client connection; a framing error would garble the next one."""
    async with asyncio.timeout(rawhttp.TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            replies = []
            for raw in requests:
                writer.write(raw)
                await writer.drain()
                replies.append(
                    await rawhttp.read_response(reader, head_request=raw.startswith(b"HEAD"))
                )
            return replies
        finally:
            writer.close()


@pytest.mark.parametrize(
    ("method", "head"),
    [
        ("HEAD", b'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: "v1"\r\n\r\n'),
        ("GET", b"HTTP/1.1 204 No Content\r\nX-Request-Id: r1\r\n\r\n"),
        ("GET", b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n'),
    ],
)
async def test_bodiless_responses_keep_framing(
    make_proxy: MakeProxy, method: str, head: bytes
) -> None:
    async def respond(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        if request.target.endswith("/next"):
            await rawhttp.ok(request, writer)
            return
        writer.write(head)
        await writer.drain()

    async with rawhttp.raw_upstream(respond) as upstream:
        port = rawhttp.port_of(await start(make_proxy, upstream.base))
        first, second = await converse(
            port,
            [
                f"{method} /svc/thing HTTP/1.1\r\nHost: p\r\n\r\n".encode(),
                b"GET /svc/next HTTP/1.1\r\nHost: p\r\n\r\n",
            ],
        )
        expected = rawhttp.Message(head.decode().split("\r\n")[0], [])
        assert first.status == expected.status
        assert first.body == b""
        if method == "HEAD":
            assert first.get("Content-Length") == "1234"
        if first.status != 204:
            assert first.get("ETag") == '"v1"'
        assert (second.status, second.body) == (200, b"ok")


async def test_server_sent_events_arrive_one_by_one(make_proxy: MakeProxy) -> None:
    """The upstream sends event 2 only once the client holds event 1: buffering would deadlock."""
    client_has_first = asyncio.Event()

    async def respond(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        event1 = b"id: 1\ndata: first\n\n"
        writer.write(b"%x\r\n%s\r\n" % (len(event1), event1))
        await writer.drain()
        await asyncio.wait_for(client_has_first.wait(), 5)
        event2 = b"id: 2\ndata: second\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(event2), event2))
        await writer.drain()

    async with rawhttp.raw_upstream(respond) as upstream:
        proxy = await start(make_proxy, upstream.base)
        async with asyncio.timeout(10):
            response = await proxy.get("/svc/events")
            assert response.headers["Content-Type"] == "text/event-stream"
            first = await response.content.readuntil(b"\n\n")
            assert first == b"id: 1\ndata: first\n\n"
            client_has_first.set()
            second = await response.content.readuntil(b"\n\n")
            assert second == b"id: 2\ndata: second\n\n"
            assert await response.content.read() == b""
