"""A token call is never cancelled by its caller (docs/request-path.md): a refresh and the store
write that keeps its result run in a task the token manager owns; a client that leaves only
stops waiting; a shutdown waits for the call in flight; and a reload only re-seeds a file token
that is newer than anything the store has seen for the credential.

Every test runs against the strict provider of tests/oauth_server.py: a refresh token is good
for one use, presented again it is `invalid_grant` — so a rotated token that is lost shows up as
an `invalid_grant`, and each test ends with none, and no refresh token presented twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.store import open_store
from proxy.tokens.manager import TokenManager
from tests.builders import connection
from tests.oauth_server import AuthServer, Client, create_auth_app, create_resource_app
from tests.plane import PlaneServer
from tests.proxyproc import ProxyProcess, config_file
from tests.tokens.oauth2 import SECRET, token_credential

PROVIDER_THINKS = 0.4  # before the provider looks at a token request
PROVIDER_ANSWERS = 0.4  # after it rotated the refresh token, before its answer leaves


async def strict_provider(aiohttp_server: Any, **settings: Any) -> tuple[AuthServer, str, str]:
    server = AuthServer(clients={"cid": Client(SECRET)}, strict_rotation=True, **settings)
    auth: TestServer = await aiohttp_server(create_auth_app(server))
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    return server, str(auth.make_url("/token")), str(resource.make_url(""))


async def give_up_after(port: int, seconds: float) -> None:
    """A client that sends a request and leaves `seconds` later, whatever happened."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/x HTTP/1.1\r\nHost: p\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(seconds)
    writer.transport.abort()


