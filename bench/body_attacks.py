"""Other clients' latency and the proxy's RSS during the trailer flood and the slow-body flood,
side by side with a quiet baseline, against a real `signing-proxy run` process.

Three phases of `--seconds` each on one proxy: quiet (only the probe), three connections
feeding endless trailer values (each cut at `limits.maxHeaderBytes` with 431), forty clients
dripping a body one byte every 0.25 s (each shed after `timeouts.clientBody`, 1 s here, and
replaced). The probe sends a request through the proxy every 20 ms on a new connection.

    python bench/body_attacks.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's tests

from tests.dataplane.test_body_attacks import (  # noqa: E402
    Watch,
    dripper,
    rss_bytes,
    running,
    trailer_attacker,
    watched,
)

MiB = 1024 * 1024


def row(name: str, watch: Watch, extra: str = "") -> str:
    lat = sorted(watch.latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return (
        f"{name:<10} probes={len(lat):4d} failed={watch.failures:2d} "
        f"median={statistics.median(lat) * 1000:6.1f} ms p99={p99 * 1000:6.1f} ms "
        f"max={lat[-1] * 1000:6.1f} ms  rss start={watch.rss[0] / MiB:5.1f} "
        f"peak={max(watch.rss) / MiB:5.1f} MiB{extra}"
    )


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        extra = {"timeouts": {"clientBody": 1.0}, "limits": {"maxHeaderBytes": 65536}}
        async with running(Path(tmp), **extra) as proxy:
            port = proxy.ports[0]

            async def quiet() -> None:
                await asyncio.sleep(seconds)

            async def trailers() -> list[list[tuple[int, int]]]:
                until = time.monotonic() + seconds
                return await asyncio.gather(*(trailer_attacker(port, until) for _ in range(3)))

            async def drips() -> None:
                until = time.monotonic() + seconds
                while time.monotonic() < until:
                    await asyncio.gather(
                        *(dripper(port, asyncio.Event(), []) for _ in range(40)),
                        return_exceptions=True,
                    )

            phases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                ("quiet", quiet),
                ("trailers", trailers),
                ("slow body", drips),
            ]
            for name, attack in phases:
                task = asyncio.ensure_future(attack())
                watch = await watched(proxy, task)
                note = ""
                if name == "trailers":
                    outcomes = [o for per in task.result() for o in per]  # type: ignore[attr-defined]
                    statuses = {status for status, _ in outcomes}
                    note = f"  connections={len(outcomes)} answers={sorted(statuses)}"
                print(row(name, watch, note), flush=True)
            print(f"rss after all phases: {rss_bytes(proxy.process.pid) / MiB:.1f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main(parser.parse_args().seconds))
