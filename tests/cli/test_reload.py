"""Reloading proxy.yaml while serving (docs/operations.md): SIGHUP and `run --watch`.

The proxy runs as a real process (`python -m proxy run`) in front of an upstream in this test's
event loop, which answers with the credential it received; the stored-token case drives the data
plane in-process against the strict OAuth 2.0 server of `tests/oauth_server.py`.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.admin import create_admin_app_for
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.store import open_store
from proxy.tokens.manager import TokenManager
from tests.builders import bearer, connection
from tests.cli.reloading import (
    Proxy,
    config,
    load,
    running,
    until_logged,
    upstream_app,
    write,
)
from tests.plane import PlaneServer
from tests.proxyproc import ProxyProcess, proxy_process
from tests.tokens.oauth2 import Servers, oauth, token_credential  # noqa: F401

TIMEOUT = 60.0  # bounds a broken proxy only (a loaded 2-core machine is slow, not wrong)


@pytest.fixture
async def upstream(aiohttp_server: Any) -> str:
    server: TestServer = await aiohttp_server(await upstream_app())
    return str(server.make_url("")).rstrip("/")


async def test_sighup_applies_changed_added_and_removed_connections(
    upstream: str, tmp_path: Path
) -> None:
    path = tmp_path / "proxy.yaml"
    write(path, config(upstream, {"github": "gh-one", "stripe": "sk-one"}))
    async with running(path) as proxy:
        assert await proxy.get("/github/x") == (200, "Bearer gh-one")
        assert await proxy.get("/stripe/x") == (200, "Bearer sk-one")
        write(path, config(upstream, {"github": "gh-two", "slack": "xoxb-new"}))
        proxy.hangup()
        await proxy.until("/github/x", (200, "Bearer gh-two"))  # changed credential
        assert await proxy.get("/slack/x") == (200, "Bearer xoxb-new")  # added connection
        status, body = await proxy.get("/stripe/x")  # removed connection
        assert (status, '"route_not_found"' in body) == (404, True)
    log = proxy.stderr.decode()
    assert "config reloaded: 2 connection(s); added ['slack'], removed ['stripe'], " in log
    assert "changed ['github']" in log
    assert "gh-two" not in log and "xoxb-new" not in log


async def test_an_invalid_file_keeps_the_running_config_and_logs_every_problem(
    upstream: str, tmp_path: Path
) -> None:
    path = tmp_path / "proxy.yaml"
    good = config(upstream, {"github": "gh-one"})
    write(path, good)
    async with running(path) as proxy:
        bad = config(upstream, {"github": "gh-two"})
        bad["connections"][0]["baseurl"] = bad["connections"][0].pop("baseUrl")
        bad["timeouts"] = {"connect": -1}
        write(path, bad)
        proxy.hangup()
        # Until the refusal is logged (a loaded machine reloads later; a second SIGHUP sent
        # before the first is handled would read the fixed file instead).
        await until_logged(proxy, "the running configuration stays")
        assert await proxy.get("/github/x") == (200, "Bearer gh-one")  # still the old config
        # Fixed again: the next reload applies it.
        write(path, config(upstream, {"github": "gh-three"}))
        proxy.hangup()
        await proxy.until("/github/x", (200, "Bearer gh-three"))
    log = proxy.stderr.decode()
    refused = [line for line in log.splitlines() if "reload refused: " in line]
    assert len(refused) == 4, log  # three problems, one summary
    assert any("connections[0].baseUrl: required" in line for line in refused)
    suggestion = "connections[0].baseurl: unknown key (did you mean baseUrl?)"
    assert any(suggestion in line for line in refused)
    assert any("timeouts.connect: " in line for line in refused)
    assert "gh-two" not in log


async def test_reload_under_load_fails_no_request_and_in_flight_finish_on_the_old(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    slow_arrived = asyncio.Event()
    server: TestServer = await aiohttp_server(await upstream_app(slow_arrived))
    upstream = str(server.make_url("")).rstrip("/")
    path = tmp_path / "proxy.yaml"
    write(path, config(upstream, {"api": "token-0"}))
    async with running(path) as proxy:
        # In flight across the reload: sent with the old credential, finished on it.
        slow = asyncio.ensure_future(proxy.get("/api/slow"))
        await asyncio.wait_for(slow_arrived.wait(), TIMEOUT)
        answers: list[tuple[int, str]] = []
        reloads_over = asyncio.Event()
        loaders = [
            asyncio.ensure_future(load(proxy, answers, reloads_over, most=2000)) for _ in range(6)
        ]
        for generation in range(1, 6):
            await asyncio.sleep(0.2)
            write(path, config(upstream, {"api": f"token-{generation}"}))
            proxy.hangup()
        # The load lasts until the last reload serves (not a fixed time: a loaded machine
        # applies it later).
        await proxy.until("/api/x", (200, "Bearer token-5"))
        reloads_over.set()
        await asyncio.wait_for(asyncio.gather(*loaders), TIMEOUT)
        assert await asyncio.wait_for(slow, TIMEOUT) == (200, "Bearer token-0")
    assert len(answers) >= 60
    assert {status for status, _ in answers} == {200}
    seen = {body for _, body in answers}
    assert seen <= {f"Bearer token-{n}" for n in range(6)} and len(seen) > 1


async def test_run_watch_reloads_when_the_file_changes(upstream: str, tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    write(path, config(upstream, {"github": "gh-one"}))
    async with running(path, "--watch") as proxy:
        await asyncio.sleep(0.5)  # the watch is set up once serving
        write(path, config(upstream, {"github": "gh-watched"}))
        await proxy.until("/github/x", (200, "Bearer gh-watched"))


@pytest.mark.parametrize("trigger", ["sighup", "watch"])
async def test_every_worker_reloads(upstream: str, tmp_path: Path, trigger: str) -> None:
    path = tmp_path / "proxy.yaml"
    write(path, config(upstream, {"github": "gh-one"}))
    extra = ("--workers", "2", *(["--watch"] if trigger == "watch" else []))
    async with running(path, *extra) as proxy:
        await asyncio.sleep(0.5)
        write(path, config(upstream, {"github": "gh-two"}))
        if trigger == "sighup":
            proxy.hangup()  # to the supervisor, which passes it on
        await until_every_worker_reloaded(proxy, "not every worker reloaded")
    assert len(reloaded_pids(proxy)) == 2


async def test_a_sighup_while_the_workers_start_is_applied_once_they_serve(
    upstream: str, tmp_path: Path
) -> None:
    """The supervisor passes SIGHUP on at once; a worker still starting holds it until it serves
    and then reloads. (It used to be ignored: that worker served the old file until the next.)"""
    path = tmp_path / "proxy.yaml"
    write(path, config(upstream, {"github": "gh-one"}))

    async def hangup_as_the_workers_start(process: ProxyProcess) -> None:
        deadline = time.monotonic() + TIMEOUT
        while b"worker 1 started" not in process.stderr:  # logged by the supervisor at the fork
            assert process.running, process.stderr
            assert time.monotonic() < deadline, process.stderr
            await asyncio.sleep(0.001)
        write(path, config(upstream, {"github": "gh-two"}))
        process.signal(signal.SIGHUP)

    started = proxy_process(path, "--workers", "2", starting=hangup_as_the_workers_start)
    async with started as process, aiohttp.ClientSession() as session:
        proxy = Proxy(process, session)
        await until_every_worker_reloaded(proxy, "a worker lost the SIGHUP sent as it started")
    assert len(reloaded_pids(proxy)) == 2


async def until_every_worker_reloaded(proxy: Proxy, failure: str) -> None:
    """Until `new_token_everywhere()`: each request on a new client connection, so the kernel
    spreads them over both workers."""
    deadline = time.monotonic() + TIMEOUT
    while not await new_token_everywhere(proxy):
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.1)


def reloaded_pids(proxy: Proxy) -> set[str]:
    """The processes that logged a reload."""
    return set(re.findall(r"pid=(\d+) config reloaded", proxy.stderr.decode()))


async def new_token_everywhere(proxy: Proxy) -> bool:
    """20 requests in a row, each on a new client connection, all with the new token."""
    for _ in range(20):
        async with aiohttp.ClientSession() as fresh:
            async with fresh.get(proxy.base + "/github/x") as response:
                if await response.text() != "Bearer gh-two":
                    return False
    return True


async def test_stored_tokens_stay_attached_across_a_reload(
    oauth: Servers,  # noqa: F811
    aiohttp_client: Callable[..., Any],
    tmp_path: Path,
) -> None:
    seed = oauth.server.issue("cid")
    tree = {"connections": [connection("api", oauth.resource_url, token_credential(
        oauth.token_url, seed, time.time() - 1))]}  # fmt: skip
    store = open_store(str(tmp_path / "state.db"))
    plane = create_app(build_runtime(tree, {}), tokens=TokenManager(store), store=store)
    client = await aiohttp_client(PlaneServer(plane))
    assert (await client.get("/api/x")).status == 200  # refreshed: the seed is used up
    hits = oauth.server.hits
    # The same file again, plus another connection: the refreshed token stays attached.
    tree["connections"].append(connection("other", "http://127.0.0.1:9", bearer("b")))
    await plane.reload(build_runtime(tree, {}))
    assert (await client.get("/api/x")).status == 200
    assert oauth.server.hits == hits  # no token call: the stored token, not the dead seed
    # A person pastes a new token into the file: the file wins on reload.
    pasted = oauth.server.issue("cid")
    tree["connections"][0] = connection("api", oauth.resource_url, token_credential(
        oauth.token_url, pasted))  # fmt: skip
    await plane.reload(build_runtime(tree, {}))
    access = oauth.server.access
    oauth.server.access = {k: v for k, v in access.items() if k == pasted["access_token"]}
    assert (await client.get("/api/x")).status == 200
    assert oauth.server.hits == hits


async def test_the_management_api_lists_the_reloaded_file_connections(
    aiohttp_client: Callable[..., Any],
) -> None:
    def tree(*names: str) -> dict[str, Any]:
        return {
            "admin": {"listen": "127.0.0.1:8081", "token": "canary-admin-r"},
            "connections": [connection(n, f"http://127.0.0.1:9/{n}", bearer("b")) for n in names],
        }

    runtime = build_runtime(tree("github", "stripe"), {})
    plane = create_app(runtime)
    admin = await aiohttp_client(create_admin_app_for(runtime, plane))
    org = runtime.config.organisation_id
    auth = {"Authorization": "Bearer canary-admin-r"}

    async def names() -> set[str]:
        response = await admin.get(f"/o/{org}/connections", headers=auth)
        assert response.status == 200
        return {item["name"] for item in (await response.json())["items"]}

    assert await names() == {"github", "stripe"}
    await plane.reload(build_runtime(tree("github", "slack"), {}))
    assert await names() == {"github", "slack"}
    await plane.close()
