"""`oauth2.clientAuth: private_key_jwt` against panva's `oidc-provider` (npm, the certified
OpenID Connect provider), which verifies the proxy's RFC 7523 §2.2 client assertions itself.

The provider runs in node (tests/tokens/oidc_provider_node, `npm ci` there; `.ci/run` does it)
with one `private_key_jwt` client and 2-second client-credentials tokens, and serves a resource
that accepts only its live tokens."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from joserfc.jwk import ECKey

from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.store import open_store
from proxy.tokens.manager import TokenManager
from tests.builders import connection
from tests.jwt_provider import private_pem, public_pem
from tests.plane import PlaneServer

PEER = Path(__file__).resolve().parent / "oidc_provider_node"
CLIENT_ID = "pkjwt-client"
CLIENT_KEY = private_pem("ec")
TTL = 2


def _node() -> str:
    node = shutil.which("node")
    if node and (PEER / "node_modules" / "oidc-provider").is_dir():
        return node
    if os.environ.get("CI"):
        pytest.fail("node and the oidc-provider npm package are needed (.ci/run installs them)")
    pytest.skip("node or `npm ci` in tests/tokens/oidc_provider_node missing")


@pytest.fixture
async def issuer() -> AsyncIterator[str]:
    jwk = ECKey.import_key(public_pem(CLIENT_KEY)).as_dict()
    process = await asyncio.create_subprocess_exec(
        _node(),
        str(PEER / "server.mjs"),
        CLIENT_ID,
        json.dumps(jwk),
        str(TTL),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line, (await process.stderr.read()).decode() if process.stderr else ""
        yield str(json.loads(line)["issuer"])
    finally:
        process.terminate()
        await process.wait()


async def stats(issuer: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as session, session.get(f"{issuer}/stats") as response:
        result: dict[str, int] = await response.json()
        return result


async def proxy_for(issuer: str, key: str, aiohttp_client: Any, db: str) -> TestClient[Any, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{issuer}/.well-known/openid-configuration") as response,
    ):
        discovery = await response.json()
    assert "private_key_jwt" in discovery["token_endpoint_auth_methods_supported"]
    credential = {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {
                "tokenUrl": discovery["token_endpoint"],
                "grant": {"type": "clientCredentials"},
                "clientAuth": "private_key_jwt",
            },
        },
        "credential": {
            "type": "oauth2-client",
            "data": {"oauth2Client": {"clientId": CLIENT_ID, "clientSecret": key}},
        },
    }
    runtime = build_runtime({"connections": [connection("api", issuer, credential)]}, {})
    store = open_store(db)
    plane = create_app(runtime, tokens=TokenManager(store), store=store)
    client: TestClient[Any, Any] = await aiohttp_client(PlaneServer(plane))
    return client


@pytest.mark.slow
async def test_oidc_provider_accepts_the_client_assertions_across_token_lifetimes(
    issuer: str, aiohttp_client: Any, tmp_path: Path
) -> None:
    db = str(tmp_path / "state.db")
    replicas = [await proxy_for(issuer, CLIENT_KEY, aiohttp_client, db) for _ in range(2)]
    statuses: list[int] = []
    started = time.monotonic()
    while time.monotonic() - started < 5.5:
        for api in replicas:
            responses = await asyncio.gather(*(api.get("/api/resource/x") for _ in range(3)))
            statuses += [r.status for r in responses]
            for response in responses:
                if response.status == 200:
                    assert (await response.json())["client"] == CLIENT_ID
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    counted = await stats(issuer)
    assert set(statuses) == {200}
    assert counted["token_errors"] == 0
    # 2-second tokens renewed half a second ahead, shared by both replicas through the store.
    assert 3 <= counted["token_calls"] <= elapsed / 1.5 + 2, (counted, elapsed)


async def test_oidc_provider_refuses_an_assertion_signed_with_another_key(
    issuer: str, aiohttp_client: Any, tmp_path: Path
) -> None:
    api = await proxy_for(issuer, private_pem("ec"), aiohttp_client, str(tmp_path / "s.db"))
    response = await api.get("/api/resource/x")
    assert response.status == 502
    body = await response.json()
    assert body["code"] == "credential_refresh_failed" and body["details"] == "invalid_client"
    assert (await stats(issuer))["token_errors"] == 1
