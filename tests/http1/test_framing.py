"""Strict response framing (RFC 9112 §6.3): whatever the upstream sends past the end of a
response never becomes the answer to the next request, and a connection with any doubt about
where a response ended is closed, not reused."""

from __future__ import annotations

import asyncio

from tests.http1.h1proxy import MakeH1Proxy
from tests.rawhttp import Message, get, port_of, raw_upstream, round_trip, scripted

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"


async def test_both_content_length_and_chunked_is_refused(make_h1_proxy: MakeH1Proxy) -> None:
    bad = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED
    )
    async with raw_upstream(scripted(bad, OK)) as upstream:
        proxy, _ = await make_h1_proxy(upstream.base)
        response = await proxy.get("/up/a")
        assert response.status == 502
        assert "error=http_protocol_error" in response.headers["Proxy-Status"]
        second = await proxy.get("/up/b")
        assert await second.read() == b"ok"
        assert upstream.connections == 2


async def test_body_longer_than_content_length_is_not_the_next_response(
    make_h1_proxy: MakeH1Proxy,
) -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + SMUGGLED
    async with raw_upstream(scripted(short, OK)) as upstream:
        proxy, hop = await make_h1_proxy(upstream.base)
        first = await proxy.get("/up/a")
        assert await first.read() == b"hello"
        second = await proxy.get("/up/b")
        assert await second.read() == b"ok"
        assert upstream.connections == 2


async def test_late_extra_bytes_on_an_idle_connection_close_it(make_h1_proxy: MakeH1Proxy) -> None:
    late = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", SMUGGLED]
    async with raw_upstream(scripted(late, OK)) as upstream:
        proxy, hop = await make_h1_proxy(upstream.base)
        assert await (await proxy.get("/up/a")).read() == b"hello"
        for _ in range(100):  # the smuggled bytes arrive 50 ms later (bounded wait)
            if hop.pool.idle_count() == 0:
                break
            await asyncio.sleep(0.01)
        assert await (await proxy.get("/up/b")).read() == b"ok"
        assert upstream.connections == 2


async def test_connection_close_and_http10_and_close_delimited_are_not_reused(
    make_h1_proxy: MakeH1Proxy,
) -> None:
    answers = (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb",
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\nc",
    )
    async with raw_upstream(scripted(*answers)) as upstream:
        proxy, _ = await make_h1_proxy(upstream.base)
        bodies = [await (await proxy.get(f"/up/{i}")).read() for i in range(3)]
        assert bodies == [b"a", b"b", b"c"]
        assert upstream.connections == 3


async def test_close_delimited_body_is_relayed_whole(make_h1_proxy: MakeH1Proxy) -> None:
    body = b"x" * 300_000

    async def until_close(request: Message, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    async with raw_upstream(until_close) as upstream:
        proxy, hop = await make_h1_proxy(upstream.base)
        response = await proxy.get("/up/a")
        assert await response.read() == body
        assert hop.pool.idle_count() == 0


async def test_truncated_body_cuts_the_client_connection(make_h1_proxy: MakeH1Proxy) -> None:
    async def truncated(request: Message, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf!")
        await writer.drain()
        writer.close()

    async with raw_upstream(truncated) as upstream:
        proxy, _ = await make_h1_proxy(upstream.base)
        seen = await round_trip(port_of(proxy), get("/up/a"))
        assert seen.status == 200
        assert seen.body == b"half!"
        assert not seen.complete


async def test_bodiless_responses_keep_the_connection(make_h1_proxy: MakeH1Proxy) -> None:
    answers = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",  # HEAD: the length is the GET's
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n',
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n",
    )
    async with raw_upstream(scripted(*answers)) as upstream:
        proxy, hop = await make_h1_proxy(upstream.base)
        head = await proxy.head("/up/h")
        assert head.status == 200
        assert head.headers["Content-Length"] == "100"
        assert (await proxy.get("/up/n")).status == 204
        assert (await proxy.get("/up/m")).status == 304
        interim = await proxy.get("/up/c")
        assert (interim.status, await interim.read()) == (200, b"ok")
        chunked = await proxy.get("/up/k")
        assert await chunked.read() == b"ok!!!"
        assert upstream.connections == 1
        assert hop.pool.idle_count() == 1


async def test_body_after_a_head_response_closes_the_connection(
    make_h1_proxy: MakeH1Proxy,
) -> None:
    head_with_body = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
    async with raw_upstream(scripted(head_with_body, OK)) as upstream:
        proxy, _ = await make_h1_proxy(upstream.base)
        head = await proxy.head("/up/h")
        assert head.status == 200
        assert await (await proxy.get("/up/b")).read() == b"ok"
        assert upstream.connections == 2
