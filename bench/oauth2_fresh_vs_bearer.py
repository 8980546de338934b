"""OAuth 2.0 fresh-token overhead: req/s for `bearer` vs `oauth2`, side by side.

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
import time
from datetime import UTC, datetime
from pathlib import Path

from ab import alternate, free_port, local_upstream, print_table, proxy_process
from aiohttp import web


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


async def main(rounds: int, count: int, conc: int, budget: float) -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    async with local_upstream(app) as upstream:
        config = lambda port, tmp: proxy_config(port, upstream, tmp / "s.db")  # noqa: E731
        async with proxy_process(config) as base:
            urls = {name: f"{base}/{name}/x" for name in ("bearer", "oauth2")}
            results = await alternate(urls, rounds=rounds, count=count, conc=conc, budget=budget)
    ratio = print_table(
        results, f"{len(results['oauth2'])} alternating rounds of {count} GETs, concurrency {conc}"
    )
    print(f"oauth2 / bearer = {ratio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget for the rounds")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests, args.concurrency, args.seconds))
