"""OAuth 2.0 fresh-token overhead (issue 4 item 8): req/s for `bearer` vs `oauth2`, side by side.

One `python -m proxy run` subprocess (SQLite store in a temp dir) serves two connections to the
same local upstream (in this process): `bearer` with a static token, and `oauth2` with a fresh
token (expiry a day away, so the proactive-refresh check runs on every request and never
refreshes). The token URL points at a closed port: a token call would fail the request, so a
clean run also proves none was made. Rounds alternate between the two routes; the script prints
the median req/s of each and their ratio. Run: `python bench/oauth2_fresh_vs_bearer.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def ok(request: web.Request) -> web.Response:
    return web.Response(body=b'{"ok":true}', content_type="application/json")


def proxy_config(port: int, upstream: str, store: Path) -> dict[str, object]:
    expires = datetime.fromtimestamp(time.time() + 86400, UTC).isoformat()
    grant = {
        "type": "authorizationCode",
        "authorizationCode": {"clientId": "bench", "clientSecret": "bench-secret"},
    }
    oauth2 = {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {"tokenUrl": f"http://127.0.0.1:{free_port()}/token", "grant": grant},
        },
        "credential": {
            "type": "oauth2-token",
            "data": {
                "oauth2Token": {
                    "accessToken": "bench-access",
                    "refreshToken": "bench-refresh",
                    "expiresAt": expires,
                }
            },
        },
    }
    bearer = {
        "authSchemeConfig": {"type": "bearer"},
        "credential": {"type": "string", "data": {"string": {"value": "bench-access"}}},
    }
    return {
        "listen": f"127.0.0.1:{port}",
        "store": {"path": str(store)},
        "log": {"level": "warning"},
        "connections": [
            {"name": "bearer", "baseUrl": upstream, "credentials": [bearer]},
            {"name": "oauth2", "baseUrl": upstream, "credentials": [oauth2]},
        ],
    }


async def round_rps(session: aiohttp.ClientSession, url: str, count: int, conc: int) -> float:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.get(url) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"{url}: status {response.status}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return count / (time.perf_counter() - started)


async def main(rounds: int, count: int, conc: int) -> None:
    runner = web.AppRunner(web.Application())
    runner.app.router.add_get("/{tail:.*}", ok)
    await runner.setup()
    up_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", up_port).start()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "proxy.yaml"
        config.write_text(
            yaml.safe_dump(proxy_config(port, f"http://127.0.0.1:{up_port}", Path(tmp) / "s.db"))
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "run", "--config", str(config)
        )
        try:
            connector = aiohttp.TCPConnector(limit=conc)
            async with aiohttp.ClientSession(connector=connector) as session:
                base = f"http://127.0.0.1:{port}"
                for _ in range(100):
                    try:
                        async with session.get(base + "/healthz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
                results: dict[str, list[float]] = {"bearer": [], "oauth2": []}
                for name in results:  # warm-up
                    await round_rps(session, f"{base}/{name}/x", count // 4, conc)
                for i in range(rounds):
                    order = ("bearer", "oauth2") if i % 2 == 0 else ("oauth2", "bearer")
                    for name in order:
                        results[name].append(
                            await round_rps(session, f"{base}/{name}/x", count, conc)
                        )
        finally:
            proc.terminate()
            await proc.wait()
            await runner.cleanup()
    bearer = statistics.median(results["bearer"])
    oauth2 = statistics.median(results["oauth2"])
    print(f"{rounds} alternating rounds of {count} GETs, concurrency {conc}")
    print(f"{'scheme':<8} {'median req/s':>13} {'min':>9} {'max':>9}")
    for name, values in results.items():
        print(
            f"{name:<8} {statistics.median(values):>13.0f} {min(values):>9.0f} {max(values):>9.0f}"
        )
    print(f"oauth2 / bearer = {oauth2 / bearer:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests, args.concurrency))
