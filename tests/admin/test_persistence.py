"""Connections created through the API, and their tokens, survive a restart (SQLite store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from proxy.store import open_store
from tests.admin.oauth2_connect import CLIENT_ID, CLIENT_SECRET, Drive, oauth_template
from tests.admin.planes import AUTH, CONNECTIONS, MakePlanes, create_body, string_credential
from tests.oauth_server import AuthServer, Client, create_auth_app, create_resource_app


async def test_api_connections_and_tokens_survive_a_restart(
    tmp_path: Path, aiohttp_server: Any, echo_server: TestServer, make_planes: MakePlanes
) -> None:
    server = AuthServer()
    server.clients[CLIENT_ID] = Client(secret=CLIENT_SECRET)
    auth: TestServer = await aiohttp_server(create_auth_app(server))
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    tree = {
        "templates": [
            oauth_template(str(auth.make_url("")).rstrip("/"), str(resource.make_url(""))),
            {
                "id": "crm",
                "baseUrl": str(echo_server.make_url("/api")),
                "authSchemeConfigs": [
                    {"type": "api-key", "apiKey": {"name": "X-Api-Key", "in": "header"}}
                ],
            },
        ]
    }
    env = {"SECRET": CLIENT_SECRET}
    path = str(tmp_path / "state.db")
    key = "q0Z4uSxBV0W7t5UaYWc1Wm3c3S8GdfS3y7bnWJ9cQ+c="  # 32 bytes, base64

    before = await make_planes(tree, store=open_store(path, key), env=env)
    body = create_body("acme", string_credential("canary-persist-key"), template="crm")
    body["externalId"] = "acme-1"
    assert (await before.admin.post(CONNECTIONS, json=body, headers=AUTH)).status == 201
    created = await Drive(server, before).connect(externalId="user-9")
    server.expire_access_tokens()
    response = await before.proxy.get("/gdrive/x", headers={"X-Connection-Id": "user-9"})
    assert response.status == 200
    assert server.grants["refresh_token"] == 1
    refreshed = await before.store.get_token(created["id"])
    assert refreshed is not None and refreshed.token is not None
    # A restart: both planes stop, then the store's opener closes it (a second close, after
    # the data plane's own, is harmless).
    await before.admin.close()
    await before.proxy.close()
    await before.store.close()
    assert "canary-persist-key" not in Path(path).read_bytes().decode("latin-1")

    after = await make_planes(tree, store=open_store(path, key), env=env)
    seen = await (await after.proxy.get("/crm/x", headers={"X-Connection-Id": "acme-1"})).json()
    assert [v for k, v in seen["headers"] if k == "X-Api-Key"] == ["canary-persist-key"]
    kept = await after.store.get_token(created["id"])
    assert kept is not None and kept.token is not None
    assert kept.token.access_token == refreshed.token.access_token  # the newest, not the first
    response = await after.proxy.get("/gdrive/x", headers={"X-Connection-Id": "user-9"})
    assert response.status == 200
    assert server.grants["refresh_token"] == 1  # no refresh needed: the stored token works
    listed = await (await after.admin.get(CONNECTIONS, headers=AUTH)).json()
    assert sorted(c["name"] for c in listed["items"]) == ["acme", "user-9"]
