"""`jwt-bearer` and `private_key_jwt` through the proxy, against token endpoints that verify
every JWT with PyJWT or Authlib (tests/jwt_provider.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.store import open_store
from proxy.tokens.manager import Backoff
from tests.builders import jwt_bearer, oauth2_client, oauth2_token
from tests.jwt_provider import Issuer, JwtProvider, create_jwt_app, private_pem, public_pem
from tests.plane import MakeApi

# Keys are made once per module: RSA generation takes a moment.
RSA_PEM = private_pem("rsa")
EC_PEM = private_pem("ec")
ED_PEM = private_pem("ed25519")
ISSUER = "svc-canary-issuer"
APP_ID = "123456"
INSTALLATION = "987654"


@dataclass
class Endpoint:
    provider: JwtProvider
    url: str


@pytest.fixture
async def endpoint(aiohttp_server: Any) -> Endpoint:
    provider = JwtProvider()
    server: TestServer = await aiohttp_server(create_jwt_app(provider))
    url = str(server.make_url("")).rstrip("/")
    provider.base_url = url
    return Endpoint(provider, url)


@pytest.mark.parametrize(
    ("pem", "algorithm"), [(RSA_PEM, "RS256"), (EC_PEM, "ES256"), (ED_PEM, "EdDSA")]
)
async def test_rfc7523_grant_verified_by_pyjwt(
    endpoint: Endpoint, make_api: MakeApi, pem: str, algorithm: str
) -> None:
    provider = endpoint.provider
    provider.issuers[ISSUER] = Issuer(public_pem(pem), algorithm, key_id="k1")
    api = await make_api(
        endpoint.url,
        jwt_bearer(
            pem,
            flavor="rfc7523",
            tokenUrl=endpoint.url + "/token",
            issuer=ISSUER,
            subject="user-7",
            scopes=["read", "write"],
            keyId="k1",
            lifetime=120,
        ),
    )
    for _ in range(3):
        response = await api.get("/api/resource/x")
        assert response.status == 200, provider.refused
        assert (await response.json())["principal"] == "user-7"
    assert provider.hits["jwt-bearer"] == 1 and provider.refused == []
    claims = provider.assertions[0]
    assert claims["iss"] == ISSUER and claims["sub"] == "user-7"
    assert claims["aud"] == endpoint.url + "/token"
    assert claims["exp"] - claims["iat"] == 120 and len(claims["jti"]) >= 16
    assert provider.headers[0] == {"alg": algorithm, "typ": "JWT", "kid": "k1"}
    assert provider.forms[0]["scope"] == "read write"


async def test_google_service_account_json_in_a_binary_credential(
    endpoint: Endpoint, make_api: MakeApi
) -> None:
    provider = endpoint.provider
    account = {
        "type": "service_account",
        "project_id": "demo",
        "private_key_id": "canary-kid-0f1",
        "private_key": RSA_PEM,
        "client_email": "robot@demo.iam.gserviceaccount.com",
        "client_id": "1234",
        "token_uri": endpoint.url + "/token",
    }
    provider.issuers[account["client_email"]] = Issuer(
        public_pem(RSA_PEM), "RS256", scope_in_claim=True, key_id="canary-kid-0f1"
    )
    api = await make_api(
        endpoint.url,
        jwt_bearer(
            json.dumps(account),
            kind="binary",
            flavor="google-service-account",
            scopes=["https://www.googleapis.com/auth/cloud-platform"],
        ),
    )
    response = await api.get("/api/resource/projects")
    assert response.status == 200, provider.refused
    claims = provider.assertions[0]
    assert claims["iss"] == account["client_email"] and "sub" not in claims
    assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert "scope" not in provider.forms[0]


async def test_github_app_installation_token(endpoint: Endpoint, make_api: MakeApi) -> None:
    provider = endpoint.provider
    provider.apps[APP_ID] = public_pem(RSA_PEM)
    provider.installations[INSTALLATION] = APP_ID
    # tokenUrl defaults to {baseUrl}/app/installations/{subject}/access_tokens.
    api = await make_api(
        endpoint.url,
        jwt_bearer(RSA_PEM, flavor="github-app", issuer=APP_ID, subject=INSTALLATION),
    )
    response = await api.get("/api/repos/octo/hello")
    assert response.status == 200, provider.refused
    assert (await response.json())["principal"] == f"installation {INSTALLATION}"
    claims = provider.assertions[0]
    assert set(claims) == {"iss", "iat", "exp"} and claims["iss"] == APP_ID
    assert time.time() - 70 <= claims["iat"] <= time.time() - 50
    assert claims["exp"] - claims["iat"] == 600
    assert provider.hits["github"] == 1


async def test_github_app_wrong_key_is_a_502_naming_the_status(
    endpoint: Endpoint, make_api: MakeApi
) -> None:
    provider = endpoint.provider
    provider.apps[APP_ID] = public_pem(private_pem("rsa"))  # another key
    provider.installations[INSTALLATION] = APP_ID
    api = await make_api(
        endpoint.url,
        jwt_bearer(RSA_PEM, flavor="github-app", issuer=APP_ID, subject=INSTALLATION),
    )
    response = await api.get("/api/repos/octo/hello")
    assert response.status == 502
    body = await response.json()
    assert body["code"] == "credential_refresh_failed"
    assert body["details"] == "token_endpoint_status_401"
    assert provider.resource_hits == 0


async def test_concurrent_requests_one_token_call_then_401_one_forced_refresh(
    endpoint: Endpoint, make_api: MakeApi
) -> None:
    provider = endpoint.provider
    provider.delay = 0.2
    provider.issuers[ISSUER] = Issuer(public_pem(EC_PEM), "ES256")
    api = await make_api(
        endpoint.url,
        jwt_bearer(EC_PEM, flavor="rfc7523", tokenUrl=endpoint.url + "/token", issuer=ISSUER),
    )
    responses = await asyncio.gather(*(api.get(f"/api/resource/{i}") for i in range(30)))
    assert [r.status for r in responses] == [200] * 30
    assert provider.hits["jwt-bearer"] == 1
    # The provider revokes every token: the next requests get 401, one refresh, one replay each.
    provider.revoke_all()
    before = provider.resource_hits
    responses = await asyncio.gather(*(api.get(f"/api/resource/{i}") for i in range(10)))
    assert [r.status for r in responses] == [200] * 10
    assert provider.hits["jwt-bearer"] == 2
    assert provider.resource_hits - before == 20  # each: the 401, then the replay


async def test_private_key_jwt_client_credentials_verified_by_joserfc(
    endpoint: Endpoint, make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = endpoint.provider
    provider.clients["cid-pkjwt"] = Issuer(public_pem(EC_PEM), "ES256")
    credential = oauth2_client(
        endpoint.url + "/token", "cid-pkjwt", EC_PEM, clientAuth="private_key_jwt"
    )
    api = await make_api(endpoint.url, credential)
    response = await api.get("/api/resource/x")
    assert response.status == 200, provider.refused
    assert provider.hits["client_credentials"] == 1
    form = provider.forms[0]
    assert "client_secret" not in form and form["client_id"] == "cid-pkjwt"
    assert provider.assertions[0]["aud"] == endpoint.url + "/token"
    assert EC_PEM.splitlines()[1] not in caplog.text


async def test_private_key_jwt_refreshes_an_authorization_code_token(
    endpoint: Endpoint, make_api: MakeApi
) -> None:
    provider = endpoint.provider
    provider.clients["code-client"] = Issuer(public_pem(RSA_PEM), "RS256", key_id="rsa-1")
    provider.refresh["rt-first"] = "code-client"
    credential = oauth2_token(
        endpoint.url + "/token",
        "code-client",
        RSA_PEM,
        {"access_token": "at-unknown", "refresh_token": "rt-first"},
        clientAuth="private_key_jwt",
        clientAssertion={"keyId": "rsa-1", "lifetime": 60},
    )
    api = await make_api(endpoint.url, credential)
    # The pasted token is refused upstream: one refresh with the client assertion, one replay.
    response = await api.get("/api/resource/x")
    assert response.status == 200, provider.refused
    assert provider.hits["refresh_token"] == 1 and "rt-first" not in provider.refresh
    [form] = provider.forms
    assert form["client_id"] == "code-client" and "client_secret" not in form
    claims = provider.assertions[0]
    assert claims["exp"] - claims["iat"] == 60
    assert RSA_PEM.splitlines()[1] not in str(provider.forms)


@pytest.mark.slow
async def test_two_second_tokens_across_lifetimes_restarts_and_replicas(
    endpoint: Endpoint, make_api: MakeApi, tmp_path: Path
) -> None:
    """Day two, compressed: 2-second tokens over several lifetimes, two replicas on one store
    under steady load, one restarted midway; one token call per expiry, no failed request."""
    provider = endpoint.provider
    provider.ttl = 2.0
    provider.issuers[ISSUER] = Issuer(public_pem(RSA_PEM), "RS256")
    credential = jwt_bearer(
        RSA_PEM, flavor="rfc7523", tokenUrl=endpoint.url + "/token", issuer=ISSUER
    )
    db = str(tmp_path / "state.db")
    replicas = [await make_api(endpoint.url, credential, open_store(db)) for _ in range(2)]
    statuses: list[int] = []

    async def load(api: TestClient[Any, Any], until: float) -> None:
        while time.monotonic() < until:
            statuses.extend(
                r.status
                for r in await asyncio.gather(*(api.get("/api/resource/d") for _ in range(3)))
            )
            await asyncio.sleep(0.05)

    started = time.time()
    await asyncio.gather(*(load(api, time.monotonic() + 3.5) for api in replicas))
    # A restart: replica 0 goes away, a new process on the same store takes its place.
    await replicas[0].close()
    replicas[0] = await make_api(endpoint.url, credential, open_store(db))
    await asyncio.gather(*(load(api, time.monotonic() + 3.5) for api in replicas))
    elapsed = time.time() - started
    assert statuses and set(statuses) == {200}, provider.refused
    # Refreshed a quarter of the lifetime ahead: one call per ~1.5 s, never one per replica.
    calls = provider.hits["jwt-bearer"]
    assert 3 <= calls <= elapsed / 1.5 + 2, (calls, elapsed)
    assert provider.refused == []


async def test_a_restart_uses_the_stored_token_and_a_changed_setting_gets_a_new_one(
    endpoint: Endpoint, make_api: MakeApi, tmp_path: Path
) -> None:
    provider = endpoint.provider
    provider.issuers[ISSUER] = Issuer(public_pem(RSA_PEM), "RS256")
    db = str(tmp_path / "state.db")
    settings: dict[str, Any] = {
        "flavor": "rfc7523",
        "tokenUrl": endpoint.url + "/token",
        "issuer": ISSUER,
    }
    first = await make_api(endpoint.url, jwt_bearer(RSA_PEM, **settings), open_store(db))
    assert (await first.get("/api/resource/a")).status == 200
    await first.close()
    again = await make_api(endpoint.url, jwt_bearer(RSA_PEM, **settings), open_store(db))
    assert (await again.get("/api/resource/a")).status == 200
    assert provider.hits["jwt-bearer"] == 1  # the stored token, still alive, served on
    await again.close()
    # Other scopes are another token: the stored one is not used for them.
    scoped = jwt_bearer(RSA_PEM, **settings, scopes=["admin"])
    changed = await make_api(endpoint.url, scoped, open_store(db))
    assert (await changed.get("/api/resource/a")).status == 200
    assert provider.hits["jwt-bearer"] == 2 and provider.forms[-1]["scope"] == "admin"


async def test_invalid_grant_is_retried_with_backoff_not_a_dead_end(
    endpoint: Endpoint, make_api: MakeApi
) -> None:
    provider = endpoint.provider  # the issuer is not registered yet: invalid_grant
    settings: dict[str, Any] = {
        "flavor": "rfc7523",
        "tokenUrl": endpoint.url + "/token",
        "issuer": ISSUER,
    }
    api = await make_api(endpoint.url, jwt_bearer(ED_PEM, **settings), backoff=Backoff(base=0.3))
    response = await api.get("/api/resource/x")
    assert response.status == 502
    body = await response.json()
    assert body["code"] == "credential_refresh_failed" and body["details"] == "invalid_grant"
    # Backing off: refused at once, without a token call.
    assert (await api.get("/api/resource/x")).status == 502
    assert provider.hits["jwt-bearer"] == 1
    provider.issuers[ISSUER] = Issuer(public_pem(ED_PEM), "EdDSA")
    await asyncio.sleep(0.4)
    assert (await api.get("/api/resource/x")).status == 200
    assert provider.hits["jwt-bearer"] == 2
