"""Upgrading from the release whose derived ids were UUIDs: a file credential's stored token is
carried over to its ULID at start, so a token the provider rotated since the file was written
stays in use (the file's own token would be stale)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from proxy.connections.runtime import build_runtime
from proxy.dataplane.plane import create_app
from proxy.messages import TokenSet
from proxy.schemes.oauth2 import OAuth2Scheme
from proxy.store import StoredToken
from proxy.store.memory import MemoryStore
from tests.builders import connection
from tests.plane import PlaneServer

# The earlier release's scheme (its connection.py): uuid5 in this namespace over
# "connection\x1f<name>" and "credential\x1f<connection id>\x1f<index>".
OLD_NAMESPACE = uuid.UUID("6f1c4c52-3a55-4b36-9b0c-2f4f5e8a9d10")


def old_credential_id(name: str, index: int) -> str:
    old_connection = uuid.uuid5(OLD_NAMESPACE, f"connection\x1f{name}")
    return str(uuid.uuid5(OLD_NAMESPACE, f"credential\x1f{old_connection}\x1f{index}"))


async def test_a_token_stored_under_the_old_id_is_carried_over(
    echo_server: TestServer, aiohttp_client: Any
) -> None:
    grant = {
        "type": "authorizationCode",
        "authorizationCode": {"clientId": "cid", "clientSecret": "canary-cs-l1"},
    }
    entry = {
        "authSchemeConfig": {
            "type": "oauth2",
            "oauth2": {"tokenUrl": "http://127.0.0.1:9/token", "grant": grant},
        },
        "credential": {
            "type": "oauth2-token",
            "data": {"oauth2Token": {"accessToken": "canary-file-at", "refreshToken": "rt"}},
        },
    }
    runtime = build_runtime({"connections": [connection("api", str(echo_server.make_url(""))
                                                        , entry)]}, {})  # fmt: skip
    [compiled] = runtime.connections
    [scheme] = compiled.schemes
    assert isinstance(scheme, OAuth2Scheme)
    store = MemoryStore()
    old = old_credential_id("api", 0)
    assert scheme.credential_id != old
    rotated = TokenSet(access_token="canary-rotated-at", token_type="Bearer", refresh_token="rt2")
    seed = store.fingerprint(scheme.settings.seed_identity())
    await store.put_token(old, StoredToken(rotated, seed), expected_version=0)
    client: TestClient[Any, Any] = await aiohttp_client(
        PlaneServer(create_app(runtime, store=store))
    )
    response = await client.get("/api/x")
    assert response.status == 200
    sent = dict((await response.json())["headers"])
    assert sent["Authorization"] == "Bearer canary-rotated-at"
    assert await store.get_token(old) is None
    moved = await store.get_token(scheme.credential_id)
    assert moved is not None and moved.token == rotated
