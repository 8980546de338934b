"""Shutdown order: both listeners of one process drain before the store they share is closed.

`serve()` as `signing-proxy run` calls it: the data plane and the admin API on real ports, one
SQLite store and one token manager closed by `close_after`. SIGTERM arrives while an admin
request — the OAuth 2.0 callback, waiting on a slow token endpoint — is in flight; the data
plane has nothing in flight and drains at once. The callback must still store its connection.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.admin import create_admin_app_for
from proxy.cli.command import bind_tcp
from proxy.cli.server import Listener, serve
from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.store import StoreError, open_store
from proxy.tokens.manager import TokenManager
from tests.admin.oauth2_connect import CLIENT_SECRET, oauth_template, provider
from tests.admin.planes import ADMIN_TOKEN, AUTH, ORG

DEADLINE = 15.0


async def until(predicate: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_sigterm_lets_an_admin_request_finish_before_the_store_closes(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    server, auth = await provider(aiohttp_server)
    # Both listeners bound here on ports the kernel picks and handed to serve() as sockets (as
    # `run` hands them): the config names the admin port for the OAuth 2.0 redirect_uri.
    data_sock, admin_sock = bind_tcp("127.0.0.1:0"), bind_tcp("127.0.0.1:0")
    admin_port = admin_sock.getsockname()[1]
    admin_url = f"http://127.0.0.1:{admin_port}"
    tree: dict[str, Any] = {
        "listen": f"127.0.0.1:{data_sock.getsockname()[1]}",
        "admin": {"listen": f"127.0.0.1:{admin_port}", "token": ADMIN_TOKEN},
        "templates": [oauth_template(str(auth.make_url("")).rstrip("/"), "http://127.0.0.1:9")],
    }
    runtime = build_runtime(tree, {"SECRET": CLIENT_SECRET})
    path = str(tmp_path / "state.db")
    store = open_store(path)
    tokens = TokenManager(store)
    data = create_app(runtime, tokens=tokens, store=store, close_shared=False)
    apps: list[Listener] = [(data, data_sock), (create_admin_app_for(runtime, data), admin_sock)]
    serving = asyncio.create_task(
        serve(apps, shutdown_grace=10, close_after=(tokens.close, store.close))
    )
    signalled = False
    async with aiohttp.ClientSession() as browser:
        try:

            async def admin_up() -> bool:
                try:
                    async with browser.get(f"{admin_url}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(admin_up, "the admin listener")
            init = f"{admin_url}/o/{ORG}/templates/gdrive/oauth2/init"
            async with browser.post(init, json={}, headers=AUTH) as response:
                authorize_url = (await response.json())["url"]
            async with browser.get(authorize_url, allow_redirects=False) as response:
                callback_url = response.headers["Location"]
            server.delay = 1.0  # the token endpoint keeps the callback in flight
            callback = asyncio.create_task(browser.get(callback_url, allow_redirects=False))

            async def token_requested() -> bool:
                return server.hits >= 1

            await until(token_requested, "the code exchange")
            os.kill(os.getpid(), signal.SIGTERM)
            signalled = True
            response = await asyncio.wait_for(callback, DEADLINE)
            assert response.status == 201, await response.text()
            created = await response.json()
            response.release()
        finally:
            # Only while serve()'s handler is surely installed: SIGTERM unhandled ends pytest.
            if not signalled and not serving.done():
                os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(serving, DEADLINE)
    # Closed once both had drained: the store refuses work now, and the write made it.
    with pytest.raises(StoreError, match="closed"):
        await store.get_token(created["id"])
    reopened = open_store(path)
    try:
        assert [c.id for c in await reopened.list_connections()] == [created["connectionId"]]
        assert await reopened.get_token(created["id"]) is not None
    finally:
        await reopened.close()
