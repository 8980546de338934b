"""Keep-alive reuse of upstream connections, and what happens when the upstream closes them."""

from __future__ import annotations

import asyncio

from tests.http1.h1proxy import MakeH1Proxy
from tests.rawhttp import Message, ok, raw_upstream


async def test_sequential_requests_share_one_connection(make_h1_proxy: MakeH1Proxy) -> None:
    async with raw_upstream() as upstream:
        proxy, hop = await make_h1_proxy(upstream.base)
        for _ in range(5):
            response = await proxy.get("/up/x")
            assert response.status == 200
            assert await response.read() == b"ok"
        assert upstream.connections == 1
        assert len(upstream.received) == 5
        assert hop.pool.idle_count() == 1


async def test_concurrent_requests_open_more_then_reuse_them(make_h1_proxy: MakeH1Proxy) -> None:
    gate = asyncio.Event()

    async def slow_ok(request: Message, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(gate.wait(), 5)
        await ok(request, writer)

    async with raw_upstream(slow_ok) as upstream:
        proxy, hop = await make_h1_proxy(upstream.base)
        first = [asyncio.create_task(proxy.get(f"/up/{i}")) for i in range(3)]
        for _ in range(100):  # until all three are waiting upstream (bounded)
            if len(upstream.received) == 3:
                break
            await asyncio.sleep(0.01)
        gate.set()
        for response in await asyncio.gather(*first):
            assert response.status == 200
            await response.read()
        assert upstream.connections == 3
        for i in range(3):
            assert (await proxy.get(f"/up/again{i}")).status == 200
        assert upstream.connections == 3


async def test_connection_closed_by_upstream_between_requests(make_h1_proxy: MakeH1Proxy) -> None:
    async def ok_then_close(request: Message, writer: asyncio.StreamWriter) -> None:
        await ok(request, writer)
        writer.close()  # keep-alive was not refused: the upstream just hangs up afterwards

    async with raw_upstream(ok_then_close) as upstream:
        proxy, hop = await make_h1_proxy(upstream.base)
        assert (await proxy.get("/up/one")).status == 200
        for _ in range(100):  # the FIN reaches the idle connection (bounded wait)
            if hop.pool.idle_count() == 0:
                break
            await asyncio.sleep(0.01)
        response = await proxy.get("/up/two")
        assert response.status == 200
        assert await response.read() == b"ok"
        assert upstream.connections == 2
        assert [r.request.target for r in upstream.received] == ["/one", "/two"]


async def test_idempotent_request_retried_once_when_reused_connection_dies(
    make_h1_proxy: MakeH1Proxy,
) -> None:
    async def drop_second(request: Message, writer: asyncio.StreamWriter) -> None:
        if len(upstream.received) == 2:
            writer.transport.abort()  # the race: closed just as the request arrived
            return
        await ok(request, writer)

    async with raw_upstream(drop_second) as upstream:
        proxy, _ = await make_h1_proxy(upstream.base)
        assert (await proxy.get("/up/a")).status == 200
        response = await proxy.get("/up/b")
        assert response.status == 200
        assert await response.read() == b"ok"
        assert [r.request.target for r in upstream.received] == ["/a", "/b", "/b"]
        assert [r.connection for r in upstream.received] == [0, 0, 1]


async def test_post_is_not_replayed_on_a_fresh_connection(make_h1_proxy: MakeH1Proxy) -> None:
    async def drop_second(request: Message, writer: asyncio.StreamWriter) -> None:
        if len(upstream.received) == 2:
            writer.transport.abort()
            return
        await ok(request, writer)

    async with raw_upstream(drop_second) as upstream:
        proxy, _ = await make_h1_proxy(upstream.base)
        assert (await proxy.get("/up/a")).status == 200
        response = await proxy.post("/up/pay", data=b"charge-once")
        assert response.status == 502
        assert "error=connection_terminated" in response.headers["Proxy-Status"]
        assert (await response.json())["code"] == "upstream_unavailable"
        assert [r.request.target for r in upstream.received] == ["/a", "/pay"]
