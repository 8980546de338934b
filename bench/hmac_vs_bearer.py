"""HMAC body-signing cost: req/s of a 1 MiB POST signed with HMAC-SHA256 over
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
from pathlib import Path

from ab import alternate, local_upstream, print_table, proxy_process
from aiohttp import web

MiB = 1024 * 1024


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


async def main(rounds: int, count: int, conc: int, budget: float) -> None:
    app = web.Application(client_max_size=2 * MiB)
    app.router.add_post("/{tail:.*}", sink)
    async with local_upstream(app) as upstream:
        config = lambda port, tmp: proxy_config(port, upstream, tmp / "s.db")  # noqa: E731
        async with proxy_process(config) as base:
            urls = {name: f"{base}/{name}/up" for name in ("bearer", "hmac")}
            results = await alternate(
                urls, method="POST", body=os.urandom(MiB),
                rounds=rounds, count=count, conc=conc, budget=budget,
            )  # fmt: skip
    rounds_done = len(results["hmac"])
    ratio = print_table(results, f"{rounds_done} alternating rounds of {count} x 1 MiB POST, "
                                 f"concurrency {conc}")  # fmt: skip
    print(f"hmac / bearer = {ratio:.3f} (required >= 0.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget for the rounds")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests, args.concurrency, args.seconds))
