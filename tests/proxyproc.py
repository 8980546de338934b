"""`python -m proxy run` as a real process for a test: started on a config file, its stderr
collected as it comes (a full pipe would block the proxy's logging, and so the proxy), ready once
every listener is logged and `/healthz` answers, stopped with SIGTERM on exit (which must end it
with 0).

The config's listeners name port 0: the kernel picks each port as the proxy binds it, and the
test reads it back from the proxy's "listening on" log lines. A port picked by the test and bound
later by the proxy could be taken by another process in between (a busy machine runs many suites
and their outgoing connections draw from the same range). Only a proxy whose log level hides
those lines is told its ports (`free_port()`)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from tests.cli.procs import wait_answering

# Bounds a broken proxy only: on a loaded 2-core machine a start alone has taken over 20 s.
TIMEOUT = 60.0
LISTENING = re.compile(rb"listening on http://(?:\[[^\]]*\]|[^\s:/\"]+):(\d+)")


def listening_ports(output: bytes) -> list[int]:
    """The ports the proxy's "listening on" lines name, each once, in the order first logged: the
    data plane's, then the admin API's, then the demo echo's (`--with-echo`). Under `--workers`
    every worker logs the data-plane port they share, and only the first serves the others, so
    the order of first appearance holds there too."""
    ports: list[int] = []
    for found in LISTENING.finditer(output):
        port = int(found[1])
        if port not in ports:
            ports.append(port)
    return ports


class ProxyProcess:
    def __init__(self, process: asyncio.subprocess.Process, ports: Sequence[int]) -> None:
        self.process = process
        self.stderr = b""
        self.ports = list(ports)

    @property
    def base(self) -> str:
        """The data plane's URL."""
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def admin(self) -> str:
        """The admin API's URL (`listeners=2`)."""
        return f"http://127.0.0.1:{self.ports[1]}"

    async def wait_listening(self, listeners: int) -> None:
        """Until `listeners` ports are logged; fails at once if the proxy exits first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while len(ports := listening_ports(self.stderr)) < listeners:
            if self.process.returncode is not None or loop.time() > deadline:
                raise AssertionError(f"the proxy did not start listening: {self.stderr!r}")
            await asyncio.sleep(0.05)
        self.ports = ports


@asynccontextmanager
async def proxy_process(
    config: Path,
    *args: str,
    listeners: int = 1,
    ports: Sequence[int] = (),
    env: dict[str, str] | None = None,
    starting: Callable[[ProxyProcess], Awaitable[None]] | None = None,
) -> AsyncIterator[ProxyProcess]:
    """The proxy on `config`, with extra `run` `args` and `env`; no `$SIGNING_PROXY_*` of the
    test's own environment leaks in. Its listeners (`listen`, and `admin.listen` if any) name
    port 0 and are ready once `listeners` of them are logged (2 with the admin API); or, when
    its log level hides those lines, the config names `ports` (`free_port()`), in that order.
    `starting(proxy)` runs once the process is spawned, before it is waited for."""
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
    proxy = ProxyProcess(process, ports)

    async def collect() -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.read(65536):
            proxy.stderr += chunk

    reader = asyncio.ensure_future(collect())
    try:
        if starting is not None:
            await starting(proxy)
        if not ports:
            await proxy.wait_listening(listeners)
        assert await wait_answering(proxy.base + "/healthz") == 200
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
