"""The strict local OAuth 2.0 servers for token tests (`tests/oauth_server.py`: rotating refresh
tokens, counted hits), the client `cid` they know, and credentials seeded with their tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.builders import oauth2_token
from tests.oauth_server import AuthServer, Client, create_auth_app, create_resource_app

SECRET = "canary-client-secret-b71"
PASSWORD = "canary-user-password-4e0"


@dataclass
class Servers:
    server: AuthServer
    token_url: str
    resource_url: str


@pytest.fixture
async def oauth(aiohttp_server: Any) -> Servers:
    """The authorization server (client `cid`, user `alice`) and its resource server."""
    server = AuthServer(clients={"cid": Client(SECRET)}, users={"alice": PASSWORD})
    auth: TestServer = await aiohttp_server(create_auth_app(server))
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    return Servers(server, str(auth.make_url("/token")), str(resource.make_url("")))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def token_credential(
    token_url: str, token: dict[str, Any], expires_at: float | None = None, **oauth2: Any
) -> dict[str, Any]:
    """An authorizationCode credential of client `cid` seeded with `token`, expiring at
    `expires_at` (a Unix time) when given."""
    expiry = iso(expires_at) if expires_at is not None else None
    return oauth2_token(token_url, "cid", SECRET, token, expiry, **oauth2)
