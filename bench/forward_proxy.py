"""What forward-proxy mode costs (docs/forward-proxy.md), side by side in one run.

One `python -m proxy run` subprocess with `forwardProxy.enabled`, one bearer connection to a
local upstream (in this process, answering `ok`), bound to the upstream's address and to
`*.bench.test`. Three measurements:

1. Requests per second (and the proxy's CPU per request, from `/proc/PID/stat`), tiny GETs on
   kept-alive connections, through a warm tunnel
   (`HTTPS_PROXY` style: aiohttp's client sends CONNECT once per connection, then requests
   inside TLS) vs the reverse mode (`http://proxy/api/...`), same connection, same upstream,
   same client library, alternating rounds; medians and the ratio tunnel / reverse. The
   client's own TLS work is in the tunnel's figure: that is what an application pays.
2. The cost of a new tunnel, end to end from this process: TCP connect, CONNECT, 200, TLS
   handshake, in alternating rounds, to one host whose leaf is cached vs to a new host each
   time (`hN.bench.test`, its leaf minted on the spot); medians and the difference. Beside it,
   in process, the median time to mint a leaf and its TLS context vs a cache hit.
3. Memory per open tunnel: the proxy's RSS (`/proc/PID/status`, Linux) before and after
   opening N intercepted tunnels (TLS up, one request served in each, left open), then N blind
   tunnels (`unmatched: tunnel` to a local TCP server), per tunnel.

Run: `python bench/forward_proxy.py` (`--rounds`, `--requests`, `--concurrency`, `--seconds`,
`--handshakes`, `--tunnels`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from ab import free_port, local_upstream, print_table, round_rps, wait_ready
from aiohttp import web

from proxy.config.hosts import parse_host_pattern
from proxy.intercept.authority import generate_root
from proxy.intercept.issuer import Issuer


async def tiny(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def proxy_config(port: int, upstream_port: int, tmp: Path) -> dict[str, Any]:
    return {
        "listen": f"127.0.0.1:{port}",
        "store": {"path": str(tmp / "state.db")},
        "log": {"level": "warning"},
        "forwardProxy": {"enabled": True, "unmatched": "tunnel", "tunnelPrivateAddresses": True},
        "connections": [
            {
                "name": "api",
                "baseUrl": f"http://127.0.0.1:{upstream_port}",
                "hosts": [f"127.0.0.1:{upstream_port}", f"*.bench.test:{upstream_port}"],
                "credentials": [
                    {
                        "authSchemeConfig": {"type": "bearer"},
                        "credential": {
                            "type": "string",
                            "data": {"string": {"value": "bench-not-a-secret"}},
                        },
                    }
                ],
            }
        ],
    }


@asynccontextmanager
async def proxy(upstream_port: int) -> AsyncIterator[tuple[int, int, str]]:
    """The proxy subprocess: (its port, its pid, its CA certificate PEM)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "proxy.yaml"
        config.write_text(yaml.safe_dump(proxy_config(port, upstream_port, Path(tmp))))
        ca = subprocess.run(
            [sys.executable, "-m", "proxy", "ca", "--config", str(config)],
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "run", "--config", str(config), cwd=tmp
        )
        try:
            await wait_ready(f"http://127.0.0.1:{port}/healthz")
            yield port, process.pid, ca
        finally:
            process.terminate()
            await process.wait()


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time (`/proc/PID/stat`, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS (Linux only)")


async def requests_per_second(
    port: int,
    pid: int,
    upstream_port: int,
    ca: str,
    rounds: int,
    count: int,
    conc: int,
    budget: float,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Req/s per round of each case, and the proxy's CPU µs per request in that round."""
    context = ssl.create_default_context(cadata=ca)
    proxy_url = f"http://127.0.0.1:{port}"
    cases = {
        "reverse": (f"{proxy_url}/api/items/42", None),
        "tunnel": (f"https://127.0.0.1:{upstream_port}/items/42", proxy_url),
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    sessions = {
        name: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=conc, ssl=context),
            proxy=via,
        )
        for name, (_, via) in cases.items()
    }
    try:
        for name, (url, _) in cases.items():  # warm-up: connections (and tunnels) opened
            await round_rps(sessions[name], "GET", url, None, max(count // 4, 1), conc)
        deadline = time.monotonic() + budget
        names = list(cases)
        for i in range(rounds):
            if time.monotonic() > deadline:
                print(f"time budget reached after {i} rounds")
                break
            for name in names if i % 2 == 0 else reversed(names):
                url = cases[name][0]
                before = cpu_seconds(pid)
                results[name].append(await round_rps(sessions[name], "GET", url, None, count, conc))
                cpu[name].append((cpu_seconds(pid) - before) * 1e6 / count)
    finally:
        for session in sessions.values():
            await session.close()
    return results, cpu


async def open_tunnel(
    port: int, target: str, context: ssl.SSLContext | None, server_hostname: str | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"CONNECT {target}: {head[:40]!r}")
    if context is not None:
        await writer.start_tls(context, server_hostname=server_hostname)
    return reader, writer


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (OSError, ssl.SSLError, TimeoutError):
        pass


async def handshakes(
    port: int, upstream_port: int, ca: str, rounds: int, per_round: int
) -> dict[str, list[float]]:
    """Median ms per new tunnel (TCP + CONNECT + TLS) per round, cached vs fresh leaf."""
    context = ssl.create_default_context(cadata=ca)
    results: dict[str, list[float]] = {"cached leaf": [], "new leaf": []}
    fresh = 0
    for host in ("h0.bench.test",):  # the cached host's leaf, minted before the rounds
        _, writer = await open_tunnel(port, f"{host}:{upstream_port}", context, host)
        await close(writer)
    for i in range(rounds):
        for name in results if i % 2 == 0 else reversed(list(results)):
            timings = []
            for _ in range(per_round):
                if name == "cached leaf":
                    host = "h0.bench.test"
                else:
                    fresh += 1
                    host = f"h{fresh}-{time.monotonic_ns()}.bench.test"
                started = time.perf_counter()
                _, writer = await open_tunnel(port, f"{host}:{upstream_port}", context, host)
                timings.append((time.perf_counter() - started) * 1000)
                await close(writer)
            results[name].append(statistics.median(timings))
    return results


def mint_costs(rounds: int = 7, samples: int = 50) -> tuple[float, float]:
    """In process: median ms to mint a leaf and its TLS context, and µs for a cache hit."""
    issuer = Issuer(generate_root(), [parse_host_pattern("*.bench.test", 443)])
    mint, hit = [], []
    for r in range(rounds):
        timings = []
        for i in range(samples):
            started = time.perf_counter_ns()
            issuer.context_for(f"m{r}-{i}.bench.test")
            timings.append(time.perf_counter_ns() - started)
        mint.append(statistics.median(timings) / 1e6)
        timings = []
        for _ in range(samples * 20):
            started = time.perf_counter_ns()
            issuer.context_for("m0-0.bench.test")
            timings.append(time.perf_counter_ns() - started)
        hit.append(statistics.median(timings) / 1e3)
    return statistics.median(mint), statistics.median(hit)


@asynccontextmanager
async def tcp_sink() -> AsyncIterator[int]:
    """A TCP server that reads and drops, for blind tunnels."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def memory_per_tunnel(
    port: int, pid: int, upstream_port: int, ca: str, count: int
) -> tuple[float, float]:
    """KiB of proxy RSS per open intercepted tunnel, and per open blind tunnel."""
    context = ssl.create_default_context(cadata=ca)
    await asyncio.sleep(0.5)
    before = rss_kib(pid)
    opened = []
    for i in range(count):
        host = f"t{i}.bench.test"
        reader, writer = await open_tunnel(port, f"{host}:{upstream_port}", context, host)
        writer.write(f"GET /x HTTP/1.1\r\nHost: {host}:{upstream_port}\r\n\r\n".encode())
        await reader.readuntil(b"ok")
        opened.append(writer)
    await asyncio.sleep(0.5)
    intercepted = (rss_kib(pid) - before) / count
    async with tcp_sink() as sink:
        middle = rss_kib(pid)
        blind = []
        for _ in range(count):
            _, writer = await open_tunnel(port, f"127.0.0.1:{sink}", None, None)
            writer.write(b"x" * 100)
            blind.append(writer)
        await asyncio.sleep(0.5)
        per_blind = (rss_kib(pid) - middle) / count
        for writer in [*opened, *blind]:
            await close(writer)
    return intercepted, per_blind


async def main(args: argparse.Namespace) -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", tiny)
    async with local_upstream(app) as upstream:
        upstream_port = int(upstream.rsplit(":", 1)[1])
        async with proxy(upstream_port) as (port, pid, ca):
            rps, cpu = await requests_per_second(
                port,
                pid,
                upstream_port,
                ca,
                args.rounds,
                args.requests,
                args.concurrency,
                args.seconds,
            )
            shakes = await handshakes(port, upstream_port, ca, args.rounds, args.handshakes)
            memory = await memory_per_tunnel(port, pid, upstream_port, ca, args.tunnels)
    done = len(rps["tunnel"])
    heading = f"{done} alternating rounds of {args.requests} tiny GETs, c={args.concurrency}"
    ratio = print_table(rps, heading)
    print(f"tunnel / reverse = {ratio:.3f}")
    for name, values in cpu.items():
        print(f"  proxy CPU per request, {name:<8}: median {statistics.median(values):.0f} us")
    print(f"\nnew tunnel (TCP, CONNECT, TLS handshake): median ms, rounds of {args.handshakes}")
    for name, values in shakes.items():
        print(
            f"  {name:<12} median {statistics.median(values):6.2f} ms "
            f"(rounds {min(values):.2f}-{max(values):.2f})"
        )
    extra = statistics.median(shakes["new leaf"]) - statistics.median(shakes["cached leaf"])
    print(f"  a new leaf adds {extra:.2f} ms")
    mint, hit = mint_costs()
    print(f"in process: mint a leaf + its TLS context {mint:.2f} ms, cache hit {hit:.2f} us")
    intercepted, blind = memory
    print(
        f"\nproxy RSS per open tunnel ({args.tunnels} each): intercepted {intercepted:.1f} KiB, "
        f"blind {blind:.1f} KiB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget for the rounds")
    parser.add_argument("--handshakes", type=int, default=30, help="new tunnels per round")
    parser.add_argument("--tunnels", type=int, default=300, help="tunnels held open for RSS")
    asyncio.run(main(parser.parse_args()))
