"""One credential id, one credential (docs/admin-api.md): connections carrying the same credential
id share one token, refreshed once — across the connections and across replicas on one store —
and used by all; the same id with other secret data is refused (409 through the API, a field
error in proxy.yaml).

The provider rotates refresh tokens strictly (tests/oauth_server.py: a refresh token presented a
second time is `invalid_grant`, no grace) and issues 2-second access tokens; each test goes
through several rotations and ends with no refresh token presented twice. The two "replicas" are
two proxies (data plane and admin API each, as `signing-proxy run` wires them) in this process on
one store: the same SQLite file, or one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from proxy.config.load import ConfigInvalid
from proxy.connections.runtime import build_runtime
from proxy.store import Store, open_store
from proxy.store.crypto import new_key_text
from tests.admin.oauth2_connect import CLIENT_ID, CLIENT_SECRET, oauth_template, provider
from tests.admin.planes import AUTH, CONNECTIONS, MakePlanes, Planes, create, create_body
from tests.builders import connection, oauth2_token
from tests.oauth_server import AuthServer, create_resource_app
from tests.pg import PgServer

TOKEN_SECONDS = 2.0  # refreshed 0.5 s before expiry: room for a loaded machine
ROTATIONS = 4
SHARED_ID = "01JCREDSHARED0000000000000"


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_credential(pair: dict[str, Any], ident: str = SHARED_ID) -> dict[str, Any]:
    value = {
        "accessToken": pair["access_token"],
        "refreshToken": pair["refresh_token"],
        "expiresAt": iso(time.time() + TOKEN_SECONDS),
    }
    return {"id": ident, "credential": {"type": "oauth2-token", "data": {"oauth2Token": value}}}


StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(request: Any, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens handles on one store, as replicas would: the same SQLite file, or one PostgreSQL
    database."""
    opened: list[Store] = []
    if request.param == "sqlite":

        def make() -> Store:
            opened.append(open_store(str(tmp_path / "proxy.db")))
            return opened[-1]
    else:
        server: PgServer = request.getfixturevalue("postgres")
        url, key = server.new_database(), new_key_text()

        def make() -> Store:
            opened.append(open_store(None, key, url=url))
            return opened[-1]

    yield make
    for store in opened:
        await store.close()


async def replicas(
    aiohttp_server: Any, make_planes: MakePlanes, stores: StoreFactory
) -> tuple[AuthServer, Planes, Planes]:
    server, auth = await provider(aiohttp_server)
    server.access_ttl = TOKEN_SECONDS
    server.strict_rotation = True
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    template = oauth_template(str(auth.make_url("")).rstrip("/"), str(resource.make_url("")))
    made = [
        await make_planes({"templates": [template]}, env={"SECRET": CLIENT_SECRET}, store=store)
        for store in (stores(), stores())
    ]
    return server, made[0], made[1]


async def all_answer(planes: list[Planes], names: list[str], each: int = 3) -> None:
    """Concurrent requests through every replica for every connection; all must be 200."""
    responses = await asyncio.gather(
        *(
            replica.proxy.get("/gdrive/files", headers={"X-Connection-Id": name})
            for replica in planes
            for name in names
            for _ in range(each)
        )
    )
    for response in responses:
        assert response.status == 200, await response.text()


