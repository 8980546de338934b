"""Request bodies the inbound server refuses, and bodies that make no progress, on raw sockets
(docs/security.md "Limits that bound the guarantees", docs/errors.md).

- A body whose framing is refused before its handler starts (the bad bytes came with the head)
  is answered 400 `bad_request` in the request's place: the upstream is never contacted.
- Found while the handler runs (the head went first, the bad bytes later), the upstream
  round trip is aborted (the upstream never takes a truncated body for a whole one) and the client
  gets the error once; no ERROR line and no traceback on any of the three request paths (lean,
  general, a signing scheme that reads the body first).
- A body with no progress for `timeouts.clientBody` ends with 408 `request_timeout`; trailer
  fields are bounded by `limits.maxHeaderBytes`, the field count and, from the last chunk on,
  `timeouts.clientHead`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests import rawhttp
from tests.builders import bearer, connection, hmac_sha256, on_path
from tests.plane import MakeProxy

TOKEN = "canary-body-bearer-3c1"
PATHS = ["lean", "general", "signing"]
ROUTE = "/svc"
HEAD = f"POST {ROUTE}/up HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n".encode()


def tree(base: str, path: str, **extra: Any) -> dict[str, Any]:
    """`lean`: a bearer credential (the head is built from the client's bytes); `general`: the
    same on the general path; `signing`: HMAC over the body, read whole before sending."""
    credential = hmac_sha256("canary-hmac-key", "body") if path == "signing" else bearer(TOKEN)
    return on_path({"connections": [connection("svc", base, credential)], **extra}, path)


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@contextlib.asynccontextmanager
async def proxied(
    make_proxy: MakeProxy, path: str, **extra: Any
) -> AsyncIterator[tuple[int, rawhttp.RawUpstream]]:
    async with rawhttp.raw_upstream() as upstream:
        client = await make_proxy(tree(upstream.base, path, **extra))
        yield rawhttp.port_of(client.server), upstream


async def answer(reader: asyncio.StreamReader, seconds: float = 5.0) -> rawhttp.Message:
    return await asyncio.wait_for(rawhttp.read_response(reader), seconds)


def assert_error(message: rawhttp.Message, status: int, code: str) -> None:
    assert message.status == status
    assert message.get("Content-Type") == "application/json"
    assert (message.get("Proxy-Status") or "").startswith(
        "signing-proxy; error=proxy_internal_response"
    )
    assert json.loads(message.body)["code"] == code


async def drip(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    piece: bytes,
    *,
    seconds: float = 5.0,
    wait: float = 6.0,
) -> tuple[rawhttp.Message, float]:
    """Write `piece` every 0.1 s until the proxy answers (or `seconds`; the answer is awaited
    `wait` seconds at most): the answer, the time taken."""
    start = time.monotonic()
    reply_task = asyncio.ensure_future(answer(reader, wait))
    with contextlib.suppress(ConnectionError):
        while not reply_task.done() and time.monotonic() - start < seconds:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.1)
    return await reply_task, time.monotonic() - start


async def assert_no_progress_is_408(
    make_proxy: MakeProxy, timeouts: dict[str, float], first: bytes, piece: bytes, **bounds: float
) -> None:
    """`first`, then `piece` every 0.1 s (`drip`) to the lean path with `timeouts`: a 408
    within 2.5 s, and the upstream never took a body for a whole one."""
    async with proxied(make_proxy, "lean", timeouts=timeouts) as (port, upstream):
        async with rawhttp.opened(port) as (reader, writer):
            writer.write(first)
            reply, took = await drip(reader, writer, piece, **bounds)
    assert_error(reply, 408, "request_timeout")
    assert took <= 2.5
    assert all(not r.request.complete for r in upstream.received)


def assert_no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.levelno < logging.ERROR, record.getMessage()
        assert record.exc_info is None
        assert "Traceback" not in record.getMessage()


def assert_aborted_logged(caplog: pytest.LogCaptureFixture, code: str) -> None:
    """The upstream round trip that had begun was aborted, and a WARNING says so (with the
    code, never a body byte)."""
    [line] = [r for r in caplog.records if r.getMessage().startswith("upstream round trip aborted")]
    assert line.levelno == logging.WARNING
    assert line.getMessage().endswith(f"the client's body was refused ({code})")


def assert_cut_short(
    upstream: rawhttp.RawUpstream, path: str, caplog: pytest.LogCaptureFixture, code: str
) -> None:
    """The upstream never took the body for a whole one: on the `signing` path it was never
    contacted (the body is read whole before anything is sent), on the others its round trip
    was cut short and a WARNING says so; no ERROR, no traceback."""
    assert all(not r.request.complete for r in upstream.received)
    if path == "signing":
        assert upstream.connections == 0
    else:
        assert_aborted_logged(caplog, code)
    assert_no_error_logged(caplog)


# Chunked bodies llhttp refuses after the head was parsed.
BAD_BODIES = {
    "bad chunk size": b"3\r\nabc\r\nzz\r\n",
    "data longer than its size": b"3\r\nabcdef\r\n0\r\n\r\n",
    "bare LF after the size": b"3\nabc\r\n0\r\n\r\n",
    "bare CR in the chunk end": b"3\r\nabc\r0\r\n\r\n",
    "Content-Length in the trailer": b"3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n",
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_bad_body_with_the_head_is_400_and_nothing_goes_upstream(
    make_proxy: MakeProxy, path: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with proxied(make_proxy, path) as (port, upstream):
        async with rawhttp.opened(port) as (reader, writer):
            writer.write(HEAD + body)
            reply = await answer(reader)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # then closed
        await asyncio.sleep(0.05)
    assert_error(reply, 400, "bad_request")
    assert upstream.connections == 0  # not even a connection was opened
    assert_no_error_logged(caplog)


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_bad_body_mid_stream_aborts_the_upstream_and_answers_once(
    make_proxy: MakeProxy, path: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with proxied(make_proxy, path) as (port, upstream):
        async with rawhttp.opened(port) as (reader, writer):
            writer.write(HEAD + b"2\r\nok\r\n")  # the handler starts with this
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(body)
            reply = await answer(reader)
            rest = await asyncio.wait_for(reader.read(), 5)
        await asyncio.sleep(0.05)
    assert_error(reply, 400, "bad_request")
    assert rest == b""  # answered once, then closed
    assert_cut_short(upstream, path, caplog, "bad_request")


async def test_a_body_without_progress_is_408(
    make_proxy: MakeProxy, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    timeouts = {"timeouts": {"clientBody": 0.6}}
    async with proxied(make_proxy, path, **timeouts) as (port, upstream):
        async with rawhttp.opened(port) as (reader, writer):
            head = f"POST {ROUTE}/slow HTTP/1.1\r\nHost: p\r\nContent-Length: 100\r\n\r\n"
            writer.write(head.encode() + b"x" * 10)
            start = time.monotonic()
            reply = await answer(reader)
            took = time.monotonic() - start
        await asyncio.sleep(0.05)
    assert_error(reply, 408, "request_timeout")
    assert 0.5 <= took <= 2.5  # clientBody 0.6 s, swept every 0.15 s
    assert_cut_short(upstream, path, caplog, "request_timeout")


async def test_a_dripped_body_is_408_like_a_stalled_one(make_proxy: MakeProxy) -> None:
    """A byte now and then is no progress: each window must bring 1 KiB (or the end)."""
    head = f"POST {ROUTE}/drip HTTP/1.1\r\nHost: p\r\nContent-Length: 1000\r\n\r\n"
    # One byte every 0.1 s.
    await assert_no_progress_is_408(make_proxy, {"clientBody": 0.6}, head.encode(), b"x")


async def test_an_endless_chunk_extension_is_no_progress(make_proxy: MakeProxy) -> None:
    """Framing bytes are not body: a chunk-size line that never ends is 408 like a stall."""
    # 2 KiB of extension every 0.1 s.
    await assert_no_progress_is_408(make_proxy, {"clientBody": 0.6}, HEAD + b"1;ext=", b"e" * 2048)


async def test_a_steady_slow_body_is_served(make_proxy: MakeProxy) -> None:
    """Progress resets the window: 2 KiB every 0.3 s passes a 0.6 s `clientBody` for 2 s."""
    async with proxied(make_proxy, "lean", timeouts={"clientBody": 0.6}) as (port, upstream):
        async with rawhttp.opened(port) as (reader, writer):
            size = 7 * 2048
            head = f"POST {ROUTE}/steady HTTP/1.1\r\nHost: p\r\nContent-Length: {size}\r\n\r\n"
            writer.write(head.encode())
            for _ in range(7):
                writer.write(b"y" * 2048)
                await writer.drain()
                await asyncio.sleep(0.3)
            reply = await answer(reader)
    assert reply.status == 200
    assert [r.request.body for r in upstream.received] == [b"y" * size]


async def test_waiting_for_100_continue_is_not_counted(make_proxy: MakeProxy) -> None:
    """The body's window starts when `100 Continue` is sent, not with the head."""
    async with proxied(make_proxy, "signing", timeouts={"clientBody": 0.6}) as (port, upstream):
        async with rawhttp.opened(port) as (reader, writer):
            head = (
                f"POST {ROUTE}/expect HTTP/1.1\r\nHost: p\r\nContent-Length: 4\r\n"
                "Expect: 100-continue\r\n\r\n"
            )
            writer.write(head.encode())
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert interim.startswith(b"HTTP/1.1 100")
            writer.write(b"body")
            reply = await answer(reader)
    assert reply.status == 200
    assert [r.request.body for r in upstream.received] == [b"body"]


async def test_trailers_over_max_header_bytes_are_431_at_once(
    make_proxy: MakeProxy, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    limits = {"limits": {"maxHeaderBytes": 4096}}
    async with proxied(make_proxy, path, **limits) as (port, upstream):
        async with rawhttp.opened(port) as (reader, writer):
            writer.write(HEAD + b"3\r\nabc\r\n0\r\nX-Endless: ")
            sent = 0
            with contextlib.suppress(ConnectionError):
                for _ in range(64):  # at most 4 MiB, bounded; the proxy stops it far earlier
                    writer.write(b"v" * 65536)
                    await writer.drain()
                    sent += 65536
                    await asyncio.sleep(0)
            reply = await answer(reader)
        await asyncio.sleep(0.05)
    assert_error(reply, 431, "headers_too_large")
    assert all(not r.request.complete for r in upstream.received)
    assert_no_error_logged(caplog)


async def test_too_many_trailer_fields_are_431(make_proxy: MakeProxy, path: str) -> None:
    async with proxied(make_proxy, path) as (port, upstream):
        fields = b"".join(b"X-T%d: v\r\n" % i for i in range(150))
        reply = await rawhttp.round_trip(port, HEAD + b"3\r\nabc\r\n0\r\n" + fields + b"\r\n")
        await asyncio.sleep(0.05)
    assert_error(reply, 431, "headers_too_large")
    assert all(not r.request.complete for r in upstream.received)


async def test_dripped_trailers_end_within_client_head(make_proxy: MakeProxy) -> None:
    # A trailer field every 0.1 s: progress, but never an end.
    await assert_no_progress_is_408(
        make_proxy,
        {"clientHead": 0.6, "clientBody": 10},
        HEAD + b"3\r\nabc\r\n0\r\n",
        b"X-Drip: " + b"d" * 1100,
        seconds=6,
        wait=8,
    )


async def test_small_trailers_are_dropped_and_the_request_served(
    make_proxy: MakeProxy, path: str
) -> None:
    async with proxied(make_proxy, path) as (port, upstream):
        body = b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n"
        reply = await rawhttp.round_trip(port, HEAD + body)
    assert reply.status == 200
    [received] = upstream.received
    assert received.request.body == b"abc"
    assert received.request.get("X-Checksum") is None
