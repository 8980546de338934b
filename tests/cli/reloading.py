"""A proxy process reloaded while it serves, for the reload tests (SIGHUP, `run --watch`, config
bounds): an upstream that answers with the Authorization it got, a config of bearer connections
to it, the atomic write editors and deploy tools do, and a `Proxy` handle that signals and polls.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.builders import bearer, connection
from tests.proxyproc import ProxyProcess, proxy_process
from tests.upstreams import catch_all

TIMEOUT = 60.0  # bounds a broken proxy only (a loaded 2-core machine is slow, not wrong)


async def upstream_app(slow_arrived: asyncio.Event | None = None) -> web.Application:
    """Answers with the Authorization it got; `/slow` first sets `slow_arrived`, then waits
    1.5 s."""

    async def handle(request: web.Request) -> web.Response:
        if request.path.endswith("/slow"):
            if slow_arrived is not None:
                slow_arrived.set()
            await asyncio.sleep(1.5)
        return web.Response(text=request.headers.get("Authorization", "-"))

    return catch_all(handle)


@pytest.fixture
async def upstream(aiohttp_server: Any) -> str:
    server: TestServer = await aiohttp_server(await upstream_app())
    return str(server.make_url("")).rstrip("/")


def config(base: str, tokens: dict[str, str]) -> dict[str, Any]:
    return {
        "listen": "127.0.0.1:0",  # the port the proxy got is read back from its log
        "connections": [connection(n, f"{base}/{n}", bearer(t)) for n, t in tokens.items()],
    }


def write(path: Path, tree: Any) -> None:
    # Write then rename, as editors and deploy tools do: the proxy never reads half a file.
    partial = path.with_suffix(".partial")
    partial.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    partial.replace(path)


class Proxy:
    def __init__(self, process: ProxyProcess, session: aiohttp.ClientSession) -> None:
        self.base = process.base
        self.session = session
        self._proc = process

    @property
    def stderr(self) -> bytes:
        return self._proc.stderr

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base + path) as response:
            return response.status, await response.text()

    async def until(self, path: str, expected: tuple[int, str]) -> None:
        """Poll until `path` answers `expected` (a reload is asynchronous to the signal)."""
        deadline = time.monotonic() + TIMEOUT
        while (answer := await self.get(path)) != expected:
            assert time.monotonic() < deadline, f"{path}: {answer}, expected {expected}"
            await asyncio.sleep(0.05)

    def hangup(self) -> None:
        self._proc.signal(signal.SIGHUP)


async def until_logged(proxy: Proxy, text: str) -> None:
    """Until the proxy has logged `text`."""
    deadline = time.monotonic() + TIMEOUT
    while text.encode() not in proxy.stderr:
        assert time.monotonic() < deadline, f"not logged: {text!r}: {proxy.stderr!r}"
        await asyncio.sleep(0.05)


async def load(
    proxy: Proxy, answers: list[tuple[int, str]], over: asyncio.Event, *, most: int
) -> None:
    """`GET /api/x` again and again, each answer into `answers`, until `over` is set and it has
    had 10 answers (a loaded machine answers fewer a second); bounded by `most` answers, and
    through the caller in time."""
    for count in range(1, most + 1):
        answers.append(await proxy.get("/api/x"))
        if over.is_set() and count >= 10:
            return


@asynccontextmanager
async def running(path: Path, *extra: str) -> AsyncIterator[Proxy]:
    async with proxy_process(path, *extra) as process:
        async with aiohttp.ClientSession() as session:
            yield Proxy(process, session)
