"""Flow control through the hop: neither a slow client nor a slow upstream makes the proxy buffer a
whole body (docs/request-path.md Bodies, docs/security.md invariant 4). Loopback sockets buffer a
few MiB by themselves, so the bounds below are far under the 64 MiB sent and far over what the
kernel may hold."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest

from proxy.cli.server import start_data_plane
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from tests.builders import bearer, connection
from tests.http1.h1proxy import MakeH1Proxy
from tests.rawhttp import Message, port_of, raw_upstream, read_head

MiB = 1024 * 1024
TOTAL = 64 * MiB
BOUND = 24 * MiB
PIECE = 256 * 1024
STALL = 2.0  # seconds without progress that mean back-pressure


async def settle(value: object, attribute: str, *, limit: float = 4.0) -> int:
    """Wait until `value.attribute` stops growing for 0.3 s (at most `limit` s); return it."""
    last, stable = -1, 0
    for _ in range(int(limit / 0.05)):
        now = int(getattr(value, attribute))
        stable = stable + 1 if now == last else 0
        if stable >= 6:
            break
        last = now
        await asyncio.sleep(0.05)
    return last


class Progress:
    sent = 0


async def small_buffer_connection(
    port: int, option: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, option, 64 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def test_slow_client_holds_the_upstream_back(make_h1_proxy: MakeH1Proxy) -> None:
    progress = Progress()

    async def firehose(request: Message, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % TOTAL)
        piece = b"z" * PIECE
        while progress.sent < TOTAL and not writer.is_closing():
            writer.write(piece)
            await writer.drain()  # returns once the kernel took it: what the proxy let in
            progress.sent += PIECE

    async with raw_upstream(firehose) as upstream:
        proxy, _ = await make_h1_proxy(upstream.base)
        reader, writer = await small_buffer_connection(port_of(proxy), socket.SO_RCVBUF)
        try:
            writer.write(b"GET /up/big HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
            async with asyncio.timeout(30):
                assert (await read_head(reader)) is not None
                await reader.readexactly(MiB)  # the client reads 1 MiB, then stops reading
                stalled_at = await settle(progress, "sent")
            print(f"download stalled at {stalled_at / MiB:.1f} MiB")
            assert stalled_at < BOUND, f"upstream got {stalled_at / MiB:.1f} MiB ahead"
            async with asyncio.timeout(30):  # reading resumes: the upstream moves on
                await reader.readexactly(stalled_at)
                assert progress.sent > stalled_at
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_slow_upstream_holds_the_client_upload_back(make_h1_proxy: MakeH1Proxy) -> None:
    release, head_seen = asyncio.Event(), asyncio.Event()
    stalled = await asyncio.start_server(
        lambda r, w: stall_after_head(r, w, head_seen, release), "127.0.0.1", 0
    )
    try:
        port = stalled.sockets[0].getsockname()[1]
        proxy, _ = await make_h1_proxy(f"http://127.0.0.1:{port}")
        reader, writer = await small_buffer_connection(port_of(proxy), socket.SO_SNDBUF)
        progress = Progress()
        try:
            writer.write(
                b"POST /up/upload HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: %d\r\n\r\n"
                % TOTAL
            )
            # The upload starts once the proxy is forwarding: its request head reached the upstream.
            await asyncio.wait_for(head_seen.wait(), 20)
            piece = b"u" * PIECE
            async with asyncio.timeout(60):  # bounded; a healthy run takes well under a second
                while progress.sent < TOTAL:
                    writer.write(piece)
                    try:
                        # A stall is a drain that waits for STALL: far longer than a busy
                        # machine's scheduling hiccups, so a pause is never mistaken for one.
                        await asyncio.wait_for(writer.drain(), STALL)
                    except TimeoutError:
                        break  # back-pressured: the proxy stopped taking the body
                    progress.sent += PIECE
            print(f"upload stalled at {progress.sent / MiB:.1f} MiB")
            assert progress.sent < BOUND, f"proxy took {progress.sent / MiB:.1f} MiB"
        finally:
            release.set()
            writer.transport.abort()
    finally:
        stalled.close()
        await stalled.wait_closed()


async def stall_after_head(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head_seen: asyncio.Event,
    release: asyncio.Event,
) -> None:
    try:
        await read_head(reader)
        head_seen.set()
        await asyncio.wait_for(release.wait(), 90)  # never reads the body
    finally:
        writer.transport.abort()


async def test_client_leaving_mid_response_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Served as `signing-proxy run` serves it: the client's leaving cancels the round trip, and
    # the upstream connection is let go of at once.
    closed = asyncio.Event()

    async def trickle(request: Message, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % TOTAL)
        try:
            for _ in range(400):  # bounded: 400 x 10 ms
                writer.write(b"t" * PIECE)
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            closed.set()  # the proxy let go of the upstream connection too

    async with raw_upstream(trickle) as upstream:
        tree = {"connections": [connection("up", upstream.base, bearer("canary-h1-token"))]}
        app = create_app(build_runtime(tree, {}))
        server, (_, port) = await start_data_plane(app, ("127.0.0.1", 0))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /up/stream HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
            async with asyncio.timeout(20):
                assert (await read_head(reader)) is not None
                await reader.readexactly(PIECE)
            writer.transport.abort()  # the client leaves in the middle of the body
            await asyncio.wait_for(closed.wait(), 20)
        finally:
            await server.drain(5)
            await app.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