@pytest.mark.slow
async def test_clients_giving_up_at_every_point_of_a_slow_refresh(
    aiohttp_server: Any, aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    server, token_url, resource_url = await strict_provider(
        aiohttp_server, delay=PROVIDER_THINKS, answer_delay=PROVIDER_ANSWERS
    )
    seed = server.issue("cid")
    tree = {"connections": [connection("api", resource_url, token_credential(token_url, seed))]}
    store = open_store(str(tmp_path / "state.db"))
    plane = create_app(build_runtime(tree, {}), tokens=TokenManager(store), store=store)
    client = await aiohttp_client(PlaneServer(plane))
    assert (await client.get("/api/x")).status == 200
    call = PROVIDER_THINKS + PROVIDER_ANSWERS
    # Before the provider reads the request, while it thinks, after it rotated the refresh
    # token but before its answer, just as the answer arrives, while the token is stored.
    points = [0.05, PROVIDER_THINKS / 2, PROVIDER_THINKS + 0.1, call - 0.02, call + 0.01]
    for round_, point in enumerate(points, start=1):
        server.expire_access_tokens()  # the upstream answers 401: a refresh is due
        leaving = asyncio.create_task(give_up_after(client.port, point))
        if round_ % 2:
            # A waiter on the same single flight gets the token the leaver's refresh brought.
            await asyncio.sleep(0.02)
            response = await client.get("/api/x")
            assert response.status == 200, (point, await response.text())
        await leaving
        await asyncio.sleep(call + 0.3)  # the refresh the leaver started has finished
        response = await client.get("/api/x")
        assert response.status == 200, (point, await response.text())
        assert server.grants["refresh_token"] == round_, point  # one per expiry
    assert server.invalid_grants == 0 and server.reuses == 0
    stored = await store.get_token(plane.runtime.connections[0].schemes[0].credential_id)
    assert stored is not None and stored.token is not None
    assert stored.token.refresh_token == server.current_refresh_token(seed["refresh_token"])


async def test_sigterm_during_a_token_call_waits_for_it(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server, token_url, resource_url = await strict_provider(aiohttp_server, delay=1.0)
    seed = server.issue("cid")
    credential = token_credential(token_url, seed, time.time() - 60)  # expired: refreshed first
    tree = {
        "timeouts": {"shutdownGrace": 0.2},
        "connections": [connection("api", resource_url, credential)],
    }
    proxy = ProxyProcess(config_file(tmp_path, tree))
    try:
        await proxy.astart()
        async with aiohttp.ClientSession() as session:
            request = asyncio.create_task(session.get(f"{proxy.base}/api/x"))
            while server.hits == 0:  # the token call is in flight (the provider thinks for 1 s)
                await asyncio.sleep(0.02)
            assert await proxy.astop() == 0  # SIGTERM
            # The request itself was cut when the 0.2 s grace ran out (or answered, by luck).
            done = await asyncio.gather(request, return_exceptions=True)
            assert done
        output = proxy.stderr
        assert b"token call(s) in flight before exit" in output, output
        assert b"abandoned" not in output
        # The rotated token was stored: the next start uses it, with no token call at all.
        assert server.grants["refresh_token"] == 1
        await proxy.astart()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{proxy.base}/api/x") as response:
                assert response.status == 200, await response.text()
        assert await proxy.astop() == 0
    finally:
        proxy.kill()
    assert server.grants["refresh_token"] == 1
    assert server.invalid_grants == 0 and server.reuses == 0


async def test_an_edit_reverted_by_a_reload_never_reseeds_a_used_token(
    aiohttp_server: Any, aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    server, token_url, resource_url = await strict_provider(aiohttp_server)
    seed = server.issue("cid")
    written = time.time() + 5  # what the person copied: expires before any refreshed token

    def tree(token: dict[str, Any], expires_at: float = written) -> dict[str, Any]:
        credential = token_credential(token_url, token, expires_at)
        return {"connections": [connection("api", resource_url, credential)]}

    store = open_store(str(tmp_path / "state.db"))
    plane = create_app(build_runtime(tree(seed), {}), tokens=TokenManager(store), store=store)
    client = await aiohttp_client(PlaneServer(plane))

    async def refreshed_request() -> None:
        server.expire_access_tokens()  # 401 upstream: refreshed with the current token
        response = await client.get("/api/x")
        assert response.status == 200, await response.text()

    await refreshed_request()  # the seed's refresh token is used up now
    typo = {**seed, "refresh_token": seed["refresh_token"][:-1] + "X"}
    versions = [
        tree(typo),  # a typo in the refresh token
        tree(seed),  # ... reverted
        tree({**seed, "access_token": seed["access_token"] + "X"}),  # a half-written file
        tree(seed),  # ... completed
        tree(seed, written - 3600),  # a rollback to an older copy
    ]
    for version in versions:
        await plane.reload(build_runtime(version, {}))
        await refreshed_request()
    assert server.grants["refresh_token"] == 1 + len(versions)
    assert server.invalid_grants == 0 and server.reuses == 0
    # A token a person pasted that the credential never had: the file wins again.
    pasted = server.issue("cid")
    await plane.reload(build_runtime(tree(pasted, time.time() + 3600), {}))
    await refreshed_request()
    assert server.refresh[pasted["refresh_token"]].child is not None  # the pasted one was used
    assert server.invalid_grants == 0 and server.reuses == 0


async def test_a_reload_during_a_token_call_keeps_the_rotated_token(
    aiohttp_server: Any, aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    # A setting of the credential changes (not its token) while a refresh is in flight: the
    # reload writes the new settings over the stored token's row, and the refresh that
    # finishes after it must still be stored and used, not discarded as stale.
    server, token_url, resource_url = await strict_provider(aiohttp_server, delay=0.5)
    seed = server.issue("cid")

    def tree(scope: str) -> dict[str, Any]:
        credential = token_credential(token_url, seed, defaultScopes=[scope])
        return {"connections": [connection("api", resource_url, credential)]}

    store = open_store(str(tmp_path / "state.db"))
    plane = create_app(build_runtime(tree("a"), {}), tokens=TokenManager(store), store=store)
    client = await aiohttp_client(PlaneServer(plane))
    for round_, scope in enumerate(["b", "c", "d"], start=1):
        server.expire_access_tokens()
        request = asyncio.create_task(client.get("/api/x"))
        while server.hits < round_:  # the token call is in flight
            await asyncio.sleep(0.01)
        await plane.reload(build_runtime(tree(scope), {}))
        response = await request
        assert response.status == 200, await response.text()
    server.expire_access_tokens()
    response = await client.get("/api/x")
    assert response.status == 200, await response.text()
    assert server.invalid_grants == 0 and server.reuses == 0
    assert server.grants["refresh_token"] == 4
    stored = await store.get_token(plane.runtime.connections[0].schemes[0].credential_id)
    assert stored is not None and stored.token is not None
    assert stored.token.refresh_token == server.current_refresh_token(seed["refresh_token"])