@pytest.mark.slow
async def test_connections_sharing_a_credential_id_share_its_token(
    stores: StoreFactory, aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    server, one, two = await replicas(aiohttp_server, make_planes, stores)
    seed = server.issue(CLIENT_ID)
    # One export POSTed for two customers: the same credential, the same id.
    ids = {}
    for name in ("alice", "bob"):
        body = create_body(name, token_credential(seed), template="gdrive", externalId=name)
        created = await create(one, body)
        assert created["credentials"][0]["id"] == SHARED_ID
        ids[name] = created["id"]
    names = ["alice", "bob"]
    # The pasted token's lifetime is unknown: within the 60 s skew, it is refreshed at once.
    await all_answer([one, two], names)
    assert server.grants["refresh_token"] == 1
    for rotation in range(2, ROTATIONS + 2):
        await asyncio.sleep(TOKEN_SECONDS)  # expired: 12 requests need a new token at once
        await all_answer([one, two], names)
        # Once per expiry: both connections, both replicas, one token request.
        assert server.grants["refresh_token"] == rotation
    assert server.reuses == 0 and server.invalid_grants == 0
    family = server.refresh[seed["refresh_token"]]
    assert family.child is not None  # one chain, rotated ROTATIONS times
    assert server.current_refresh_token(seed["refresh_token"]) != seed["refresh_token"]

    # A connection deleted: the other still carries the credential, whose token stays.
    response = await one.admin.delete(f"{CONNECTIONS}/{ids['alice']}", headers=AUTH)
    assert response.status == 204
    assert await one.store.get_token(SHARED_ID) is not None
    await asyncio.sleep(TOKEN_SECONDS)
    await all_answer([one, two], ["bob"])
    assert server.grants["refresh_token"] == ROTATIONS + 2
    assert server.reuses == 0 and server.invalid_grants == 0


async def test_the_same_id_with_other_secret_data_is_409(
    stores: StoreFactory, aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    server, one, two = await replicas(aiohttp_server, make_planes, stores)
    seed = server.issue(CLIENT_ID)
    body = create_body("alice", token_credential(seed), template="gdrive", externalId="alice")
    await create(one, body)
    other = server.issue(CLIENT_ID)
    for replica in (one, two):
        body = create_body("carol", token_credential(other), template="gdrive")
        response = await replica.admin.post(CONNECTIONS, json=body, headers=AUTH)
        assert response.status == 409, await response.text()
        error = await response.json()
        assert error["code"] == "conflict"
        assert [f["field"] for f in error["fields"]] == ["connection.credentials[0].id"]
        for secret in (*other.values(), *seed.values()):
            assert str(secret) not in str(error)
    # An authorization code for an id in use is refused before it is exchanged.
    code = {"type": "oauth2-code", "data": {"oauth2Code": {"code": "canary-code-5e"}}}
    body = create_body("dave", {"id": SHARED_ID, "credential": code}, template="gdrive")
    response = await one.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 409
    assert server.grants["authorization_code"] == 0

    # The credential's current token (what an OpenInt read with include_secrets shows after
    # refreshes) is still this credential: accepted, and shared.
    await all_answer([one], ["alice"], each=1)  # refreshed at once (lifetime unknown)
    stored = await one.store.get_token(SHARED_ID)
    assert stored is not None and stored.token is not None
    current = {
        "access_token": stored.token.access_token,
        "refresh_token": stored.token.refresh_token,
    }
    body = create_body("erin", token_credential(current), template="gdrive", externalId="erin")
    await create(two, body)
    await asyncio.sleep(TOKEN_SECONDS)
    await all_answer([one, two], ["alice", "erin"])
    assert server.grants["refresh_token"] == 2  # the first use, then one for this expiry
    assert server.reuses == 0 and server.invalid_grants == 0


def test_proxy_yaml_refuses_one_id_with_two_secrets() -> None:
    pair = {"access_token": "canary-at-1", "refresh_token": "canary-rt-1"}
    other = {"access_token": "canary-at-2", "refresh_token": "canary-rt-2"}

    def entry(token: dict[str, str]) -> dict[str, Any]:
        credential = oauth2_token("https://auth.example/token", "c", "canary-secret", token)
        return {"id": SHARED_ID, **credential}

    same = {
        "connections": [
            connection("a", "https://api.example", entry(pair)),
            connection("b", "https://api.example", entry(pair)),
        ]
    }
    runtime = build_runtime(same, {})
    assert {s.credential_id for c in runtime.connections for s in c.schemes} == {SHARED_ID}
    clash = {
        "connections": [
            connection("a", "https://api.example", entry(pair)),
            connection("b", "https://api.example", entry(other)),
        ]
    }
    with pytest.raises(ConfigInvalid) as raised:
        build_runtime(clash, {})
    [problem] = raised.value.problems
    assert problem.field == "connections[1].credentials[0].id"
    assert "connections[0].credentials[0]" in problem.message
    assert "canary" not in str(raised.value.problems)
