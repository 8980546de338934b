"""The inbound server's HTTP/1.1 framing, seen on raw sockets at both ends (RFC 9112): keep-alive,
pipelining in order, `Expect: 100-continue`, HEAD/204/304, HTTP/1.0, chunked in and out, trailers
dropped, back-pressure, and bytes in = bytes out for what the proxy must not add or drop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests import rawhttp
from tests.builders import bearer, connection
from tests.plane import MakeProxy
from tests.rawhttp import Message, raw_upstream


@contextlib.asynccontextmanager
async def proxied(
    make_proxy: MakeProxy, responder: rawhttp.Responder = rawhttp.ok, **tree: Any
) -> AsyncIterator[tuple[int, rawhttp.RawUpstream]]:
    async with raw_upstream(responder) as upstream:
        config = {"connections": [connection("up", upstream.base, bearer("t"))], **tree}
        client = await make_proxy(config)
        yield rawhttp.port_of(client.server), upstream


async def test_keep_alive_and_pipelined_requests_answered_in_order(make_proxy: MakeProxy) -> None:
    async def numbered(request: Message, writer: asyncio.StreamWriter) -> None:
        body = request.target.encode()
        if request.target.endswith("/slow"):
            await asyncio.sleep(0.2)  # the later answers may not overtake this one
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async with (
        proxied(make_proxy, numbered) as (port, upstream),
        rawhttp.opened(port) as (reader, writer),
    ):
        writer.write(
            b"GET /up/slow HTTP/1.1\r\nHost: p\r\n\r\n"
            b"POST /up/two HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /up/three HTTP/1.1\r\nHost: p\r\n\r\n"
        )
        bodies = [(await rawhttp.read_response(reader)).body for _ in range(3)]
        assert bodies == [b"/slow", b"/two", b"/three"]
        writer.write(b"GET /up/four HTTP/1.1\r\nHost: p\r\n\r\n")  # same connection, later
        assert (await rawhttp.read_response(reader)).body == b"/four"
        assert upstream.received[1].request.body == b"abc"


async def test_a_thousand_pipelined_requests_answered_at_once_in_one_read(
    make_proxy: MakeProxy,
) -> None:
    # Requests the proxy answers without waiting (/healthz, a 404) follow one another in a
    # loop: one read holding 3,000 of them once overflowed Python's recursion limit.
    batch = b"GET /healthz HTTP/1.1\r\nHost: p\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: p\r\n\r\n"
    async with proxied(make_proxy) as (port, _), rawhttp.opened(port) as (reader, writer):
        writer.write(batch * 1500 + b"GET /up/last HTTP/1.1\r\nHost: p\r\n\r\n")
        statuses = [(await rawhttp.read_response(reader)).status for _ in range(3001)]
    assert statuses == [200, 404] * 1500 + [200]


async def test_expect_100_continue(make_proxy: MakeProxy) -> None:
    async with proxied(make_proxy) as (port, upstream), rawhttp.opened(port) as (reader, writer):
        writer.write(
            b"PUT /up/x HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        response = await asyncio.wait_for(rawhttp.read_response(reader), 2)
        assert response.status == 200
        assert upstream.received[0].request.body == b"hello"
        assert upstream.received[0].request.get("Expect") == "100-continue"


async def test_refused_request_never_asks_for_its_body(make_proxy: MakeProxy) -> None:
    async with proxied(make_proxy) as (port, _), rawhttp.opened(port) as (reader, writer):
        writer.write(
            b"PUT /nowhere HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        response = await asyncio.wait_for(rawhttp.read_response(reader), 2)
        assert response.status == 404  # no `100 Continue` before it


@pytest.mark.parametrize("status", [204, 304])
async def test_bodyless_statuses_and_head(make_proxy: MakeProxy, status: int) -> None:
    async def answer(request: Message, writer: asyncio.StreamWriter) -> None:
        if request.method == "HEAD":
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: "e"\r\n\r\n')
        else:
            writer.write(b'HTTP/1.1 %d X\r\nETag: "e"\r\n\r\n' % status)
        await writer.drain()

    async with proxied(make_proxy, answer) as (port, _), rawhttp.opened(port) as (reader, writer):
        writer.write(b"GET /up/a HTTP/1.1\r\nHost: p\r\n\r\nHEAD /up/b HTTP/1.1\r\nHost: p\r\n\r\n")
        first = await asyncio.wait_for(rawhttp.read_head(reader), 2)
        assert first is not None
        assert first[0].split(" ")[1] == str(status)
        assert not [k for k, _ in first[1] if k.lower() in ("content-length", "transfer-encoding")]
        second = await asyncio.wait_for(rawhttp.read_head(reader), 2)
        assert second is not None  # nothing between the two heads: no body was sent
        assert ("Content-Length", "1234") in second[1]
        writer.write(b"GET /up/c HTTP/1.1\r\nHost: p\r\n\r\n")
        third = await asyncio.wait_for(rawhttp.read_head(reader), 2)
        assert third is not None and third[0].split(" ")[1] == str(status)


async def test_http_1_0_client(make_proxy: MakeProxy) -> None:
    async def unframed(request: Message, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        await writer.drain()

    async with proxied(make_proxy, unframed) as (port, upstream):
        # No keep-alive asked: the body runs to the close (HTTP/1.0 knows no chunked coding).
        async with rawhttp.opened(port) as (reader, writer):
            writer.write(b"GET /up/a HTTP/1.0\r\n\r\n")
            raw = await asyncio.wait_for(reader.read(), 2)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 ")
        assert b"chunked" not in head.lower()
        assert body == b"abc"
        assert upstream.received[0].request.start_line.endswith("HTTP/1.1")
        # Keep-alive asked: a whole body gets a length and the connection stays open.
        async with rawhttp.opened(port) as (reader, writer):
            for _ in range(2):
                writer.write(b"GET /up/b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                response = await asyncio.wait_for(rawhttp.read_response(reader), 2)
                assert response.get("Connection") == "keep-alive"
                assert response.body == b"abc"


async def test_chunked_upload_and_trailers_dropped(make_proxy: MakeProxy) -> None:
    async with proxied(make_proxy) as (port, upstream), rawhttp.opened(port) as (reader, writer):
        writer.write(
            b"POST /up/x HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n"
            b"\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: canary-trailer\r\n\r\n"
        )
        response = await asyncio.wait_for(rawhttp.read_response(reader), 2)
        assert response.status == 200
    seen = upstream.received[0].request
    assert seen.body == b"hello world"
    assert seen.chunked
    assert "canary-trailer" not in json.dumps(seen.headers)
    assert seen.get("Trailer") is None  # hop-by-hop


async def test_streamed_response_goes_out_chunked_and_complete(make_proxy: MakeProxy) -> None:
    pieces = [b"a" * 1000, b"b" * 70000, b"c"]

    async def close_delimited(request: Message, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.close()

    async with (
        proxied(make_proxy, close_delimited) as (port, _),
        rawhttp.opened(port) as (reader, writer),
    ):
        writer.write(b"GET /up/s HTTP/1.1\r\nHost: p\r\n\r\n")
        response = await asyncio.wait_for(rawhttp.read_response(reader), 5)
        assert response.chunked and response.complete
        assert response.body == b"".join(pieces)
        assert response.get("Connection") is None  # the client's connection stays open


async def test_no_content_type_added_and_upstream_proxy_status_kept(make_proxy: MakeProxy) -> None:
    async def bare(request: Message, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 503 Busy\r\nProxy-Status: upstream-cache; error=destination_unavailable\r\n"
            b"Content-Length: 4\r\n\r\nbusy"
        )
        await writer.drain()

    async with proxied(make_proxy, bare) as (port, _):
        response = await rawhttp.round_trip(port, rawhttp.get("/up/x"))
    assert response.status == 503
    assert response.start_line == "HTTP/1.1 503 Busy"  # the upstream's reason phrase too
    assert response.get("Content-Type") is None
    assert response.get_all("Proxy-Status") == ["upstream-cache; error=destination_unavailable"]
    assert response.get("Server") is None and response.get("Date") is None  # nothing added
    assert response.body == b"busy"


async def test_two_connection_ids_are_refused(make_proxy: MakeProxy) -> None:
    template = {
        "id": "crm",
        "route": "/crm",
        "baseUrl": "http://127.0.0.1:9",
        "authSchemeConfigs": [{"type": "api-key", "apiKey": {"name": "X-Key", "in": "header"}}],
    }
    client = await make_proxy({"templates": [template]})
    port = rawhttp.port_of(client.server)
    reply = await rawhttp.round_trip(
        port, rawhttp.get("/crm/x", headers="X-Connection-Id: a\r\nX-Connection-Id: b\r\n")
    )
    assert reply.status == 400
    assert json.loads(reply.body)["code"] == "connection_id_ambiguous"
    assert (reply.get("Proxy-Status") or "").startswith("signing-proxy;")


async def test_slow_client_slows_the_upstream_read(make_proxy: MakeProxy) -> None:
    total = 48 * 1024 * 1024
    piece = 64 * 1024
    sent = 0

    async def big(request: Message, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        block = b"z" * piece
        for _ in range(total // piece):  # bounded
            writer.write(block)
            await writer.drain()
            sent += piece

    async with proxied(make_proxy, big) as (port, _), rawhttp.opened(port) as (reader, writer):
        writer.write(b"GET /up/big HTTP/1.1\r\nHost: p\r\n\r\n")
        await asyncio.sleep(1.0)  # the client reads nothing meanwhile
        held = sent
        assert held < 16 * 1024 * 1024  # socket buffers and the flow-control window, not 48 MiB
        head = await rawhttp.read_head(reader)
        assert head is not None
        digest = hashlib.sha256()
        remaining = total
        while remaining:
            chunk = await asyncio.wait_for(reader.read(min(remaining, 1 << 20)), 10)
            assert chunk
            digest.update(chunk)
            remaining -= len(chunk)
    assert digest.hexdigest() == hashlib.sha256(b"z" * total).hexdigest()


async def test_response_header_lines_relayed_as_bytes(make_proxy: MakeProxy) -> None:
    # The relay copies the upstream's header fields as received (name case, order, repeats,
    # latin-1 bytes no UTF-8 decoder would accept) and drops only hop-by-hop ones: RFC 9110
    # §7.6.1, including a field the upstream's `Connection` names.
    kept = [
        b"X-MiXeD-Case: V\r\n",
        b"Set-Cookie: a=1\r\n",
        b"Set-Cookie: b=2\r\n",
        b"X-Latin: caf\xe9 \xff\r\n",
        b"Content-Length: 2\r\n",
    ]
    dropped = [b"Connection: keep-alive, X-Hop\r\n", b"X-Hop: 1\r\n", b"Keep-Alive: timeout=5\r\n"]

    async def mixed(request: Message, writer: asyncio.StreamWriter) -> None:
        lines = [kept[0], dropped[0], kept[1], dropped[1], kept[2], kept[3], dropped[2], kept[4]]
        writer.write(b"HTTP/1.1 200 OK\r\n" + b"".join(lines) + b"\r\nok")
        await writer.drain()

    async with proxied(make_proxy, mixed) as (port, _), rawhttp.opened(port) as (reader, writer):
        writer.write(rawhttp.get("/up/x"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.readexactly(2), 5)
    # The one line the proxy adds: its own answer to the client's `Connection: close`.
    assert head == b"HTTP/1.1 200 OK\r\n" + b"".join(kept) + b"Connection: close\r\n\r\n"
    assert body == b"ok"
