"""The real program (`python -m proxy run`): `/healthz`, and a graceful drain on SIGTERM/SIGINT
(docs/operations.md): the in-flight request completes, new connections are refused, the exit code
is 0."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import rawhttp
from tests.proxyproc import ProxyProcess, config_file

# The drain test's bounds. Each stage waits for its own event; these only bound a broken proxy,
# so they are generous for a loaded 2-core machine.
STAGE_TIMEOUT = 20.0
GRACE = 60  # `timeouts.shutdownGrace`: longer than every stage between the signal and the reply


def proxy_for(tmp_path: Path, upstream_base: str) -> ProxyProcess:
    tree = {
        "timeouts": {"shutdownGrace": GRACE},
        "connections": [{"name": "slow", "baseUrl": upstream_base, "credentials": []}],
    }
    return ProxyProcess(config_file(tmp_path, tree))


@pytest.fixture
async def gate() -> AsyncIterator[asyncio.Event]:
    event = asyncio.Event()
    yield event
    event.set()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_drains_in_flight_then_exits_zero(
    tmp_path: Path, gate: asyncio.Event, signum: signal.Signals
) -> None:
    async def slow(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(gate.wait(), GRACE)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nfinished")
        await writer.drain()

    async with rawhttp.raw_upstream(slow) as upstream:
        proxy = proxy_for(tmp_path, upstream.base)
        try:
            port = (await proxy.astart()).ports[0]
            health = await rawhttp.round_trip(port, rawhttp.get("/healthz"), timeout=STAGE_TIMEOUT)
            assert health.status == 200
            assert json.loads(health.body)["status"] == "ok"

            # The round trip spans every stage below, so its bound is theirs together (rawhttp's
            # default 5 s would end it on a loaded machine before the gate opens).
            in_flight = asyncio.create_task(
                rawhttp.round_trip(port, rawhttp.get("/slow/x"), timeout=4 * STAGE_TIMEOUT)
            )
            async with asyncio.timeout(STAGE_TIMEOUT):
                while not upstream.received:  # the request has reached the upstream
                    await asyncio.sleep(0.01)

            proxy.signal(signum)
            async with asyncio.timeout(STAGE_TIMEOUT):
                while True:  # the listener closes promptly; the in-flight request is untouched
                    try:
                        _, writer = await asyncio.open_connection("127.0.0.1", port)
                    except ConnectionRefusedError:
                        break
                    writer.close()
                    await asyncio.sleep(0.02)
            assert not in_flight.done()

            gate.set()
            response = await asyncio.wait_for(in_flight, STAGE_TIMEOUT)
            assert (response.status, response.body, response.complete) == (200, b"finished", True)
            assert await proxy.await_exit(STAGE_TIMEOUT) == 0
        finally:
            proxy.kill()
