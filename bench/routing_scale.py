"""Routing scale: start-up and route lookup with 1 vs 10,000 connections.

Builds both configs in one run, times `build_runtime` (parse-free: validation + compilation of
every connection) and the median cost of one `Router.resolve` for a request deep in the path,
and prints them side by side with the ratio. Run: `python bench/routing_scale.py`.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import build_router
from proxy.dataplane.routing import Router

SIZES = (1, 10_000)
LOOKUPS = 20_000  # per sample
SAMPLES = 15


def config(count: int) -> dict[str, Any]:
    credential = {
        "authSchemeConfig": {"type": "api-key", "apiKey": {"name": "X-Key", "in": "header"}},
        "credential": {"type": "string", "data": {"string": {"value": "k"}}},
    }
    return {
        "connections": [
            {
                "name": f"svc{i}",
                "route": f"/team{i % 100}/svc{i}",
                "baseUrl": f"https://svc{i}.example.com/api",
                "credentials": [credential],
            }
            for i in range(count)
        ]
    }


def resolve_ns(router: Router[Any], path: str) -> float:
    started = time.perf_counter_ns()
    for _ in range(LOOKUPS):
        router.resolve(path)
    return (time.perf_counter_ns() - started) / LOOKUPS


def main() -> None:
    startup: dict[int, float] = {}
    routers: dict[int, tuple[Router[Any], str]] = {}
    for count in SIZES:
        tree = config(count)
        started = time.perf_counter()
        runtime = build_runtime(tree, {})
        startup[count] = time.perf_counter() - started
        last = count - 1
        # A deep request path for the last connection: every segment is one dict probe.
        path = f"/team{last % 100}/svc{last}/repos/octo/hello/issues/42/comments"
        router = build_router(runtime)
        assert router.resolve(path) is not None
        routers[count] = (router, path)
    # Interleaved samples, so machine noise hits both sizes alike.
    samples: dict[int, list[float]] = {count: [] for count in SIZES}
    for _ in range(SAMPLES):
        for count in SIZES:
            samples[count].append(resolve_ns(*routers[count]))
    median = {count: statistics.median(values) for count, values in samples.items()}

    print(f"{'connections':>12} {'start-up (s)':>13} {'resolve (ns, median)':>21}")
    for count in SIZES:
        print(f"{count:>12,} {startup[count]:>13.3f} {median[count]:>21.0f}")
    small, big = SIZES[0], SIZES[-1]
    print(
        f"ratio {big:,} / {small}: start-up x{startup[big] / startup[small]:,.0f} (linear in the "
        f"number of connections), resolve x{median[big] / median[small]:.2f} (1.00 = no growth)"
    )


if __name__ == "__main__":
    main()
