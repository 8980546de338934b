"""Memory: a 1 GiB chunk-signed S3 upload (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`) through the
proxy, every chunk signature re-signed as it passes; beside it the same upload as
`UNSIGNED-PAYLOAD` (streamed untouched), in the same run.

The client streams a generated aws-chunked body (64 KiB chunks, an SDK's placeholder signatures)
and never holds it; the upstream, in this process, checks every chunk signature it receives
against the proxy's key as S3 would, and counts the bytes. The proxy runs as a real subprocess
(`python -m proxy run`); its RSS is sampled every 0.2 s during each upload (`VmRSS`) and its
high-water mark read after (`VmHWM`, Linux). Run: `python bench/aws_chunked_1gib.py
[--size-mib N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from ab import free_port, wait_ready
from aiohttp import web

CHUNK = 64 * 1024  # what the AWS SDKs send
LIMIT_BYTES = 150 * 10**6  # the same bound as memory_1gib.py
KEY_ID, SECRET, REGION = "AKIDBENCH", "bench-secret-key", "us-east-1"
EMPTY = hashlib.sha256(b"").hexdigest()
PLACEHOLDER = "0" * 64
RESULTS = web.AppKey("results", list)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


class ChainChecker:
    """Reads an aws-chunked body as it arrives and checks each chunk signature (the AWS
    document's formula, written out here independently of the proxy)."""

    def __init__(self, seed: str, timestamp: str, scope: str) -> None:
        date, region, service, _ = scope.split("/")
        key = ("AWS4" + SECRET).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self.key, self.prefix = key, f"AWS4-HMAC-SHA256-PAYLOAD\n{timestamp}\n{scope}\n"
        self.previous, self.buffer, self.checked, self.done = seed, bytearray(), 0, False

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while not self.done:
            end = self.buffer.find(b"\r\n", 0, 120)
            if end < 0:
                return
            size_text, _, signature = bytes(self.buffer[:end]).partition(b";chunk-signature=")
            size = int(size_text, 16)
            if len(self.buffer) < end + 2 + size + 2:
                return
            chunk = bytes(self.buffer[end + 2 : end + 2 + size])
            del self.buffer[: end + 2 + size + 2]
            text = f"{self.prefix}{self.previous}\n{EMPTY}\n{hashlib.sha256(chunk).hexdigest()}"
            expected = hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()
            assert signature.decode() == expected, f"chunk {self.checked}: bad signature"
            self.previous, self.checked, self.done = expected, self.checked + 1, size == 0


def upstream_app() -> web.Application:
    async def sink(request: web.Request) -> web.Response:
        checker = None
        if request.headers.get("x-amz-content-sha256", "").startswith("STREAMING-AWS4"):
            authorization = request.headers["Authorization"]
            seed = authorization.rsplit("Signature=", 1)[1]
            scope = authorization.split("Credential=")[1].split(",")[0].split("/", 1)[1]
            checker = ChainChecker(seed, request.headers["X-Amz-Date"], scope)
        total = 0
        async for data in request.content.iter_any():
            total += len(data)
            if checker is not None:
                checker.feed(data)
        if checker is not None:
            assert checker.done, "the body ended before its final chunk"
        request.app[RESULTS].append((total, checker.checked if checker else 0))
        return web.json_response({"received": total})

    app = web.Application(client_max_size=2**40)
    app[RESULTS] = []
    app.router.add_put("/{key:.*}", sink)
    return app


def chunked_length(size: int) -> int:
    line = len(f"{CHUNK:x};chunk-signature={PLACEHOLDER}\r\n") + 2
    last = len(f"0;chunk-signature={PLACEHOLDER}\r\n") + 2
    return (size // CHUNK) * (line + CHUNK) + last


async def aws_chunked(size: int) -> AsyncIterator[bytes]:
    data = b"\xcd" * CHUNK
    piece = f"{CHUNK:x};chunk-signature={PLACEHOLDER}\r\n".encode() + data + b"\r\n"
    for _ in range(size // CHUNK):
        yield piece
    yield f"0;chunk-signature={PLACEHOLDER}\r\n\r\n".encode()


async def plain(size: int) -> AsyncIterator[bytes]:
    block = b"\xcd" * (4 * CHUNK)
    for _ in range(size // len(block)):
        yield block


def headers(mode: str, size: int) -> dict[str, str]:
    sent = {
        # An SDK given a placeholder key: the proxy replaces all of this.
        "Authorization": f"AWS4-HMAC-SHA256 Credential=placeholder/20200101/{REGION}/s3/"
        "aws4_request, SignedHeaders=host, Signature=" + "9" * 64,
        "X-Amz-Date": "20200101T000000Z",
        "x-amz-content-sha256": mode,
    }
    if mode.startswith("STREAMING"):
        sent["Content-Encoding"] = "aws-chunked"
        sent["x-amz-decoded-content-length"] = str(size)
        sent["Content-Length"] = str(chunked_length(size))
    else:
        sent["Content-Length"] = str(size)
    return sent


async def sample_rss(pid: int, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(status_kib(pid, "VmRSS"))
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except TimeoutError:
            pass


async def upload(
    session: aiohttp.ClientSession, url: str, pid: int, mode: str, size: int
) -> tuple[float, list[int], int]:
    samples: list[int] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, samples, stop))
    body = aws_chunked(size) if mode.startswith("STREAMING") else plain(size)
    started = time.perf_counter()
    try:
        async with session.put(url, data=body, headers=headers(mode, size)) as response:
            assert response.status == 200, (response.status, await response.text())
            received = int((await response.json())["received"])
    finally:
        stop.set()
        await sampler
    return time.perf_counter() - started, samples, received


async def run(size: int) -> int:
    upstream_port, proxy_port = free_port(), free_port()
    app = upstream_app()
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(
            f"listen: 127.0.0.1:{proxy_port}\n"
            "log: {level: warning}\n"
            "connections:\n"
            "  - name: s3\n"
            f"    baseUrl: http://127.0.0.1:{upstream_port}\n"
            "    credentials:\n"
            f"      - authSchemeConfig: {{type: aws-sigv4, awsSigV4: {{region: {REGION},"
            " service: s3}}\n"
            "        credential:\n"
            "          type: aws\n"
            f"          data: {{aws: {{accessKeyId: {KEY_ID}, secretAccessKey: {SECRET}}}}}\n",
            encoding="utf-8",
        )
        proxy = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "run", "--config", str(config)
        )
        rows = []
        try:
            timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                base = f"http://127.0.0.1:{proxy_port}"
                await wait_ready(base + "/healthz")
                idle_kib = status_kib(proxy.pid, "VmRSS")
                for mode in ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "UNSIGNED-PAYLOAD"):
                    seconds, samples, received = await upload(
                        session, f"{base}/s3/bench-bucket/object", proxy.pid, mode, size
                    )
                    rows.append((mode, seconds, samples, received))
                peak_kib = status_kib(proxy.pid, "VmHWM")
        finally:
            proxy.terminate()
            await proxy.wait()
            await runner.cleanup()

    mib = size / 2**20
    print(f"decoded size: {mib:,.0f} MiB per upload, {CHUNK // 1024} KiB chunks")
    print(f"proxy RSS idle: {idle_kib / 1024:.1f} MiB")
    for (mode, seconds, samples, received), (_, chunks) in zip(rows, app[RESULTS], strict=True):
        low, high = min(samples) / 1024, max(samples) / 1024
        checked = f", {chunks:,} chunk signatures checked by the upstream" if chunks else ""
        print(
            f"{mode:36} {seconds:6.1f} s ({mib / seconds:5.0f} MiB/s)  RSS during upload "
            f"{low:.1f}..{high:.1f} MiB ({len(samples)} samples); upstream got {received:,} "
            f"bytes{checked}"
        )
    signed_s, unsigned_s = rows[0][1], rows[1][1]
    print(f"chunk-signed / unsigned time: {signed_s / unsigned_s:.2f}x")
    peak = peak_kib * 1024
    verdict = "OK" if peak < LIMIT_BYTES else "OVER"
    print(f"proxy peak RSS (VmHWM) {peak / 10**6:.1f} MB vs limit {LIMIT_BYTES / 10**6:.0f} MB: "
          f"{verdict}")  # fmt: skip
    return 0 if verdict == "OK" else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="decoded body size [1024]")
    args = parser.parse_args()
    if not os.path.exists("/proc/self/status"):
        sys.exit("needs Linux /proc to read the proxy's RSS")
    sys.exit(asyncio.run(run(args.size_mib * 2**20)))


if __name__ == "__main__":
    main()
