"""A client that goes away mid-request cancels the upstream round trip at once (the upstream
connection is let go of, a spilled body's temporary file removed), and the access log says so
once, as a client disconnect — not an upstream failure, no traceback, and no "Task exception was
never retrieved" left behind (docs/operations.md)."""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
import time
from pathlib import Path

import pytest

from tests import rawhttp
from tests.accesslog import AccessLogFile
from tests.builders import bearer, connection, hmac_sha256
from tests.plane import MakeProxy
from tests.rawhttp import Message, raw_upstream


def assert_logged_once_as_disconnect(
    caplog: pytest.LogCaptureFixture, access_log: AccessLogFile
) -> None:
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    access = access_log.messages()
    assert len(access) == 1, access
    assert "status=499" in access[0] and "client_disconnected" in access[0]
    assert "upstream" not in access[0]
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not problems, [r.getMessage() for r in problems]
    assert "never retrieved" not in caplog.text
    assert "Traceback" not in caplog.text


async def test_leaving_while_the_upstream_thinks(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture, access_log: AccessLogFile
) -> None:
    caplog.set_level(logging.INFO)
    async with rawhttp.silent_upstream() as (upstream, base):
        tree = {
            "connections": [connection("up", base, bearer("t"))],
            "timeouts": {"read": 30},
        }
        port = rawhttp.port_of((await make_proxy(tree)).server)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /up/slow HTTP/1.1\r\nHost: p\r\n\r\n")
        await asyncio.wait_for(upstream.asked.wait(), 2)
        writer.transport.abort()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(upstream.released.wait(), 2)
        assert loop.time() - start < 1.0  # at once, not after the 30 s read timeout
        await asyncio.sleep(0.1)
    assert_logged_once_as_disconnect(caplog, access_log)


async def test_leaving_mid_upload_removes_the_spilled_body(
    make_proxy: MakeProxy,
    caplog: pytest.LogCaptureFixture,
    access_log: AccessLogFile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    async with raw_upstream() as upstream:
        tree = {
            "connections": [
                connection("up", upstream.base, hmac_sha256("canary-hmac-key", "body"))
            ],
            "limits": {"memoryBodyBytes": 1024},
        }
        port = rawhttp.port_of((await make_proxy(tree)).server)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /up/x HTTP/1.1\r\nHost: p\r\nContent-Length: 1000000\r\n\r\n")
        writer.write(b"a" * 200_000)
        await writer.drain()
        deadline = time.monotonic() + 20  # bounded in time, not tries: a loaded machine is slow
        while time.monotonic() < deadline:  # until the spill file appears
            if list(tmp_path.glob("signing-proxy-body-*")):
                break
            await asyncio.sleep(0.02)
        assert list(tmp_path.glob("signing-proxy-body-*"))
        writer.transport.abort()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not list(tmp_path.glob("signing-proxy-body-*")):
                break
            await asyncio.sleep(0.02)
        assert not list(tmp_path.glob("signing-proxy-body-*"))
        assert upstream.received == []  # nothing half-read went upstream
        await asyncio.sleep(0.1)
    assert_logged_once_as_disconnect(caplog, access_log)


async def test_leaving_mid_response(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture, access_log: AccessLogFile
) -> None:
    caplog.set_level(logging.INFO)
    released = asyncio.Event()

    async def endless(request: Message, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        try:
            for _ in range(2000):  # bounded: 2000 x 5 ms
                writer.write(b"x" * 4096)
                await writer.drain()
                await asyncio.sleep(0.005)
        except ConnectionError:
            pass
        finally:
            released.set()

    async with raw_upstream(endless) as upstream:
        port = rawhttp.port_of(
            (await make_proxy({"connections": [connection("up", upstream.base)]})).server
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /up/stream HTTP/1.1\r\nHost: p\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        await asyncio.wait_for(reader.readexactly(4096), 2)
        writer.transport.abort()
        await asyncio.wait_for(released.wait(), 2)
        await asyncio.sleep(0.1)
    assert_logged_once_as_disconnect(caplog, access_log)
