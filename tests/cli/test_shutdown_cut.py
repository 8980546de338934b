"""A request still in flight when `timeouts.shutdownGrace` runs out is cut by the proxy, and its
access line and metrics say so (`cut_by_shutdown`, `signing_proxy_requests_cut_by_shutdown_total`),
not `499 client_disconnected`: the client did not leave (docs/operations.md).

The upstream is a raw socket server that never finishes its answer: before the response head
(the line says 503: the proxy stopped before it could answer) and in the middle of the body (the
status sent, 200)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from tests import rawhttp
from tests.accesslog import AccessLogFile
from tests.builders import bearer, connection
from tests.plane import PlaneServer
from tests.proxyproc import proxy_process

GRACE = 0.5


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counts(connection_name: str) -> dict[str, float]:
    return {
        "cut": sample("signing_proxy_requests_cut_by_shutdown_total", connection=connection_name),
        **{
            code: sample(
                "signing_proxy_requests_total", connection=connection_name, method="GET", code=code
            )
            for code in ("499", "503", "200")
        },
    }


async def closed(writer: asyncio.StreamWriter) -> None:
    """Close and wait for it: a socket left to the garbage collector warns in another test."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def stalled_upstream(send_head: bool) -> tuple[asyncio.Server, asyncio.Event]:
    """Reads the request, then answers nothing (or a head and half a body), until the proxy
    lets go of the connection."""
    asked = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await rawhttp.read_head(reader)
        if send_head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
            await writer.drain()
        asked.set()
        try:
            await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()

    return await asyncio.start_server(stall, "127.0.0.1", 0), asked


async def cut_in_process(access_log: AccessLogFile, name: str, send_head: bool) -> str:
    server, asked = await stalled_upstream(send_head)
    async with server:
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        runtime = build_runtime({"connections": [connection(name, base, bearer("t"))]}, {})
        plane_server = PlaneServer(create_app(runtime, access_log=access_log.writer), grace=GRACE)
        await plane_server.start_server()
        assert plane_server.http is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", plane_server.port)
        writer.write(f"GET /{name}/slow HTTP/1.1\r\nHost: p\r\n\r\n".encode())
        await asyncio.wait_for(asked.wait(), 5)
        started = asyncio.get_running_loop().time()
        await plane_server.close()  # the drain: grace, then the cut
        assert asyncio.get_running_loop().time() - started < GRACE + 2
        received = await asyncio.wait_for(reader.read(), 5)  # until the proxy closes
        if send_head:
            assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"half")
        else:
            assert received == b""  # cut: no answer at all
        await closed(writer)
    [line] = access_log.messages()
    return line


async def test_cut_before_the_response_head(access_log: AccessLogFile) -> None:
    before = counts("before-head")
    line = await cut_in_process(access_log, "before-head", send_head=False)
    assert "status=503" in line and line.endswith("cut_by_shutdown"), line
    assert "client_disconnected" not in line and "499" not in line
    after = counts("before-head")
    assert after["cut"] - before["cut"] == 1
    assert after["503"] - before["503"] == 1
    assert after["499"] == before["499"]


async def test_cut_in_the_middle_of_the_body(access_log: AccessLogFile) -> None:
    before = counts("mid-body")
    line = await cut_in_process(access_log, "mid-body", send_head=True)
    assert "status=200" in line and line.endswith("cut_by_shutdown"), line
    assert "client_disconnected" not in line
    after = counts("mid-body")
    assert after["cut"] - before["cut"] == 1
    assert after["200"] - before["200"] == 1
    assert after["499"] == before["499"]


async def test_sigterm_past_the_grace_logs_the_cut_as_json(tmp_path: Path) -> None:
    server, asked = await stalled_upstream(send_head=False)
    async with server:
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        tree: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "timeouts": {"shutdownGrace": 1},
            "log": {"format": "json"},
            "connections": [connection("api", base, bearer("canary-cut-token"))],
        }
        config = tmp_path / "proxy.yaml"
        config.write_text(yaml.safe_dump(tree))
        async with proxy_process(config) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports[0])
            writer.write(b"GET /api/slow HTTP/1.1\r\nHost: p\r\n\r\n")
            await asyncio.wait_for(asked.wait(), 10)
        # proxy_process sent SIGTERM and saw exit status 0 after the grace.
        await closed(writer)
    events = [json.loads(line) for line in proxy.stderr.decode().splitlines() if line]
    [request] = [e for e in events if e["event"] == "request" and e["connection"] == "api"]
    assert (request["status"], request["error"]) == (503, "cut_by_shutdown"), request
    assert "client_disconnected" not in request["message"]
    assert "canary-cut-token" not in proxy.stderr.decode()
