"""A credential forgotten (its connection replaced or deleted) leaves no token record behind
(docs/admin-api.md): not when a request routed to the old connection a moment before asks for
its token afterwards, nor when a refresh that began before lands after the delete.

Both interleavings are driven explicitly on the real SQLite store and the local authorization
server of tests/oauth_server.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from proxy.connections.compiled import CompiledConnection
from proxy.connections.runtime import build_runtime
from proxy.schemes.oauth2 import OAuth2Scheme
from proxy.store.sqlite import SqliteStore
from proxy.tokens.manager import TokenManager
from tests.builders import connection
from tests.oauth_server import AuthServer, Client, create_auth_app
from tests.tokens.oauth2 import SECRET, token_credential

PROVIDER_THINKS = 1.0  # the token call the release overtakes


async def provider(aiohttp_server: Any, **settings: Any) -> tuple[AuthServer, str]:
    server = AuthServer(clients={"cid": Client(SECRET)}, **settings)
    auth: TestServer = await aiohttp_server(create_auth_app(server))
    return server, str(auth.make_url("/token"))


def oauth2_connection(
    token_url: str, seed: dict[str, Any], expires_at: float
) -> CompiledConnection:
    tree = {
        "connections": [
            connection("api", "http://127.0.0.1:9", token_credential(token_url, seed, expires_at))
        ]
    }
    return build_runtime(tree, {}).connections[0]


def oauth2_scheme(compiled: CompiledConnection) -> OAuth2Scheme:
    scheme = compiled.schemes[0]
    assert isinstance(scheme, OAuth2Scheme)
    return scheme


async def test_a_request_on_the_replaced_connection_writes_no_record_back(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server, token_url = await provider(aiohttp_server)
    seed = server.issue("cid")
    compiled = oauth2_connection(token_url, seed, time.time() + 3600)
    scheme = oauth2_scheme(compiled)
    store = SqliteStore.open(tmp_path / "state.db")
    manager = TokenManager(store)
    try:
        await manager.adopt_connection(compiled)
        assert await store.get_token(scheme.credential_id) is not None
        # The connection is replaced (another credential) after a request picked it.
        await manager.release(compiled.id, {scheme.credential_id})
        assert await store.get_token(scheme.credential_id) is None
        token = await manager.current(scheme)  # that request signs now
        assert token.access_token == seed["access_token"]
        assert await store.get_token(scheme.credential_id) is None
        assert server.hits == 0
    finally:
        await manager.close()
        await store.close()


async def test_a_refresh_landing_after_the_release_writes_no_record_back(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server, token_url = await provider(aiohttp_server, delay=PROVIDER_THINKS)
    seed = server.issue("cid")
    compiled = oauth2_connection(token_url, seed, time.time() + 1)  # due for a refresh
    scheme = oauth2_scheme(compiled)
    store = SqliteStore.open(tmp_path / "state.db")
    manager = TokenManager(store)
    try:
        await manager.adopt_connection(compiled)
        request = asyncio.create_task(manager.current(scheme))
        async with asyncio.timeout(PROVIDER_THINKS):
            while server.hits == 0:  # the refresh is at the provider, which holds it
                await asyncio.sleep(0.01)
        await manager.release(compiled.id, {scheme.credential_id})
        token = await request  # the refresh lands after the delete
        assert token.access_token in server.access
        assert await store.get_token(scheme.credential_id) is None
    finally:
        await manager.close()
        await store.close()
