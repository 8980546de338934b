"""The real program as a subprocess, beside `tests.proxyproc.ProxyProcess`: one-shot commands
(`check`, `env`...), `python -m proxy run --workers` with its stderr as a stream, and waits for a
server to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests import rawhttp
from tests.ports import free_port
from tests.proxyproc import config_file

# Both bound a broken proxy only: on a loaded 2-core machine a start alone has taken over 20 s.
START_TIMEOUT = 60.0
CLI_TIMEOUT = 60.0
# `start_workers` tries another free port when the one it was given was taken meanwhile.
PORT_ATTEMPTS = 3


async def wait_healthy(port: int, proc: asyncio.subprocess.Process) -> rawhttp.Message:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise AssertionError(f"proxy exited early with {proc.returncode}")
        try:
            return await rawhttp.round_trip(port, rawhttp.get("/healthz"), timeout=1)
        except (ConnectionError, OSError, rawhttp.Truncated):
            await asyncio.sleep(0.05)
    raise AssertionError("proxy did not become healthy in time")


async def spawn_proxy(
    tmp_path: Path, tree: dict[str, Any], *args: str, stdout: int, stderr: int
) -> tuple[asyncio.subprocess.Process, int]:
    """`python -m proxy run` on a free port with `tree` as its config (`config_file()`), running
    in `tmp_path`; `args` are extra `run` options. For `start_workers`, whose tests read stderr
    as a stream; every other test runs the proxy as a `tests.proxyproc.ProxyProcess`."""
    port = free_port()
    config = config_file(tmp_path, tree, port=port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "run", "--config", str(config), *args,
        cwd=tmp_path, stdout=stdout, stderr=stderr,
    )  # fmt: skip
    return proc, port


def write_config(path: Path, tree: Any) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m proxy ARGS` to its end, output captured; `env` is added to this environment."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    """A port with a listener on it: binding it again would fail with EADDRINUSE."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


async def wait_answering(url: str) -> int:
    """The status of the first answer at `url`, asked until the server takes connections."""
    deadline = time.monotonic() + CLI_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while True:  # bounded by the deadline, not a count: each try may take long under load
            try:
                async with session.get(url) as response:
                    return response.status
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {CLI_TIMEOUT}s")


async def start_workers(tmp_path: Path, tree: dict[str, Any], workers: int) -> tuple[Any, int]:
    """`run --workers` on a free port, its stderr a pipe the tests read. The proxy is told its
    port (`free_port()`) rather than searched in that pipe for the one it got, so a start whose
    port was taken in the moment before the proxy bound it is retried on another."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        proc, port = await spawn_proxy(
            tmp_path,
            tree,
            "--workers",
            str(workers),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await wait_healthy(port, proc)
            return proc, port
        except AssertionError:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
                raise
            _, stderr = await proc.communicate()
            if b"Address already in use" not in stderr or attempt == PORT_ATTEMPTS:
                raise AssertionError(stderr.decode()) from None
    raise AssertionError("unreachable")


async def stop_workers(proc: Any) -> tuple[int, str]:
    """SIGTERM, then the exit status and all of stderr once every worker has drained."""
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        _, stderr = await proc.communicate()
    return proc.returncode, stderr.decode()
