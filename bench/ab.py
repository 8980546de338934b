"""Shared harness for the side-by-side benches: one `python -m proxy run` subprocess serving two
routes to one local upstream, requests in alternating rounds, medians and the ratio printed.

Alternating rounds (A B, B A, A B, ...) keep a noisy 2-core machine from favouring whichever
contender happened to run during a quiet spell; the median of each side is what is compared.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def local_upstream(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def proxy_process(
    make_config: Callable[[int, Path], dict[str, Any]],
) -> AsyncIterator[str]:
    """Run the proxy as a subprocess on a free port with `make_config(port, tmpdir)`; yields its
    base URL once `/healthz` answers."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "proxy.yaml"
        config.write_text(yaml.safe_dump(make_config(port, Path(tmp))))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "run", "--config", str(config), cwd=tmp
        )
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_ready(base + "/healthz")
            yield base
        finally:
            proc.terminate()
            await proc.wait()


async def wait_ready(url: str, attempts: int = 100) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(attempts):
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


async def round_rps(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes | None,
    count: int,
    conc: int,
    headers: dict[str, str] | None = None,
) -> float:
    """`count` requests over `conc` concurrent workers; requests per second. Any non-200 aborts."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.request(method, url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{url}: status {response.status}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return count / (time.perf_counter() - started)


async def alternate(
    urls: dict[str, str],
    *,
    method: str = "GET",
    body: bytes | None = None,
    rounds: int,
    count: int,
    conc: int,
    budget: float,
    headers: dict[str, str] | None = None,
) -> dict[str, list[float]]:
    """A warm-up, then up to `rounds` rounds per name in alternating order, within `budget` s."""
    results: dict[str, list[float]] = {name: [] for name in urls}
    names = list(urls)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:
        for name in names:
            await round_rps(session, method, urls[name], body, max(count // 4, 1), conc, headers)
        deadline = time.monotonic() + budget
        for i in range(rounds):
            if time.monotonic() > deadline:
                print(f"time budget reached after {i} rounds")
                break
            for name in names if i % 2 == 0 else reversed(names):
                results[name].append(
                    await round_rps(session, method, urls[name], body, count, conc, headers)
                )
    return results


def print_table(results: dict[str, list[float]], heading: str) -> float:
    """Print median/min/max req/s per name; return the ratio last / first of the medians."""
    print(heading)
    print(f"{'route':<10} {'median req/s':>13} {'min':>9} {'max':>9}")
    medians = []
    for name, values in results.items():
        medians.append(statistics.median(values))
        print(f"{name:<10} {medians[-1]:>13.1f} {min(values):>9.1f} {max(values):>9.1f}")
    return medians[-1] / medians[0]
