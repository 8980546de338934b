"""The real program (`python -m proxy run`): `/healthz`, and a graceful drain on SIGTERM/SIGINT
(docs/operations.md): the in-flight request completes, new connections are refused, the exit code
is 0."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import rawhttp
from tests.ports import free_port

START_TIMEOUT = 15.0
# The drain test's bounds. Each stage waits for its own event; these only bound a broken proxy,
# so they are generous for a loaded 2-core machine.
STAGE_TIMEOUT = 20.0
GRACE = 60  # `timeouts.shutdownGrace`: longer than every stage between the signal and the reply


async def wait_healthy(port: int, proc: asyncio.subprocess.Process) -> rawhttp.Message:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise AssertionError(f"proxy exited early with {proc.returncode}")
        try:
            return await rawhttp.round_trip(port, rawhttp.get("/healthz"), timeout=1)
        except (ConnectionError, OSError, rawhttp.Truncated):
            await asyncio.sleep(0.05)
    raise AssertionError("proxy did not become healthy in time")


async def spawn_proxy(
    tmp_path: Path, tree: dict[str, Any], *args: str, stdout: int, stderr: int
) -> tuple[asyncio.subprocess.Process, int]:
    """`python -m proxy run` on a free port with `tree` as its config, running in `tmp_path`
    (the store defaults there too); `args` are extra `run` options."""
    port = free_port()
    tree = {"listen": f"127.0.0.1:{port}", "store": {"path": str(tmp_path / "state.db")}, **tree}
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml.safe_dump(tree))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "run", "--config", str(config), *args,
        cwd=tmp_path, stdout=stdout, stderr=stderr,
    )  # fmt: skip
    return proc, port


async def spawn_on_any_port(
    tmp_path: Path, tree: dict[str, Any]
) -> tuple[asyncio.subprocess.Process, int]:
    """`python -m proxy run` listening on a port the kernel picks (`127.0.0.1:0`), read back from
    its "listening on" log line. Unlike `free_port()` there is no window in which another
    process on a busy machine can take the port first. Output goes to `tmp_path/proxy.log`."""
    log_path = tmp_path / "proxy.log"
    with log_path.open("wb") as log_file:
        out = log_file.fileno()
        tree = {**tree, "listen": "127.0.0.1:0"}
        proc, _ = await spawn_proxy(tmp_path, tree, stdout=out, stderr=out)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while loop.time() < deadline:
        found = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", log_path.read_bytes())
        if found:
            return proc, int(found[1])
        if proc.returncode is not None:
            raise AssertionError(f"proxy exited early with {proc.returncode}")
        await asyncio.sleep(0.05)
    proc.kill()
    await proc.wait()
    raise AssertionError("proxy did not start listening in time")


async def run_proxy(tmp_path: Path, upstream_base: str) -> tuple[asyncio.subprocess.Process, int]:
    tree = {
        "timeouts": {"shutdownGrace": GRACE},
        "connections": [{"name": "slow", "baseUrl": upstream_base, "credentials": []}],
    }
    return await spawn_on_any_port(tmp_path, tree)


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
        proc, port = await run_proxy(tmp_path, upstream.base)
        try:
            health = await wait_healthy(port, proc)
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

            proc.send_signal(signum)
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
            assert await asyncio.wait_for(proc.wait(), STAGE_TIMEOUT) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
