"""Memory: 1 GiB up and 1 GiB down through the proxy; print its peak RSS.

A local upstream (a sink that counts uploaded bytes, a source that streams 1 GiB) runs in this
process; the proxy runs as a real subprocess (`python -m proxy run --config <tmp>.yaml`). The
upload is streamed from a generator and the download is read chunk by chunk, so neither side of
the bench holds the body. The proxy's peak RSS is its kernel high-water mark (`VmHWM` in
/proc/PID/status, Linux). Run: `python bench/memory_1gib.py [--size-mib N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from ab import free_port, wait_ready
from aiohttp import web

CHUNK = 256 * 1024
LIMIT_BYTES = 150 * 10**6  # under 150 MB
UPLOADED = web.AppKey("uploaded", list)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def upstream_app(size: int) -> web.Application:
    async def sink(request: web.Request) -> web.Response:
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
        request.app[UPLOADED].append(total)
        return web.json_response({"received": total})

    async def source(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        block = b"\xab" * CHUNK
        for _ in range(size // CHUNK):
            await response.write(block)
        await response.write_eof()
        return response

    app = web.Application(client_max_size=size + 1)
    app[UPLOADED] = []
    app.router.add_post("/sink", sink)
    app.router.add_get("/source", source)
    return app


async def generate(size: int) -> AsyncIterator[bytes]:
    block = b"\xcd" * CHUNK
    for _ in range(size // CHUNK):
        yield block


async def run(size: int) -> int:
    upstream_port, proxy_port = free_port(), free_port()
    runner = web.AppRunner(upstream_app(size))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(
            f"listen: 127.0.0.1:{proxy_port}\n"
            "log: {level: warning}\n"
            "connections:\n"
            "  - name: bench\n"
            f"    baseUrl: http://127.0.0.1:{upstream_port}\n"
            "    credentials:\n"
            "      - authSchemeConfig: {type: bearer}\n"
            "        credential: {type: string, data: {string: {value: bench-token}}}\n",
            encoding="utf-8",
        )
        proxy = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "run", "--config", str(config)
        )
        try:
            timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                base = f"http://127.0.0.1:{proxy_port}"
                await wait_ready(base + "/healthz")
                idle_kib = status_kib(proxy.pid, "VmHWM")

                started = time.perf_counter()
                async with session.post(base + "/bench/sink", data=generate(size)) as response:
                    assert response.status == 200, response.status
                    received = (await response.json())["received"]
                upload_s = time.perf_counter() - started
                assert received == size, (received, size)
                after_upload_kib = status_kib(proxy.pid, "VmHWM")

                started = time.perf_counter()
                downloaded = 0
                async with session.get(base + "/bench/source") as response:
                    assert response.status == 200, response.status
                    async for chunk in response.content.iter_chunked(CHUNK):
                        downloaded += len(chunk)
                download_s = time.perf_counter() - started
                assert downloaded == size, (downloaded, size)
                peak_kib = status_kib(proxy.pid, "VmHWM")
        finally:
            proxy.terminate()
            await proxy.wait()
            await runner.cleanup()

    mib = size / 2**20
    print(f"body size: {mib:,.0f} MiB each way (streamed; upstream got {received:,} bytes)")
    print(f"upload:   {upload_s:6.1f} s  ({mib / upload_s:6.0f} MiB/s)")
    print(f"download: {download_s:6.1f} s  ({mib / download_s:6.0f} MiB/s)")
    print(
        f"proxy peak RSS (VmHWM): idle {idle_kib / 1024:.1f} MiB, after upload "
        f"{after_upload_kib / 1024:.1f} MiB, after download {peak_kib / 1024:.1f} MiB"
    )
    peak = peak_kib * 1024
    verdict = "OK" if peak < LIMIT_BYTES else "OVER"
    print(f"peak {peak / 10**6:.1f} MB vs limit {LIMIT_BYTES / 10**6:.0f} MB: {verdict}")
    return 0 if verdict == "OK" else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="body size each way [1024]")
    args = parser.parse_args()
    if not os.path.exists("/proc/self/status"):
        sys.exit("needs Linux /proc to read the proxy's peak RSS")
    sys.exit(asyncio.run(run(args.size_mib * 2**20)))


if __name__ == "__main__":
    main()
