"""Bodies a scheme must read: memory up to a threshold, a 0600 temp file beyond, 413 past the
maximum; temp files gone after success, error and client disconnect (docs/configuration.md limits,
docs/request-path.md Bodies).

The temp directory is pointed at a fresh folder per test (`tempfile.tempdir`, what `TMPDIR`
sets), so "no file left" is checked by listing it; each test that expects a spill also checks
that a file existed while the request was in flight, so "empty afterwards" is not vacuous.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from proxy.dataplane.body import BufferedBody, read_body
from proxy.errors import PayloadTooLarge
from tests import rawhttp
from tests.builders import bearer, connection, hmac_credential
from tests.plane import MakeProxy
from tests.upstreams import catch_all

KiB = 1024
MiB = 1024 * KiB
SECRET = "canary-body-hmac-secret-5be1"


def body_signed(base: str, memory: int, maximum: int) -> dict[str, Any]:
    """A config of one connection `svc` to `base` that signs the body with HMAC (so it reads the
    body whole: in memory up to `memory` bytes, spilled beyond, refused past `maximum`)."""
    svc = connection("svc", base, hmac_credential(SECRET, digestInputs=["body"]))
    return {"connections": [svc], "limits": limits(memory, maximum)}


class Chunks:
    """A `ByteStream` over fixed chunks (what aiohttp's StreamReader offers: `readany`)."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


async def wait_until(predicate: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# --- read_body on its own ----------------------------------------------------------------


async def test_small_body_stays_in_memory(spool: Path) -> None:
    body, overflow = await read_body(Chunks(b"ab", b"cd"), memory_limit=10, max_bytes=100)
    assert overflow is None
    assert body.in_memory == b"abcd" and body.size == 4
    assert list(spool.iterdir()) == []


async def test_large_body_spills_to_private_file_removed_on_close(spool: Path) -> None:
    parts = [os.urandom(3000) for _ in range(5)]
    body, _ = await read_body(Chunks(*parts), memory_limit=4000, max_bytes=100_000)
    [file] = list(spool.iterdir())
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert body.in_memory is None and body.size == 15000
    assert body.read_all() == b"".join(parts)
    assert b"".join([c async for c in body.aiter_bytes()]) == b"".join(parts)
    body.close()
    assert list(spool.iterdir()) == []


async def test_past_maximum_is_413_and_removes_spilled_file(spool: Path) -> None:
    with pytest.raises(PayloadTooLarge):
        await read_body(Chunks(b"x" * 600, b"y" * 600), memory_limit=500, max_bytes=1000)
    assert list(spool.iterdir()) == []


async def test_cancelled_read_removes_spilled_file(spool: Path) -> None:
    class Stalls(Chunks):
        async def readany(self) -> bytes:
            if self._chunks:
                return self._chunks.pop(0)
            await asyncio.sleep(60)  # a client that stops sending
            return b""

    task = asyncio.create_task(read_body(Stalls(b"z" * 2000), memory_limit=100, max_bytes=10**6))
    await wait_until(lambda: list(spool.iterdir()))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(spool.iterdir()) == []


def test_empty_buffered_body() -> None:
    body = BufferedBody()
    assert body.size == 0 and body.read_all() == b"" and list(body.iter_bytes()) == []


# --- through the proxy ------------------------------------------------------------------


class Sink:
    """An upstream that hashes what it receives and notes the spool's content at that moment."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        spooled = [p.name for p in self.spool.iterdir()]
        data = await request.read()
        self.seen.append(
            {
                "sha256": hashlib.sha256(data).hexdigest(),
                "length": request.headers.get("Content-Length"),
                "chunked": "Transfer-Encoding" in request.headers,
                "spooled": spooled,
            }
        )
        return web.Response(text="ok")


@pytest.fixture
async def sink(aiohttp_server: Any, spool: Path) -> tuple[Sink, str]:
    recorder = Sink(spool)
    app = catch_all(recorder.handle, client_max_size=256 * MiB)
    server = await aiohttp_server(app)
    return recorder, str(server.make_url("/api"))


def limits(memory: int, maximum: int) -> dict[str, int]:
    return {"memoryBodyBytes": memory, "maxBodyBytes": maximum}


async def test_spilled_body_is_sent_exactly_and_file_removed_after(
    make_proxy: MakeProxy, sink: tuple[Sink, str], spool: Path
) -> None:
    recorder, base = sink
    proxy = await make_proxy(body_signed(base, 64 * KiB, MiB))
    data = os.urandom(300 * KiB)
    response = await proxy.post("/svc/up", data=data)
    assert response.status == 200
    [seen] = recorder.seen
    assert seen["sha256"] == hashlib.sha256(data).hexdigest()
    assert seen["length"] == str(len(data))
    assert len(seen["spooled"]) == 1  # it did spill while in flight
    assert list(spool.iterdir()) == []


async def test_chunked_upload_is_read_and_sent_with_content_length(
    make_proxy: MakeProxy, sink: tuple[Sink, str], spool: Path
) -> None:
    recorder, base = sink
    proxy = await make_proxy(body_signed(base, 16 * KiB, MiB))
    pieces = [os.urandom(10 * KiB) for _ in range(6)]

    async def generate() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    response = await proxy.post("/svc/up", data=generate())  # no Content-Length: chunked
    assert response.status == 200
    [seen] = recorder.seen
    assert seen["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert seen["length"] == str(60 * KiB) and not seen["chunked"]
    assert list(spool.iterdir()) == []


async def test_too_large_body_is_413_before_upstream_and_file_removed(
    make_proxy: MakeProxy, sink: tuple[Sink, str], spool: Path
) -> None:
    recorder, base = sink
    proxy = await make_proxy(body_signed(base, 8 * KiB, 64 * KiB))
    response = await proxy.post("/svc/up", data=os.urandom(100 * KiB))
    assert response.status == 413
    assert (await response.json())["code"] == "payload_too_large"
    assert "proxy_internal_response" in response.headers["Proxy-Status"]
    assert recorder.seen == []
    assert list(spool.iterdir()) == []


async def test_upstream_failure_removes_spilled_file(
    make_proxy: MakeProxy, spool: Path, refused_port: int
) -> None:
    base = f"http://127.0.0.1:{refused_port}/api"  # nothing listens there
    proxy = await make_proxy(body_signed(base, 8 * KiB, MiB))
    response = await proxy.post("/svc/up", data=os.urandom(100 * KiB))
    assert response.status == 502
    assert list(spool.iterdir()) == []


async def test_client_disconnect_mid_upload_removes_spilled_file(
    make_proxy: MakeProxy, sink: tuple[Sink, str], spool: Path
) -> None:
    recorder, base = sink
    proxy = await make_proxy(body_signed(base, 8 * KiB, MiB))
    reader, writer = await asyncio.open_connection("127.0.0.1", rawhttp.port_of(proxy))
    writer.write(b"POST /svc/up HTTP/1.1\r\nHost: p\r\nContent-Length: 500000\r\n\r\n")
    writer.write(os.urandom(100 * KiB))
    await writer.drain()
    await wait_until(lambda: list(spool.iterdir()))  # spilled, still waiting for the rest
    writer.close()
    await writer.wait_closed()
    await wait_until(lambda: not list(spool.iterdir()))
    assert recorder.seen == []


async def test_non_signing_scheme_streams_without_buffering(
    make_proxy: MakeProxy, sink: tuple[Sink, str], spool: Path
) -> None:
    """50 MiB through a bearer connection whose limits would refuse it if it were read: it is
    not read (no 413), never spooled, and arrives intact."""
    recorder, base = sink
    svc = connection("svc", base, bearer("canary-bearer"))
    proxy = await make_proxy({"connections": [svc], "limits": limits(0, MiB)})
    digest = hashlib.sha256()
    block = os.urandom(MiB)

    async def generate() -> AsyncIterator[bytes]:
        for i in range(50):
            piece = block[i:] + block[:i]
            digest.update(piece)
            yield piece

    response = await proxy.post("/svc/big", data=generate())
    assert response.status == 200
    [seen] = recorder.seen
    assert seen["sha256"] == digest.hexdigest()
    assert seen["spooled"] == [] and seen["chunked"]
    assert list(spool.iterdir()) == []
