"""The store's cost on the hot path: tiny GETs on a static credential through a proxy on the
SQLite store vs one on a PostgreSQL store, side by side (docs/operations.md "Several replicas").

Two `python -m proxy run` subprocesses, identical but for `store`, each with one `bearer`
connection to the same local upstream (in this process). Rounds alternate between the two,
bounded in count and in time; the script prints the median req/s of each, their ratio (≈ 1:
signing a request never touches the store), and how many transactions the PostgreSQL database
committed during the rounds (a hot path that queried the store would show thousands).

PostgreSQL: `--url postgresql://...` (with `--key`), or, without it, a throw-away server started
like the tests do (`tests/pg.py`: Debian's `postgresql` package). Run:
`python bench/store_hot_path.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg
from ab import alternate, local_upstream, print_table, proxy_process
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.store.crypto import new_key_text  # noqa: E402


async def tiny(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def proxy_config(port: int, upstream: str, store: dict[str, Any]) -> dict[str, Any]:
    bearer = {
        "authSchemeConfig": {"type": "bearer"},
        "credential": {"type": "string", "data": {"string": {"value": "bench-token"}}},
    }
    return {
        "listen": f"127.0.0.1:{port}",
        "store": store,
        "log": {"level": "warning"},
        "connections": [{"name": "api", "baseUrl": upstream, "credentials": [bearer]}],
    }


def throwaway_server(stack: ExitStack) -> str:
    from tests.pg import start_server

    servers: Iterator[Any] = start_server()
    server = next(servers)
    stack.callback(lambda: next(servers, None))
    url: str = server.new_database()
    return url


async def commits(url: str) -> int:
    db = await asyncpg.connect(url)
    try:
        value: int = await db.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return value
    finally:
        await db.close()


async def main(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        url = args.url or throwaway_server(stack)
        key = args.key or new_key_text()
        app = web.Application()
        app.router.add_get("/{tail:.*}", tiny)
        async with local_upstream(app) as upstream:

            def sqlite(port: int, tmp: Path) -> dict[str, Any]:
                return proxy_config(port, upstream, {"path": str(tmp / "s.db")})

            def postgres(port: int, tmp: Path) -> dict[str, Any]:
                return proxy_config(port, upstream, {"url": url, "key": key})

            async with proxy_process(sqlite) as lite, proxy_process(postgres) as pg:
                urls = {"sqlite": f"{lite}/api/x", "postgresql": f"{pg}/api/x"}
                before = await commits(url)
                results = await alternate(
                    urls, rounds=args.rounds, count=args.requests, conc=args.concurrency,
                    budget=args.seconds,
                )  # fmt: skip
                during = await commits(url) - before - 2  # our own two reads
        done = len(results["postgresql"])
        heading = (
            f"{done} alternating rounds of {args.requests} tiny GETs (static bearer), "
            f"concurrency {args.concurrency}"
        )
        ratio = print_table(results, heading)
        total = sum(args.requests for _ in results["postgresql"])
        print(f"postgresql / sqlite = {ratio:.3f} (expected ≈ 1)")
        print(f"PostgreSQL transactions while serving {total} requests: {during}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing PostgreSQL database (else a throw-away one)")
    parser.add_argument("--key", help="its store.key (base64 of 32 bytes)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget for the rounds")
    asyncio.run(main(parser.parse_args()))
