"""Cost of clients and policy on the tiny-GET path, side by side.

Two measurements in one run:

1. End to end: two `python -m proxy run` subprocesses on the same local upstream (in this
   process, answering `ok`), one without `clients`, one with 20 clients (the bench's key is the
   last one tried, with a rate limit far above the load) and a 3-rule `policy` on the connection.
   Every request carries `X-Api-Key: <key>` (the open proxy forwards it, the other checks it and
   drops it). Rounds alternate between the two, bounded in count and time; the script prints
   the median req/s of each and the ratio with / without.
2. In process: the median time of the check itself (`authenticate` + `authorize` on the same
   request shape, the key held by the last client) with 1, 20 and 1000 clients, in alternating
   rounds, to set against the per-request time of (1) and to show it does not grow with the
   number of clients.

Run: `python bench/clients_vs_open.py` (`--rounds`, `--requests`, `--concurrency`, `--seconds`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from ab import alternate, local_upstream, print_table, proxy_process
from aiohttp import web

from proxy.connections.runtime import build_runtime

KEY = "bench-client-key-0019"
CLIENTS = 20


async def tiny(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def proxy_config(
    port: int, upstream: str, store: Path, with_clients: bool, clients: int = CLIENTS
) -> dict[str, Any]:
    bearer = {
        "authSchemeConfig": {"type": "bearer"},
        "credential": {"type": "string", "data": {"string": {"value": "bench-token"}}},
    }
    connection: dict[str, Any] = {"name": "api", "baseUrl": upstream, "credentials": [bearer]}
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "store": {"path": str(store)},
        "log": {"level": "warning"},
        "connections": [connection],
    }
    if with_clients:
        config["clients"] = [
            {
                "name": f"client-{i}",
                "key": f"bench-client-key-{i:04d}",
                "connections": ["api"],
                "rateLimit": {"requests": 10_000_000, "per": 1},
            }
            for i in range(clients)
        ]
        connection["policy"] = {
            "allow": [
                {"methods": ["POST"], "paths": ["/admin/**"]},
                {"methods": ["GET", "HEAD"], "paths": ["/repos/*/*/issues", "/user"]},
                {"methods": ["GET"], "paths": ["/items/**"]},
            ]
        }
    return config


def check_round(clients: int, samples: int) -> float:
    """Median µs of `authenticate` + `authorize` for the bench's request, the key being the
    last of `clients` clients."""
    config = proxy_config(0, "http://127.0.0.1:9", Path("unused.db"), True, clients)
    config["listen"] = "127.0.0.1:8080"
    runtime = build_runtime(config, {})
    access = runtime.access
    assert access is not None
    connection = runtime.connections[0]
    key = f"bench-client-key-{clients - 1:04d}".encode()
    headers = [(b"Host", b"proxy.test"), (b"User-Agent", b"bench"), (b"X-Api-Key", key)]
    timings = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        caller = access.authenticate(headers)
        access.authorize(caller, connection, "GET", "/items/42")
        timings.append(time.perf_counter_ns() - started)
    return statistics.median(timings) / 1000


def check_costs(rounds: int = 9, samples: int = 20_000) -> dict[int, list[float]]:
    """Per client count, the median µs of each of `rounds` alternating rounds."""
    sizes = [1, CLIENTS, 1000]
    costs: dict[int, list[float]] = {size: [] for size in sizes}
    for i in range(rounds):
        for size in sizes if i % 2 == 0 else reversed(sizes):
            costs[size].append(check_round(size, samples))
    return costs


async def main(rounds: int, count: int, conc: int, budget: float) -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", tiny)
    async with local_upstream(app) as upstream:

        def open_config(port: int, tmp: Path) -> dict[str, Any]:
            return proxy_config(port, upstream, tmp / "s.db", with_clients=False)

        def clients_config(port: int, tmp: Path) -> dict[str, Any]:
            return proxy_config(port, upstream, tmp / "s.db", with_clients=True)

        async with proxy_process(open_config) as open_base:
            async with proxy_process(clients_config) as clients_base:
                urls = {
                    "open": f"{open_base}/api/items/42",
                    "clients": f"{clients_base}/api/items/42",
                }
                results = await alternate(
                    urls,
                    rounds=rounds,
                    count=count,
                    conc=conc,
                    budget=budget,
                    headers={"X-Api-Key": KEY},
                )
    done = len(results["clients"])
    heading = f"{done} alternating rounds of {count} tiny GETs, concurrency {conc}"
    ratio = print_table(results, heading)
    print(f"clients / open = {ratio:.3f}")
    per_request = 1e6 / statistics.median(results["clients"])
    print(f"against {per_request:.0f} us per request end to end, the check in process (3 rules):")
    for size, values in check_costs().items():
        print(
            f"  {size:>5} clients: median {statistics.median(values):.2f} us per request "
            f"(round medians {min(values):.2f}-{max(values):.2f})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget for the rounds")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.requests, args.concurrency, args.seconds))
