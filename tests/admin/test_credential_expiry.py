"""A credential's `expiresAt` is only ever what a person wrote (docs/admin-api.md): connections
made by the connect flow, by an `oauth2-code` credential and by a GET body POSTed back keep
refreshing past their first access token's expiry, against a provider issuing 2-second tokens
(tests/oauth_server.py); none answers 502 `credential_expired`. Stores written before this was
so are repaired when opened: tests/store/test_repairs.py."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestServer

from tests.admin.oauth2_connect import CLIENT_ID, CLIENT_SECRET, Drive, oauth_template, provider
from tests.admin.planes import AUTH, CONNECTIONS, MakePlanes, create, create_body
from tests.oauth_server import create_resource_app

TOKEN_SECONDS = 2.0


@pytest.mark.slow
async def test_api_made_oauth2_connections_outlive_their_first_token(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    server, auth = await provider(aiohttp_server)
    server.access_ttl = TOKEN_SECONDS
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    template = oauth_template(str(auth.make_url("")).rstrip("/"), str(resource.make_url("")))
    planes = await make_planes({"templates": [template]}, env={"SECRET": CLIENT_SECRET})
    drive = Drive(server, planes)

    by_flow = await drive.connect(externalId="by-flow", connectionName="by-flow")
    # Seed 003: `expiresAt` is when the credential is deleted; a refreshing token has none.
    assert by_flow["expiresAt"] == "0001-01-01T00:00:00Z"  # Go's zero: never
    data = {k: base64.b64decode(v).decode() for k, v in by_flow["data"].items()}
    assert data["expiresAt"]  # the token's own expiry is in `data`

    location = await drive.authorize(await drive.init())
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    code = {"type": "oauth2-code", "data": {"oauth2Code": dict(query)}}
    by_code = await create(
        planes,
        create_body("by-code", {"credential": code}, template="gdrive", externalId="by-code"),
    )

    # The GET body, POSTed back for another account with the secrets filled in (a token a
    # person pasted) and its ids left to the proxy.
    got = await (await planes.admin.get(f"{CONNECTIONS}/{by_code['id']}", headers=AUTH)).json()
    pasted = server.issue(CLIENT_ID)
    got.pop("id")
    got.update(name="by-get", externalId="by-get")
    [entry] = got["credentials"]
    entry.pop("id")
    entry["credential"].pop("id")
    token = entry["credential"]["data"]["oauth2Token"]
    token.update(accessToken=pasted["access_token"], refreshToken=pasted["refresh_token"])
    entry["authSchemeConfig"]["oauth2"]["grant"]["authorizationCode"]["clientSecret"] = (
        CLIENT_SECRET
    )
    body = {"connectionTemplateId": "gdrive", "externalId": "by-get", "connection": got}
    by_get = await create(planes, body)

    names = ("by-flow", "by-code", "by-get")
    for created in (by_code, by_get):
        assert "expiresAt" not in created["credentials"][0]["credential"]
    for _ in range(2):  # two token lifetimes
        for name in names:
            response = await planes.proxy.get("/gdrive/files", headers={"X-Connection-Id": name})
            assert response.status == 200, (name, await response.text())
        await asyncio.sleep(TOKEN_SECONDS + 0.5)
    for name in names:
        response = await planes.proxy.get("/gdrive/files", headers={"X-Connection-Id": name})
        assert response.status == 200, (name, await response.text())
    assert server.grants["refresh_token"] >= 2 * len(names)
    listed = await (await planes.admin.get(CONNECTIONS, headers=AUTH)).json()
    for shown in listed["items"]:
        # The GET shows the token in use (its expiry in `data`), never as the credential's.
        credential = shown["credentials"][0]["credential"]
        assert "expiresAt" not in credential, shown["name"]
        assert credential["data"]["oauth2Token"]["expiresAt"]
