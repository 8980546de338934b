"""HMAC body-signing cost (issue 3 item 8): req/s of a 1 MiB POST signed with HMAC-SHA256 over
the body vs the same POST with a plain bearer, side by side.

One `python -m proxy run` subprocess serves two connections to the same local sink upstream (in
this process, which reads and drops each body): `bearer` streams the body through untouched,
`hmac` reads it first (1 MiB is exactly the default `memoryBodyBytes`, so it stays in memory),
hashes it and sends it with a Content-Length. Rounds alternate between the two routes, bounded
in count and in time; the script prints the median req/s of each and their ratio (the issue
asks for hmac / bearer >= 0.5). Run: `python bench/hmac_vs_bearer.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def sink(request: web.Request) -> web.Response:
    async for _ in request.content.iter_chunked(256 * 1024):
        pass
    return web.Response(text="ok")


def proxy_config(port: int, upstream: str, store: Path) -> dict[str, object]:
    def string(value: str) -> dict[str, object]:
        return {"type": "string", "data": {"string": {"value": value}}}

    hmac = {
        "authSchemeConfig": {
            "type": "hmac",
            "hmac": {"name": "X-Signature", "in": "header", "algorithm": "sha256",
                     "digestInputs": ["body"], "encoding": "hex"},
        },
        "credential": string("bench-hmac-secret"),
    }  # fmt: skip
    bearer = {"authSchemeConfig": {"type": "bearer"}, "credential": string("bench-token")}
    return {
        "listen": f"127.0.0.1:{port}",
        "store": {"path": str(store)},
        "log": {"level": "warning"},
        "connections": [
            {"name": "bearer", "baseUrl": upstream, "credentials": [bearer]},
            {"name": "hmac", "baseUrl": upstream, "credentials": [hmac]},
        ],
    }


async def round_rps(
    session: aiohttp.ClientSession, url: str, body: bytes, count: int, conc: int
) -> float:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.post(url, data=body) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{url}: status {response.status}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return count / (time.perf_counter() - started)


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(100):
        try:
            async with session.get(base + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the proxy did not start")


async def main(rounds: int, count: int, conc: int, budget: float) -> None:
    app = web.Application(client_max_size=2 * MiB)
    app.router.add_post("/{tail:.*}", sink)
    runner = web.AppRunner(app)
    await runner.setup()
    up_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", up_port).start()
    port = free_port()
    body = os.urandom(MiB)
    results: dict[str, list[float]] = {"bearer": [], "hmac": []}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "proxy.yaml"
        upstream = f"http://127.0.0.1:{up_port}"
        config.write_text(yaml.safe_dump(proxy_config(port, upstream, Path(tmp) / "s.db")))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "run", "--config", str(config)
        )
        try:
            connector = aiohttp.TCPConnector(limit=conc)
            async with aiohttp.ClientSession(connector=connector) as session:
                base = f"http://127.0.0.1:{port}"
                await wait_ready(session, base)
                for name in results:  # warm-up
                    await round_rps(session, f"{base}/{name}/up", body, max(count // 4, 1), conc)
                deadline = time.monotonic() + budget
                for i in range(rounds):
                    if time.monotonic() > deadline:
                        print(f"time budget reached after {i} rounds")
                        break
                    order = ("bearer", "hmac") if i % 2 == 0 else ("hmac", "bearer")
                    for name in order:
                        url = f"{base}/{name}/up"
                        results[name].append(await round_rps(session, url, body, count, conc))
        finally:
            proc.terminate()
            await proc.wait()
            await runner.cleanup()
    bearer = statistics.median(results["bearer"])
    hmac = statistics.median(results["hmac"])
    print(f"{len(results['hmac'])} alternating rounds of {count} x 1 MiB POST, concurrency {conc}")
    print(f"{'scheme':<8} {'median req/s':>13} {'min':>9} {'max':>9} {'MiB/s':>9}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:<8} {median:>13.1f} {min(values):>9.1f} {max(values):>9.1f} {median:>9.0f}")
    print(f"hmac / bearer = {hmac / bearer:.3f} (required >= 0.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget for the rounds")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests, args.concurrency, args.seconds))
