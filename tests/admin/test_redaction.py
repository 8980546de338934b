"""Redaction (docs/admin-api.md, docs/security.md invariant 2): no secret in any read without
`include_secrets`; the non-secret fields are shown. OpenInt's `include_secrets` and `refresh_policy`
against a real token server."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
import trustme
from aiohttp.test_utils import TestServer
from ulid import ULID

from tests.admin.planes import AUTH, CONNECTIONS, MakePlanes, Planes, create_body
from tests.oauth_server import AuthServer, Client, create_auth_app, create_resource_app

# Every secret field a connection can hold, each with its own canary.
CANARIES = {
    "apiKey": "canary-apikey-01",
    "password": "canary-password-02",
    "hmac": "canary-hmac-03",
    "binary": "Y2FuYXJ5LWJpbmFyeS0wNA==",  # base64("canary-binary-04")
    "consumerSecret": "canary-consumer-secret-06",
    "token": "canary-oauth1-token-07",
    "tokenSecret": "canary-oauth1-token-secret-08",
    "clientSecret": "canary-client-secret-09",
    "templateClientSecret": "canary-template-client-secret-10",
    "accessToken": "canary-access-token-11",
    "refreshToken": "canary-refresh-token-12",
    "userPassword": "canary-user-password-13",
}


def kitchen_template(base_url: str, token_url: str) -> dict[str, Any]:
    oauth1 = {
        "consumerKey": "ck-05",  # configuration, shown (seed 001)
        "consumerSecret": CANARIES["consumerSecret"],
        "signatureMethod": "sha1",
        "tokenAuth": True,
    }
    return {
        "id": "kitchen",
        "baseUrl": base_url,
        "authSchemeConfigs": [
            {"type": "api-key", "apiKey": {"name": "X-Key", "in": "header"}},
            {"type": "basic-auth"},
            {
                "type": "hmac",
                "hmac": {"name": "X-Sig", "in": "header", "algorithm": "sha256", "encoding": "hex"},
            },
            {
                "type": "hmac",
                "hmac": {
                    "name": "X-Sig2",
                    "in": "header",
                    "algorithm": "sha256",
                    "encoding": "hex",
                },
            },
            {"type": "oauth1", "oauth1": oauth1},
            {
                "type": "oauth2",
                "oauth2": {"tokenUrl": token_url, "grant": {"type": "clientCredentials"}},
            },
            {
                "type": "oauth2",
                "oauth2": {
                    "tokenUrl": token_url,
                    "grant": {
                        "type": "authorizationCode",
                        "authorizationCode": {
                            "clientId": "code-client",
                            "clientSecret": CANARIES["templateClientSecret"],
                        },
                    },
                },
            },
            {
                "type": "oauth2",
                "oauth2": {
                    "tokenUrl": token_url,
                    "grant": {"type": "password", "password": {"clientId": "pw-client"}},
                },
            },
            {"type": "certificate"},
        ],
    }


def kitchen_credentials(cert: trustme.LeafCert, expires_at: str) -> list[dict[str, Any]]:
    def credential(kind: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"credential": {"type": kind, "data": data, **extra}}

    return [
        credential("string", {"string": {"value": CANARIES["apiKey"]}}),
        credential(
            "basic-auth", {"basicAuth": {"username": "ann", "password": CANARIES["password"]}}
        ),
        credential("string", {"string": {"value": CANARIES["hmac"]}}),
        credential("binary", {"binary": {"valueBase64": CANARIES["binary"]}}),
        credential(
            "oauth1-token",
            {"oauth1Token": {"token": CANARIES["token"], "tokenSecret": CANARIES["tokenSecret"]}},
        ),
        credential(
            "oauth2-client",
            {
                "oauth2Client": {
                    "clientId": "cc-client",
                    "clientSecret": CANARIES["clientSecret"],
                    "scopes": ["read"],
                }
            },
        ),
        credential(
            "oauth2-token",
            {
                "oauth2Token": {
                    "accessToken": CANARIES["accessToken"],
                    "refreshToken": CANARIES["refreshToken"],
                    "expiresAt": expires_at,
                    "scopes": ["files"],
                }
            },
        ),
        credential(
            "oauth2-password",
            {"oauth2Password": {"username": "pat", "password": CANARIES["userPassword"]}},
        ),
        credential(
            "certificate",
            {
                "certificate": {
                    "certificate": cert.cert_chain_pems[0].bytes().decode(),
                    "key": cert.private_key_pem.bytes().decode(),
                }
            },
        ),
    ]


@pytest.fixture
async def kitchen(echo_server: TestServer, make_planes: MakePlanes) -> tuple[Planes, str]:
    cert = trustme.CA().issue_cert("client.example")
    planes = await make_planes(
        {"templates": [kitchen_template(str(echo_server.make_url("/")), "http://127.0.0.1:9/t")]}
    )
    body = create_body(
        "everything", *kitchen_credentials(cert, "2030-01-31T12:00:00Z"), template="kitchen"
    )
    response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    assert "PRIVATE KEY" not in await response.text()
    return planes, (await response.json())["id"]


async def test_no_secret_in_any_read(kitchen: tuple[Planes, str]) -> None:
    planes, connection_id = kitchen
    reads = [
        await planes.admin.get(CONNECTIONS, headers=AUTH),
        await planes.admin.get(f"{CONNECTIONS}/{connection_id}", headers=AUTH),
        await planes.admin.get(f"/connection/{connection_id}?refresh_policy=none", headers=AUTH),
        await planes.admin.get(
            f"/connection/{connection_id}?refresh_policy=none&include_secrets=false", headers=AUTH
        ),
    ]
    for response in reads:
        assert response.status == 200
        text = await response.text()
        for name, canary in CANARIES.items():
            assert canary not in text, name
        assert "PRIVATE KEY" not in text


async def test_non_secret_fields_are_shown(kitchen: tuple[Planes, str]) -> None:
    planes, connection_id = kitchen
    got = await (await planes.admin.get(f"{CONNECTIONS}/{connection_id}", headers=AUTH)).json()
    creds = [c["credential"]["data"] for c in got["credentials"]]
    schemes = [c["authSchemeConfig"] for c in got["credentials"]]
    # Secret fields are present and "" (seed 001: required, "redacted when read").
    assert creds[0] == {"string": {"value": ""}}
    assert creds[1] == {"basicAuth": {"username": "ann", "password": ""}}
    assert creds[5] == {
        "oauth2Client": {
            "clientId": "cc-client",
            "clientSecret": "",
            "tokenUrl": "",
            "scopes": ["read"],
        }
    }
    assert creds[6]["oauth2Token"]["expiresAt"] == "2030-01-31T12:00:00Z"
    assert creds[6]["oauth2Token"]["scopes"] == ["files"]
    assert creds[6]["oauth2Token"]["accessToken"] == creds[6]["oauth2Token"]["refreshToken"] == ""
    assert creds[7] == {"oauth2Password": {"username": "pat", "password": ""}}
    assert "BEGIN CERTIFICATE" in creds[8]["certificate"]["certificate"]
    assert creds[8]["certificate"]["key"] == ""
    assert schemes[5]["oauth2"]["tokenUrl"] == "http://127.0.0.1:9/t"
    grant = schemes[6]["oauth2"]["grant"]["authorizationCode"]
    assert grant == {"clientId": "code-client", "clientSecret": ""}
    oauth1 = dict(schemes[4]["oauth1"])
    assert ULID.from_str(oauth1.pop("id"))
    assert oauth1 == {
        "description": "",
        "consumerKey": "ck-05",
        "consumerSecret": "",
        "signatureMethod": "sha1",
        "tokenAuth": True,
    }


async def test_include_secrets_reveals_them(kitchen: tuple[Planes, str]) -> None:
    planes, connection_id = kitchen
    response = await planes.admin.get(
        f"/connection/{connection_id}?include_secrets=true&refresh_policy=none", headers=AUTH
    )
    text = await response.text()
    for name, canary in CANARIES.items():
        assert canary in text, name
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("query", "field"),
    [("include_secrets=yes", "include_secrets"), ("refresh_policy=sometimes", "refresh_policy")],
)
async def test_bad_query_parameters(kitchen: tuple[Planes, str], query: str, field: str) -> None:
    planes, connection_id = kitchen
    response = await planes.admin.get(f"/connection/{connection_id}?{query}", headers=AUTH)
    assert response.status == 400
    assert [f["field"] for f in (await response.json())["fields"]] == [field]


# --- refresh_policy against a real token endpoint ---------------------------------------


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def provider(aiohttp_server: Any, make_planes: MakePlanes) -> tuple[AuthServer, Planes]:
    server = AuthServer()
    server.clients["code-client"] = Client(secret="canary-code-client-secret")
    auth: TestServer = await aiohttp_server(create_auth_app(server))
    resource: TestServer = await aiohttp_server(create_resource_app(server))
    template = {
        "id": "docs",
        "baseUrl": str(resource.make_url("/")),
        "authSchemeConfigs": [
            {
                "type": "oauth2",
                "oauth2": {
                    "tokenUrl": str(auth.make_url("/token")),
                    "grant": {
                        "type": "authorizationCode",
                        "authorizationCode": {
                            "clientId": "code-client",
                            "clientSecret": "canary-code-client-secret",
                        },
                    },
                },
            }
        ],
    }
    return server, await make_planes({"templates": [template]})


async def connect(server: AuthServer, planes: Planes, name: str, expires_at: float) -> str:
    issued = server.issue("code-client")
    token = {
        "accessToken": issued["access_token"],
        "refreshToken": issued["refresh_token"],
        "expiresAt": iso(expires_at),
    }
    body = create_body(
        name,
        {"credential": {"type": "oauth2-token", "data": {"oauth2Token": token}}},
        template="docs",
    )
    response = await planes.admin.post(CONNECTIONS, json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    connection_id: str = (await response.json())["id"]
    return connection_id


async def read_token(planes: Planes, connection_id: str, policy: str | None) -> dict[str, Any]:
    query = "include_secrets=true" + (f"&refresh_policy={policy}" if policy else "")
    response = await planes.admin.get(f"/connection/{connection_id}?{query}", headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["id"] == f"conn_{connection_id}"
    # Seed 004: the token in settings.oauth.credentials, snake_case (expires_in ticks: left out).
    token: dict[str, Any] = body["settings"]["oauth"]["credentials"]
    token.pop("expires_in", None)
    return token


async def test_refresh_policy_on_a_fresh_token(provider: tuple[AuthServer, Planes]) -> None:
    server, planes = provider
    connection_id = await connect(server, planes, "fresh", time.time() + 3000)
    first = await read_token(planes, connection_id, "none")
    assert first["access_token"] in server.access
    assert await read_token(planes, connection_id, None) == first  # auto: fresh, kept
    assert server.hits == 0
    forced = await read_token(planes, connection_id, "force")
    assert server.grants["refresh_token"] == 1
    assert forced["access_token"] != first["access_token"]
    assert forced["refresh_token"] == server.current_refresh_token(first["refresh_token"])
    # The refreshed token is what the store and every later read hold.
    assert await read_token(planes, connection_id, "none") == forced


async def test_auto_refreshes_within_the_skew(provider: tuple[AuthServer, Planes]) -> None:
    server, planes = provider
    connection_id = await connect(server, planes, "stale", time.time() + 30)  # skew is 60 s
    stale = await read_token(planes, connection_id, "none")
    assert server.hits == 0
    fresh = await read_token(planes, connection_id, "auto")
    assert server.grants["refresh_token"] == 1
    assert fresh["access_token"] != stale["access_token"]
    # The redacted read shows the new expiry, and never the token.
    redacted = await (await planes.admin.get(f"{CONNECTIONS}/{connection_id}", headers=AUTH)).json()
    shown = redacted["credentials"][0]["credential"]
    assert shown["data"]["oauth2Token"]["expiresAt"] == fresh["expires_at"]
    assert fresh["access_token"] not in str(redacted)
