"""The OAuth 2.0 connect flow of the management API driven as a browser drives it (init, the
provider's authorize redirect, the callback), against the local authorization server of
`tests/oauth_server.py` that enforces PKCE; a template for it and its client."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from tests.admin.planes import AUTH, ORG, Planes
from tests.oauth_server import AuthServer, Client, create_auth_app

CLIENT_ID = "drive-client"
CLIENT_SECRET = "canary-client-secret-d41f"
INIT = f"/o/{ORG}/templates/gdrive/oauth2/init"


def oauth_template(auth_url: str, resource_url: str, **oauth2: Any) -> dict[str, Any]:
    return {
        "id": "gdrive",
        "name": "Google Drive (local stand-in)",
        "route": "/gdrive",
        "baseUrl": resource_url + "/drive/v3",
        "authSchemeConfigs": [
            {
                "type": "oauth2",
                "oauth2": {
                    "authorizeUrl": auth_url + "/authorize",
                    "tokenUrl": auth_url + "/token",
                    "defaultScopes": ["drive.readonly"],
                    "grant": {
                        "type": "authorizationCode",
                        "authorizationCode": {"clientId": CLIENT_ID, "clientSecret": "${SECRET}"},
                    },
                    **oauth2,
                },
            }
        ],
    }


class Drive:
    """The authorization server, its resource server and both proxy planes."""

    def __init__(self, server: AuthServer, planes: Planes) -> None:
        self.server = server
        self.planes = planes

    async def init(self, **body: Any) -> str:
        response = await self.planes.admin.post(INIT, json=body, headers=AUTH)
        assert response.status == 200, await response.text()
        url: str = (await response.json())["url"]
        return url

    async def authorize(self, url: str) -> str:
        """What a browser does: open the URL, get redirected; returns the callback URL."""
        async with aiohttp.ClientSession() as browser:
            async with browser.get(url, allow_redirects=False) as response:
                assert response.status == 302, await response.text()
                return response.headers["Location"]

    async def callback(self, location: str) -> aiohttp.ClientResponse:
        """Follow the redirect to the admin listener, as the browser would."""
        async with aiohttp.ClientSession() as browser:
            response = await browser.get(location, allow_redirects=False)
            await response.read()
            return response

    async def connect(self, **body: Any) -> dict[str, Any]:
        response = await self.callback(await self.authorize(await self.init(**body)))
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
        return created


async def provider(aiohttp_server: Any) -> tuple[AuthServer, TestServer]:
    """The local authorization server, knowing the template's client; and where it listens."""
    server = AuthServer(access_ttl=3600)
    server.clients[CLIENT_ID] = Client(secret=CLIENT_SECRET)
    auth: TestServer = await aiohttp_server(create_auth_app(server))
    return server, auth
