"""Upstream failures map to docs/errors.md errors; upstream errors pass untouched; the pool reuses
connections; a broken upstream never wedges the proxy."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from tests import rawhttp
from tests.builders import bearer, connection
from tests.plane import MakeProxy


async def start(make_proxy: MakeProxy, base: str, **top: Any) -> int:
    client = await make_proxy(
        {"connections": [connection("svc", base, bearer("canary-errors"))], **top}
    )
    return rawhttp.port_of(client)


async def answered_by(make_proxy: MakeProxy, responder: rawhttp.Responder) -> rawhttp.Message:
    """What a client gets for `GET /svc/x` from an upstream answering with `responder`."""
    async with rawhttp.raw_upstream(responder) as upstream:
        port = await start(make_proxy, upstream.base)
        return await rawhttp.round_trip(port, rawhttp.get("/svc/x"))


def proxy_error(response: rawhttp.Message, status: int, code: str, error_type: str) -> None:
    """Assert the docs/errors.md shape: JSON {code, message}, RFC 9209 Proxy-Status naming the
    type."""
    assert response.status == status
    assert (response.get("Content-Type") or "").startswith("application/json")
    body = json.loads(response.body)
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    [proxy_status] = response.get_all("Proxy-Status")
    assert proxy_status.startswith("signing-proxy; ")
    assert f"error={error_type};" in proxy_status or proxy_status.endswith(f"error={error_type}")
    assert code in proxy_status  # the JSON code rides in `details`
    assert "canary-errors" not in response.body.decode() + proxy_status


async def test_connection_refused(make_proxy: MakeProxy, refused_port: int) -> None:
    port = await start(make_proxy, f"http://127.0.0.1:{refused_port}/v1")
    response = await rawhttp.round_trip(port, rawhttp.get("/svc/x"))
    proxy_error(response, 502, "upstream_unavailable", "connection_refused")


async def test_read_timeout(make_proxy: MakeProxy) -> None:
    release = asyncio.Event()

    async def stall(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(release.wait(), 5)

    async with rawhttp.raw_upstream(stall) as upstream:
        port = await start(make_proxy, upstream.base, timeouts={"read": 0.3})
        loop = asyncio.get_running_loop()
        began = loop.time()
        response = await rawhttp.round_trip(port, rawhttp.get("/svc/slow"))
        elapsed = loop.time() - began
        release.set()
        proxy_error(response, 504, "upstream_timeout", "http_response_timeout")
        assert 0.25 < elapsed < 3


async def test_connect_timeout(make_proxy: MakeProxy) -> None:
    """A listener whose accept queue is full drops SYNs (Linux), so connect() hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    target = listener.getsockname()
    fillers: list[socket.socket] = []
    try:
        for _ in range(4):  # backlog 0 still queues one or two; fill it
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(target)
            fillers.append(filler)
        await asyncio.sleep(0.05)
        try:
            probe = await asyncio.wait_for(asyncio.open_connection(*target), 0.3)
        except TimeoutError:
            pass
        else:
            probe[1].close()
            pytest.skip("this kernel accepted past a full backlog; connect timeout not provoked")
        port = await start(
            make_proxy, f"http://127.0.0.1:{target[1]}", timeouts={"connect": 0.3, "read": 5}
        )
        response = await rawhttp.round_trip(port, rawhttp.get("/svc/x"))
        proxy_error(response, 502, "upstream_unavailable", "connection_timeout")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_reset_before_response(make_proxy: MakeProxy) -> None:
    async def hang_up(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    response = await answered_by(make_proxy, hang_up)
    proxy_error(response, 502, "upstream_unavailable", "connection_terminated")


async def test_garbage_response(make_proxy: MakeProxy) -> None:
    garbage = rawhttp.scripted(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", close=True)
    response = await answered_by(make_proxy, garbage)
    proxy_error(response, 502, "upstream_unavailable", "http_protocol_error")


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"y" * 40,
    ],
)
async def test_reset_mid_response_truncates_and_proxy_keeps_serving(
    make_proxy: MakeProxy, partial: bytes
) -> None:
    async def cut(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        if request.target == "/next":
            await rawhttp.ok(request, writer)
            return
        writer.write(partial)
        await writer.drain()
        writer.transport.abort()

    async with rawhttp.raw_upstream(cut) as upstream:
        port = await start(make_proxy, upstream.base)
        response = await rawhttp.round_trip(port, rawhttp.get("/svc/cut"))
        assert response.status == 200
        assert not response.complete  # a clean end would pass a partial body off as whole
        after = await rawhttp.round_trip(port, rawhttp.get("/svc/next"))
        assert (after.status, after.body) == (200, b"ok")


async def test_stall_mid_response_hits_read_timeout(make_proxy: MakeProxy) -> None:
    release = asyncio.Event()

    async def stall(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await asyncio.wait_for(release.wait(), 5)

    async with rawhttp.raw_upstream(stall) as upstream:
        port = await start(make_proxy, upstream.base, timeouts={"read": 0.3})
        response = await rawhttp.round_trip(port, rawhttp.get("/svc/x"))
        release.set()
        assert (response.status, response.body, response.complete) == (200, b"abc", False)


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 502, 503])
async def test_upstream_errors_pass_untouched(make_proxy: MakeProxy, status: int) -> None:
    body = json.dumps({"error": "upstream's own", "status": status}).encode()

    fail = rawhttp.scripted(
        b"HTTP/1.1 %d Upstream Says\r\nContent-Type: application/json\r\n"
        b"Retry-After: 7\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
    )
    response = await answered_by(make_proxy, fail)
    assert response.status == status
    assert response.start_line.endswith("Upstream Says")
    assert response.body == body
    assert response.get_all("Retry-After") == ["7"]
    assert response.get_all("Proxy-Status") == []


async def test_route_not_found_is_a_proxy_error(make_proxy: MakeProxy) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = await start(make_proxy, upstream.base)
        response = await rawhttp.round_trip(port, rawhttp.get("/svcx/a"))
        proxy_error(response, 404, "route_not_found", "proxy_internal_response")
        assert upstream.received == []


async def test_keep_alive_pool_reuses_one_upstream_connection(make_proxy: MakeProxy) -> None:
    async with rawhttp.raw_upstream() as upstream:
        port = await start(make_proxy, upstream.base)
        for i in range(6):
            response = await rawhttp.round_trip(port, rawhttp.get(f"/svc/{i}"))
            assert response.status == 200
        assert upstream.targets == [f"/{i}" for i in range(6)]
        assert upstream.connections == 1
        assert {r.connection for r in upstream.received} == {0}


async def test_pool_recovers_when_upstream_closes_idle_connection(make_proxy: MakeProxy) -> None:
    """An upstream that closes after each response (no keep-alive) still serves every request."""

    once = rawhttp.scripted(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", close=True
    )
    async with rawhttp.raw_upstream(once) as upstream:
        port = await start(make_proxy, upstream.base)
        for _ in range(4):
            response = await rawhttp.round_trip(port, rawhttp.get("/svc/x"))
            assert (response.status, response.body) == (200, b"ok")
        assert upstream.connections == 4
