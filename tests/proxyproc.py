"""`python -m proxy run` as a real process for a test: started on a config file, its stderr
collected as it comes (a full pipe would block the proxy's logging, and so the proxy), ready once
`/healthz` answers, stopped with SIGTERM on exit (which must end it with 0)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.test_cli import wait_healthy

TIMEOUT = 20.0


class ProxyProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.stderr = b""


@asynccontextmanager
async def proxy_process(
    config: Path, port: int, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[ProxyProcess]:
    """The proxy on `config` (whose data plane listens on `port`), with extra `run` `args` and
    `env`; no `$SIGNING_PROXY_*` of the test's own environment leaks in."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "run", "--config", str(config), *args,
        cwd=config.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SIGNING_PROXY_")},
            **(env or {}),
        },
    )  # fmt: skip
    proxy = ProxyProcess(process, port)

    async def collect() -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.read(65536):
            proxy.stderr += chunk

    reader = asyncio.ensure_future(collect())
    try:
        assert await wait_healthy(proxy.base + "/healthz") == 200
        yield proxy
        assert process.returncode is None, "the proxy stopped by itself"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
        await asyncio.wait_for(reader, TIMEOUT)
    finally:
        reader.cancel()
        if process.returncode is None:
            process.kill()
            await process.wait()
