"""Cost of a `secret` placeholder connection on the tiny-GET path, side by side with `bearer`.

Two measurements in one run:

1. End to end: two `python -m proxy run` subprocesses on the same local upstream (in this
   process, answering `ok`), one whose connection is a `bearer` credential (the lean path: the
   client's `Authorization` dropped, a constant header added), one whose connection is a
   `secret` credential for `Authorization` (every request checked by the placeholder guard, then
   the general path swaps the placeholder). Every request carries `Authorization: Bearer
   <placeholder>`, as an SDK given the placeholder sends it. Rounds alternate, bounded in count
   and time; the script prints the median req/s of each and the ratio secret / bearer.
2. In process: the median time of the guard's check itself on a typical SDK request head
   (9 header fields), with the placeholder in its declared header and without any, against
   1 and 50 bound placeholders, in alternating rounds.

A proxy without any `secret` connection has no guard at all (one `is None` per request); that
path is compared with the code before the feature by `run.py --baseline`.

Run: `python bench/secret_vs_bearer.py` (`--rounds`, `--requests`, `--concurrency`, `--seconds`).
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

PLACEHOLDER = "sk-bench-placeholder-0001"
SECRET = "sk-bench-real-not-a-secret"


async def tiny(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def credential(kind: str, index: int = 1) -> dict[str, Any]:
    value = {"type": "string", "data": {"string": {"value": f"{SECRET}-{index}"}}}
    if kind == "bearer":
        return {"authSchemeConfig": {"type": "bearer"}, "credential": value}
    placeholder = PLACEHOLDER if index == 1 else f"sk-bench-placeholder-{index:04d}"
    auth = {"type": "secret", "secret": {"placeholder": placeholder, "headers": ["Authorization"]}}
    return {"authSchemeConfig": auth, "credential": value}


def proxy_config(port: int, upstream: str, store: Path, kind: str) -> dict[str, Any]:
    return {
        "listen": f"127.0.0.1:{port}",
        "store": {"path": str(store)},
        "log": {"level": "warning"},
        "connections": [{"name": "api", "baseUrl": upstream, "credentials": [credential(kind)]}],
    }


HEAD = [
    (b"Host", b"127.0.0.1:8080"),
    (b"Accept-Encoding", b"gzip, deflate"),
    (b"Connection", b"keep-alive"),
    (b"Accept", b"application/json"),
    (b"Content-Type", b"application/json"),
    (b"User-Agent", b"OpenAI/Python 1.99.0"),
    (b"X-Stainless-Lang", b"python"),
    (b"X-Stainless-Package-Version", b"1.99.0"),
]


def check_round(bound: int, with_placeholder: bool, samples: int) -> float:
    """Median µs of one guard check of `HEAD` (+ Authorization), `bound` placeholders bound."""
    connections = [
        {"name": f"c{i}", "baseUrl": "http://127.0.0.1:9", "credentials": [credential("secret", i)]}
        for i in range(1, bound + 1)
    ]
    runtime = build_runtime({"connections": connections}, {})
    guard = runtime.placeholders
    assert guard is not None
    connection_id = runtime.connections[0].id
    value = f"Bearer {PLACEHOLDER}" if with_placeholder else "Bearer sk-the-clients-own"
    headers = [*HEAD, (b"Authorization", value.encode())]
    target = "/c1/v1/chat/completions?stream=false"
    timings = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        guard.check(connection_id, target, headers)
        timings.append(time.perf_counter_ns() - started)
    return statistics.median(timings) / 1000


def check_costs(rounds: int = 9, samples: int = 20_000) -> dict[tuple[int, bool], list[float]]:
    cases = [(1, True), (1, False), (50, True), (50, False)]
    costs: dict[tuple[int, bool], list[float]] = {case: [] for case in cases}
    for i in range(rounds):
        for case in cases if i % 2 == 0 else reversed(cases):
            costs[case].append(check_round(*case, samples))
    return costs


async def main(rounds: int, count: int, conc: int, budget: float) -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", tiny)
    async with local_upstream(app) as upstream:

        def bearer_config(port: int, tmp: Path) -> dict[str, Any]:
            return proxy_config(port, upstream, tmp / "s.db", "bearer")

        def secret_config(port: int, tmp: Path) -> dict[str, Any]:
            return proxy_config(port, upstream, tmp / "s.db", "secret")

        async with proxy_process(bearer_config) as bearer_base:
            async with proxy_process(secret_config) as secret_base:
                urls = {
                    "bearer": f"{bearer_base}/api/items/42",
                    "secret": f"{secret_base}/api/items/42",
                }
                results = await alternate(
                    urls,
                    rounds=rounds,
                    count=count,
                    conc=conc,
                    budget=budget,
                    headers={"Authorization": f"Bearer {PLACEHOLDER}"},
                )
    done = len(results["secret"])
    heading = f"{done} alternating rounds of {count} tiny GETs, concurrency {conc}"
    ratio = print_table(results, heading)
    print(f"secret / bearer = {ratio:.3f}")
    per_request = 1e6 / statistics.median(results["secret"])
    print(f"against {per_request:.0f} us per request end to end, the guard's check in process:")
    for (bound, with_placeholder), values in check_costs().items():
        what = "placeholder in Authorization" if with_placeholder else "no placeholder"
        print(
            f"  {bound:>3} bound, {what:<28}: median {statistics.median(values):.2f} us "
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
