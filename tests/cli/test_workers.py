"""`signing-proxy run --workers N` (docs/operations.md): one port served by N
processes.

Real processes only: the parent binds the port, forks the workers, and on SIGTERM every worker
drains its in-flight requests before the parent exits 0. Workers share OAuth 2.0 tokens through
the SQLite store, so N workers meeting an expired token make one token request between them.
Which worker answered is read from the access log, where `--workers` puts each line's pid.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest

from proxy.cli import main
from tests import rawhttp
from tests.builders import oauth2_token
from tests.cli.procs import start_workers, stop_workers, wait_healthy
from tests.oauth_server import AuthServer, Client, serve_in_thread

ACCESS_PID = re.compile(r"signing_proxy\.access pid=(\d+) GET /(\w+)/\S+ connection=\w+ status=200")
SECRET = "canary-workers-client-secret"
REQUESTS = 40


async def burst(port: int, route: str) -> list[rawhttp.Message]:
    """`REQUESTS` concurrent requests, each on its own connection (so the kernel spreads them)."""
    return await asyncio.gather(
        *(rawhttp.round_trip(port, rawhttp.get(f"/{route}/r{i}")) for i in range(REQUESTS))
    )


def serving_pids(log: str, route: str) -> set[str]:
    return {m.group(1) for m in ACCESS_PID.finditer(log) if m.group(2) == route}


async def test_two_workers_share_the_port_and_drain_on_sigterm(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def answer(request: rawhttp.Message, writer: asyncio.StreamWriter) -> None:
        if request.target.startswith("/slow"):
            await asyncio.wait_for(gate.wait(), 10)
        await rawhttp.ok(request, writer)

    async with rawhttp.raw_upstream(answer) as upstream:
        tree = {"connections": [{"name": "up", "baseUrl": upstream.base, "credentials": []}]}
        proc, port = await start_workers(tmp_path, tree, workers=2)
        try:
            responses = await burst(port, "up")
            assert [r.status for r in responses] == [200] * REQUESTS
            in_flight = asyncio.create_task(rawhttp.round_trip(port, rawhttp.get("/up/slow")))
            async with asyncio.timeout(5):
                while "/slow" not in upstream.targets:
                    await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            assert not in_flight.done()  # still waiting for the upstream: drained, not cut
            gate.set()
            slow = await asyncio.wait_for(in_flight, 5)
            assert (slow.status, slow.body, slow.complete) == (200, b"ok", True)
            code, log = await stop_workers(proc)
            assert code == 0, log
            assert len(serving_pids(log, "up")) == 2, log
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_two_workers_on_an_expired_token_make_one_token_request(tmp_path: Path) -> None:
    server = AuthServer(clients={"cid": Client(SECRET)})
    with serve_in_thread(server) as running:
        seed = server.issue("cid")
        # Expired: refreshed before its first use.
        credential = oauth2_token(
            running.auth_url + "/token", "cid", SECRET, seed, expires_at="2001-01-01T00:00:00Z"
        )
        tree = {
            "connections": [
                {"name": "api", "baseUrl": running.resource_url, "credentials": [credential]}
            ]
        }
        proc, port = await start_workers(tmp_path, tree, workers=2)
        try:
            responses = await burst(port, "api")
            assert [r.status for r in responses] == [200] * REQUESTS
            code, log = await stop_workers(proc)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert code == 0, log
        assert len(serving_pids(log, "api")) == 2, log  # both workers needed the token
        assert server.grants["refresh_token"] == 1
        assert server.hits == 1
        assert SECRET not in log


def test_workers_must_be_a_positive_count(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as exited:
            main(["run", "--workers", bad])
        assert exited.value.code == 2
        assert "--workers" in capsys.readouterr().err


async def test_a_worker_that_dies_is_restarted(tmp_path: Path) -> None:
    async with rawhttp.raw_upstream() as upstream:
        tree = {"connections": [{"name": "up", "baseUrl": upstream.base, "credentials": []}]}
        proc, port = await start_workers(tmp_path, tree, workers=2)
        try:
            assert proc.stderr is not None
            started: list[int] = []
            async with asyncio.timeout(10):
                while len(started) < 2:
                    line = (await proc.stderr.readline()).decode()
                    if match := re.search(r"worker \d started \(pid (\d+)\)", line):
                        started.append(int(match.group(1)))
            os.kill(started[0], signal.SIGKILL)
            async with asyncio.timeout(10):
                while b"restarting it" not in await proc.stderr.readline():
                    pass
                while b"worker 0 started" not in await proc.stderr.readline():
                    pass
            await wait_healthy(port, proc)
            responses = await burst(port, "up")
            assert [r.status for r in responses] == [200] * REQUESTS
            code, log = await stop_workers(proc)
            assert code == 0, log
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    # SIGKILL gives the supervisor no chance to pass SIGTERM on; the kernel does it (prctl).
    async with rawhttp.raw_upstream() as upstream:
        tree = {"connections": [{"name": "up", "baseUrl": upstream.base, "credentials": []}]}
        proc, port = await start_workers(tmp_path, tree, workers=2)
        workers: list[int] = []
        try:
            assert proc.stderr is not None
            async with asyncio.timeout(10):
                while len(workers) < 2:
                    line = (await proc.stderr.readline()).decode()
                    if match := re.search(r"worker \d started \(pid (\d+)\)", line):
                        workers.append(int(match.group(1)))
            proc.kill()
            async with asyncio.timeout(10):
                while any(alive(pid) for pid in workers):
                    await asyncio.sleep(0.05)
                await proc.wait()  # returns once the workers' ends of its pipes are closed too
            with pytest.raises(OSError):  # nobody serves the port any more
                await rawhttp.round_trip(port, rawhttp.get("/up/x"))
        finally:
            for pid in workers:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a reaper (which `os.kill(pid, 0)` would count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status
