"""The task-free lean round trip (`proxy/dataplane/lean_round_trip.py`): a bodyless request for a
constant-header
connection, on a pooled upstream connection, is served by callbacks — and wherever it must wait
on more than one read it leaves for a task, by the coroutine path's own code.

Every test warms the pool first (the first request to an upstream connects, on the coroutine
path), then drives the case on raw sockets against a raw upstream that records each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import pytest

from proxy.http1 import Http1Upstream
from proxy.http1.wire import parse_origin
from tests import rawhttp
from tests.accesslog import AccessLogFile
from tests.builders import bearer, connection
from tests.plane import MakeProxy, PlaneServer
from tests.rawhttp import Message, RawUpstream, raw_upstream

WARM = b"GET /up/warm HTTP/1.1\r\nHost: p\r\n\r\n"


def request(target: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: p\r\n{extra}\r\n".encode()


async def read_raw_response(reader: asyncio.StreamReader) -> bytes:
    """One response's exact bytes (Content-Length framed, as every response here is)."""
    async with asyncio.timeout(rawhttp.TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def warm_proxy(
    make_proxy: MakeProxy, responder: rawhttp.Responder = rawhttp.ok, **extra: Any
) -> AsyncIterator[tuple[RawUpstream, asyncio.StreamReader, asyncio.StreamWriter]]:
    """An upstream answering with `responder`, the proxy before it (`extra`: more config), and a
    client connection whose first request left a pooled upstream connection."""
    async with raw_upstream(responder) as upstream:
        port = await proxy_port(make_proxy, upstream, **extra)
        async with warmed(port) as (reader, writer):
            yield upstream, reader, writer


@contextlib.asynccontextmanager
async def warmed(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw client connection whose first request has left a pooled upstream connection."""
    async with rawhttp.opened(port) as (reader, writer):
        writer.write(WARM)
        assert (await rawhttp.read_response(reader)).status == 200
        yield reader, writer


async def proxy_port(make_proxy: MakeProxy, upstream: RawUpstream, **extra: Any) -> int:
    tree = {"connections": [connection("up", upstream.base, bearer("lean-canary"))], **extra}
    return rawhttp.port_of((await make_proxy(tree)).server)


async def after_warming(
    make_proxy: MakeProxy, responder: rawhttp.Responder, sent: bytes
) -> tuple[Message, RawUpstream]:
    """The answer to `sent` on a client connection whose first request warmed the pool, from an
    upstream answering with `responder`; and that upstream."""
    async with warm_proxy(make_proxy, responder) as (upstream, reader, writer):
        writer.write(sent)
        return await rawhttp.read_response(reader), upstream


def drops_once(matches: Callable[[Message], bool]) -> rawhttp.Responder:
    """An upstream that aborts its connection under the first request `matches` (as an idle
    timeout racing the request would) and answers every other one `200 ok`."""
    dropped: list[str] = []

    async def respond(request: Message, writer: asyncio.StreamWriter) -> None:
        if matches(request) and not dropped:
            dropped.append(request.target)
            writer.transport.abort()
            return
        await rawhttp.ok(request, writer)

    return respond


class ProxyTasks:
    """The tasks the proxy's own code creates on the test's loop (by the coroutine they run)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def factory(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **context: Any
    ) -> asyncio.Future[Any]:
        code = getattr(coro, "cr_code", None)
        if code is not None and "/proxy/" in code.co_filename:
            self.names.append(code.co_qualname)
        return asyncio.Task(coro, loop=loop, **context)


@pytest.fixture
def proxy_tasks() -> Generator[ProxyTasks, None, None]:
    loop = asyncio.get_event_loop()
    tasks = ProxyTasks()
    previous = loop.get_task_factory()
    loop.set_task_factory(tasks.factory)
    yield tasks
    loop.set_task_factory(previous)


async def test_a_warm_pool_serves_bodyless_requests_without_a_task(
    make_proxy: MakeProxy, proxy_tasks: ProxyTasks
) -> None:
    async with warm_proxy(make_proxy) as (upstream, reader, writer):
        # The first request connected upstream: the coroutine path, in a task.
        assert proxy_tasks.names == ["DataPlane.serve"]
        proxy_tasks.names.clear()
        for n in range(20):
            writer.write(request(f"/up/n{n}"))
            response = await rawhttp.read_response(reader)
            assert (response.status, response.body) == (200, b"ok")
        for method in ("HEAD", "DELETE", "OPTIONS"):
            writer.write(request("/up/m", method))
            response = await rawhttp.read_response(reader, head_request=method == "HEAD")
            assert response.status == 200
    assert proxy_tasks.names == []
    assert upstream.connections == 1
    assert upstream.targets[1:21] == [f"/n{n}" for n in range(20)]
    assert all(r.request.get("Authorization") == "Bearer lean-canary" for r in upstream.received)


async def test_the_callback_path_sends_and_answers_the_same_bytes_as_the_coroutine_path(
    make_proxy: MakeProxy, proxy_tasks: ProxyTasks
) -> None:
    async def varied(request: Message, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 201 Made\r\nX-Up: a\r\nConnection: keep-alive\r\nset-cookie: s=1\r\n"
            b"Keep-Alive: timeout=5\r\nContent-Length: 5\r\n\r\nhello"
        )
        await writer.drain()

    sent = request("/up/a%2Fb/c?q=1&r=%20", extra="X-Client: 1\r\nAccept: */*\r\n")
    async with raw_upstream(varied) as upstream:
        port = await proxy_port(make_proxy, upstream)
        answers = []
        async with rawhttp.opened(port) as (reader, writer):
            for _ in range(2):  # cold (a task), then warm (callbacks)
                writer.write(sent)
                answers.append(await read_raw_response(reader))
    assert proxy_tasks.names == ["DataPlane.serve"]  # the first only
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 201 Made\r\n") and answers[0].endswith(b"hello")
    first, second = (r.request for r in upstream.received)
    assert (first.start_line, first.headers) == (second.start_line, second.headers)
    assert first.target == "/a%2Fb/c?q=1&r=%20"


async def test_a_pooled_connection_closed_under_a_get_is_retried_on_a_new_one(
    make_proxy: MakeProxy,
) -> None:
    drops_its_second = drops_once(lambda request: request.target == "/stale")
    response, upstream = await after_warming(make_proxy, drops_its_second, request("/up/stale"))
    assert response.status == 200 and response.body == b"ok"
    assert [(r.connection, r.request.target) for r in upstream.received] == [
        (0, "/warm"),
        (0, "/stale"),
        (1, "/stale"),
    ]


async def test_a_pooled_connection_closed_under_a_post_is_not_retried(
    make_proxy: MakeProxy,
) -> None:
    async def drops_posts(request: Message, writer: asyncio.StreamWriter) -> None:
        if request.method == "POST":
            writer.transport.abort()
            return
        await rawhttp.ok(request, writer)

    response, upstream = await after_warming(make_proxy, drops_posts, request("/up/once", "POST"))
    assert response.status == 502
    assert "connection_terminated" in (response.get("Proxy-Status") or "")
    assert [r.request.method for r in upstream.received] == ["GET", "POST"]  # sent once


async def test_a_body_that_comes_after_the_head_is_streamed_from_a_task(
    make_proxy: MakeProxy, proxy_tasks: ProxyTasks
) -> None:
    release = asyncio.Event()

    async def in_two_parts(request: Message, writer: asyncio.StreamWriter) -> None:
        if request.target != "/parts":
            await rawhttp.ok(request, writer)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
        await writer.drain()
        await release.wait()
        writer.write(b"world")
        await writer.drain()

    async with warm_proxy(make_proxy, in_two_parts) as (upstream, reader, writer):
        proxy_tasks.names.clear()
        writer.write(request("/up/parts"))
        async with asyncio.timeout(rawhttp.TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")  # the head goes out before the body
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        release.set()
        async with asyncio.timeout(rawhttp.TIMEOUT):
            assert await reader.readexactly(10) == b"helloworld"
        writer.write(request("/up/after"))  # the connection went back to the pool
        assert (await rawhttp.read_response(reader)).body == b"ok"
    assert proxy_tasks.names == ["DataPlane.serve"]  # the streamed one, not the one after
    assert upstream.connections == 1


async def test_no_answer_from_a_pooled_connection_is_a_504_on_time(
    make_proxy: MakeProxy,
) -> None:
    async def silent(request: Message, writer: asyncio.StreamWriter) -> None:
        if request.target == "/silent":
            await asyncio.sleep(10)
        await rawhttp.ok(request, writer)

    async with warm_proxy(make_proxy, silent, timeouts={"read": 0.5}) as (upstream, reader, writer):
        loop = asyncio.get_running_loop()
        start = loop.time()
        writer.write(request("/up/silent"))
        response = await rawhttp.read_response(reader)
        waited = loop.time() - start
    assert response.status == 504
    assert "http_response_timeout" in (response.get("Proxy-Status") or "")
    assert 0.45 <= waited < 3.0


async def test_a_malformed_answer_on_a_pooled_connection_is_a_502(make_proxy: MakeProxy) -> None:
    async def garbled(request: Message, writer: asyncio.StreamWriter) -> None:
        if request.target == "/garbled":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            return
        await rawhttp.ok(request, writer)

    async with warm_proxy(make_proxy, garbled) as (upstream, reader, writer):
        writer.write(request("/up/garbled"))
        response = await rawhttp.read_response(reader)
        writer.write(request("/up/next"))  # the proxy goes on, on a new connection
        after = await rawhttp.read_response(reader)
    assert response.status == 502
    assert "http_protocol_error" in (response.get("Proxy-Status") or "")
    assert after.status == 200
    assert upstream.connections == 2


async def test_pipelined_requests_on_a_warm_pool_are_answered_in_order(
    make_proxy: MakeProxy, proxy_tasks: ProxyTasks
) -> None:
    async def echo_target(request: Message, writer: asyncio.StreamWriter) -> None:
        body = request.target.encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async with raw_upstream(echo_target) as upstream:
        port = await proxy_port(make_proxy, upstream)
        async with rawhttp.opened(port) as (reader, writer):
            writer.write(WARM)
            await rawhttp.read_response(reader)
            proxy_tasks.names.clear()
            writer.write(b"".join(request(f"/up/p{n}") for n in range(8)))
            bodies = [(await rawhttp.read_response(reader)).body for _ in range(8)]
    assert bodies == [f"/p{n}".encode() for n in range(8)]
    assert proxy_tasks.names == []


async def test_a_client_that_leaves_drops_the_pooled_round_trip_at_once(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture, access_log: AccessLogFile
) -> None:
    caplog.set_level(logging.INFO)
    async with rawhttp.silent_upstream(warm=1) as (upstream, base):
        tree = {"connections": [connection("up", base, bearer("t"))], "timeouts": {"read": 30}}
        port = rawhttp.port_of((await make_proxy(tree)).server)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(WARM)
        assert (await rawhttp.read_response(reader)).status == 200
        writer.write(request("/up/slow"))
        await asyncio.wait_for(upstream.asked.wait(), rawhttp.TIMEOUT)
        loop = asyncio.get_running_loop()
        start = loop.time()
        writer.transport.abort()
        await asyncio.wait_for(upstream.released.wait(), 2)
        assert loop.time() - start < 1.0  # at once, not after the 30 s read timeout
    await asyncio.sleep(0.05)
    access = access_log.messages()
    slow = [line for line in access if "/slow" in line]
    assert len(slow) == 1 and "status=499" in slow[0] and "client_disconnected" in slow[0]
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not problems, [r.getMessage() for r in problems]


async def test_a_body_that_came_with_its_head_goes_up_in_one_write_without_a_task(
    make_proxy: MakeProxy, proxy_tasks: ProxyTasks
) -> None:
    payload = b'{"name": "lean", "n": 1}'
    sent = request(
        "/up/items", "POST", f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    )
    async with raw_upstream() as upstream:
        port = await proxy_port(make_proxy, upstream)
        async with rawhttp.opened(port) as (reader, writer):
            answers = []
            for _ in range(3):  # cold (a task), then warm twice (callbacks)
                writer.write(sent + payload)
                answers.append(await read_raw_response(reader))
    assert proxy_tasks.names == ["DataPlane.serve"]
    assert answers[0] == answers[1] == answers[2]
    first, second, third = (r.request for r in upstream.received)
    assert first.body == second.body == third.body == payload
    assert (first.start_line, first.headers) == (second.start_line, second.headers)
    assert first.get("Content-Length") == str(len(payload))


async def test_a_body_still_arriving_streams_from_a_task(
    make_proxy: MakeProxy, proxy_tasks: ProxyTasks
) -> None:
    async with warm_proxy(make_proxy) as (upstream, reader, writer):
        proxy_tasks.names.clear()
        writer.write(request("/up/upload", "PUT", "Content-Length: 10\r\n") + b"hello")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"world")
        assert (await rawhttp.read_response(reader)).status == 200
    assert proxy_tasks.names[0] == "DataPlane.serve"  # then the upload's own writer
    assert "_send_stream" in proxy_tasks.names
    assert upstream.received[-1].request.body == b"helloworld"


async def test_a_put_with_its_body_in_hand_is_retried_whole_on_a_new_connection(
    make_proxy: MakeProxy,
) -> None:
    drops_the_first_put = drops_once(lambda request: request.method == "PUT")
    put = request("/up/doc", "PUT", "Content-Length: 4\r\n") + b"data"
    response, upstream = await after_warming(make_proxy, drops_the_first_put, put)
    assert response.status == 200
    puts = [(r.connection, r.request.body) for r in upstream.received if r.request.method == "PUT"]
    assert puts == [(0, b"data"), (1, b"data")]


async def test_a_pooled_connection_that_cannot_be_written_is_answered_once(
    make_proxy: MakeProxy, access_log: AccessLogFile
) -> None:
    async with raw_upstream() as upstream:
        tree = {"connections": [connection("up", upstream.base, bearer("t"))]}
        client = await make_proxy(tree)
        port = rawhttp.port_of(client.server)
        async with warmed(port) as (reader, writer):
            # The pooled connection's transport refuses the write, as uvloop's does once it is
            # closed: the failure is answered once, and the next request gets a new connection.
            assert isinstance(client.server, PlaneServer)
            hop = client.server.app.forwarder.upstream
            assert isinstance(hop, Http1Upstream)
            pool = hop.pool
            origin = parse_origin(upstream.base)
            h1 = pool.take_idle(origin, None)
            assert h1 is not None and h1.transport is not None

            def closed(data: bytes | bytearray | memoryview) -> None:
                raise RuntimeError("unable to perform operation: the handler is closed")

            h1.transport.write = closed  # type: ignore[method-assign]
            pool.release(origin, None, h1)
            writer.write(request("/up/broken"))
            failed = await rawhttp.read_response(reader)
            writer.write(request("/up/after"))
            after = await rawhttp.read_response(reader)
    assert failed.status == 500 and failed.get("Proxy-Status") is not None
    assert after.status == 200 and upstream.connections == 2
    access = access_log.messages()
    assert len([line for line in access if "/broken" in line]) == 1
