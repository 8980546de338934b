"""The OAuth 1.0a three-legged connect flow against a provider the project did not write:
oauthlib's `RequestTokenEndpoint`, `AuthorizationEndpoint`, `AccessTokenEndpoint` and
`ResourceEndpoint` (RFC 5849 §2, §3) behind a small local server, for HMAC-SHA1 and HMAC-SHA256
and each seed `parameterTransmission`, with a templated endpoint URL; then a signed API call the
provider's resource endpoint accepts. Replayed and tampered callbacks get 400."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.admin.planes import AUTH, ORG, MakePlanes, Planes, callback_later
from tests.oauth1_provider import Provider, provider_app, template


async def start(
    aiohttp_server: Any,
    make_planes: MakePlanes,
    method: str,
    transmission: str,
    configs: list[dict[str, Any]] | None = None,
) -> tuple[Provider, Planes]:
    provider = Provider()
    server: TestServer = await aiohttp_server(provider_app(provider))
    origin = str(server.make_url("")).rstrip("/")
    planes = await make_planes({"templates": [template(origin, method, transmission, configs)]})
    return provider, planes


async def init_and_authorize(planes: Planes, **body: Any) -> str:
    response = await planes.admin.post(
        f"/o/{ORG}/templates/netsuite/oauth1/init", json=body, headers=AUTH
    )
    assert response.status == 200, await response.text()
    url: str = (await response.json())["url"]
    assert urlsplit(url).path == "/acme/authorize"  # {account} filled from params
    async with aiohttp.ClientSession() as browser:
        async with browser.get(url, allow_redirects=False) as consent:
            assert consent.status == 302, await consent.text()
            return consent.headers["Location"]


async def follow(location: str) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as browser:
        response = await browser.get(location, allow_redirects=False)
        await response.read()
        return response


@pytest.mark.parametrize("method", ["sha1", "sha256"])
@pytest.mark.parametrize(
    "transmission", ["AUTH_STYLE_AUTHORIZATION_HEADER", "AUTH_STYLE_FORM", "AUTH_STYLE_QUERY"]
)
async def test_three_legged_flow_then_a_signed_call(
    aiohttp_server: Any, make_planes: MakePlanes, method: str, transmission: str
) -> None:
    provider, planes = await start(aiohttp_server, make_planes, method, transmission)
    location = await init_and_authorize(
        planes, connectionName="acme", externalId="user-5", params={"account": "acme"}
    )
    callback = await follow(location)
    assert callback.status == 201, await callback.text()
    created = await callback.json()
    assert created["type"] == "Raw" and created["redactFields"] == ["token", "tokenSecret"]
    for value in created["data"].values():
        base64.b64decode(value, validate=True)
    [(token, token_secret)] = provider.access_tokens.items()
    assert token not in str(created) and token_secret not in str(created)
    response = await planes.proxy.get("/ns/records?limit=5", headers={"X-Connection-Id": "user-5"})
    assert response.status == 200, await response.text()
    assert (await response.json())["valid"] is True and provider.api_calls == 1


async def test_replayed_and_tampered_callbacks_are_400(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    _, planes = await start(
        aiohttp_server, make_planes, "sha256", "AUTH_STYLE_AUTHORIZATION_HEADER"
    )
    location = await init_and_authorize(planes, params={"account": "acme"})
    query = parse_qs(urlsplit(location).query)
    tampered = location.replace(query["oauth_verifier"][0], "x" * len(query["oauth_verifier"][0]))
    refused = await follow(tampered)
    assert refused.status == 400, await refused.text()
    # A wrong verifier does not use up the flow: the genuine callback still connects.
    genuine = await follow(location)
    assert genuine.status == 201, await genuine.text()
    # The temporary credentials were single use once exchanged: a replay fails.
    replay = await follow(location)
    assert replay.status == 400
    assert (await replay.json())["code"] == "invalid_state"
    # A missing placeholder value names the parameter.
    response = await planes.admin.post(
        f"/o/{ORG}/templates/netsuite/oauth1/init", json={}, headers=AUTH
    )
    assert response.status == 400
    assert [f["field"] for f in (await response.json())["fields"]] == ["params.account"]


async def test_wrong_verifiers_are_bounded(aiohttp_server: Any, make_planes: MakePlanes) -> None:
    """Each wrong verifier is 400 and leaves the flow; after five the flow is used up."""
    _, planes = await start(
        aiohttp_server, make_planes, "sha256", "AUTH_STYLE_AUTHORIZATION_HEADER"
    )
    location = await init_and_authorize(planes, params={"account": "acme"})
    verifier = parse_qs(urlsplit(location).query)["oauth_verifier"][0]
    for attempt in range(5):
        wrong = await follow(location.replace(verifier, f"wrong{attempt}"))
        assert wrong.status == 400
        assert (await wrong.json())["code"] == "oauth1_endpoint_failed"
    used_up = await follow(location)
    assert used_up.status == 400
    assert (await used_up.json())["code"] == "invalid_state"


@pytest.mark.parametrize("refusal", ["denied", "error"])
async def test_a_denied_authorisation_is_the_providers_answer(
    aiohttp_server: Any, make_planes: MakePlanes, refusal: str
) -> None:
    provider, planes = await start(aiohttp_server, make_planes, "sha1", "AUTH_STYLE_FORM")
    response = await planes.admin.post(
        f"/o/{ORG}/templates/netsuite/oauth1/init",
        json={"connectionName": "acme", "params": {"account": "acme"}},
        headers=AUTH,
    )
    url = (await response.json())["url"]
    temporary = parse_qs(urlsplit(url).query)["oauth_token"][0]
    # What providers put on the redirect when the user says no: `denied=<token>` (the common
    # OAuth 1.0a convention), or `error=` beside the token.
    params = (
        {"denied": temporary}
        if refusal == "denied"
        else {"error": "access_denied", "oauth_token": temporary}
    )
    refused = await planes.admin.get("/connections/oauth1/callback", params=params)
    assert refused.status == 400, await refused.text()
    error = await refused.json()
    assert error["code"] == "access_denied" and error["details"] == "access_denied"
    assert provider.hits["accesstoken"] == 0
    assert await planes.store.list_connections() == []
    # The flow was used up: a later consent for the same temporary token cannot complete it.
    async with aiohttp.ClientSession() as browser:
        async with browser.get(url, allow_redirects=False) as consent:
            location = consent.headers["Location"]
    late = await follow(location)
    assert late.status == 400
    assert (await late.json())["code"] == "invalid_state"
    assert await planes.store.list_connections() == []


async def test_temporary_credentials_expire_after_ten_minutes(
    aiohttp_server: Any, make_planes: MakePlanes, aiohttp_client: Any
) -> None:
    _, planes = await start(aiohttp_server, make_planes, "sha1", "AUTH_STYLE_FORM")
    location = await init_and_authorize(planes, params={"account": "acme"})
    response = await callback_later(planes, location, aiohttp_client)
    assert response.status == 400
    assert (await response.json())["code"] == "invalid_state"


async def test_oauth1_credential_given_to_create_is_exchanged_once(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    """Seed `oauth1` credential: a front end took the provider's redirect and hands over
    `{state, oauthToken, oauthVerifier}`; create exchanges it at tokenEndpoint."""
    provider, planes = await start(aiohttp_server, make_planes, "sha256", "AUTH_STYLE_FORM")
    location = await init_and_authorize(planes, params={"account": "acme"})
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    value = {
        "state": "",
        "oauthToken": query["oauth_token"],
        "oauthVerifier": query["oauth_verifier"],
    }
    body: dict[str, Any] = {
        "connectionTemplateId": "netsuite",
        "externalId": "user-8",
        "connection": {
            "name": "acme",
            "credentials": [{"credential": {"type": "oauth1", "data": {"oauth1": value}}}],
        },
    }
    response = await planes.admin.post(f"/o/{ORG}/connections", json=body, headers=AUTH)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["credentials"][0]["credential"]["type"] == "oauth1-token"
    response = await planes.proxy.get("/ns/records", headers={"X-Connection-Id": "user-8"})
    assert response.status == 200 and (await response.json())["valid"] is True
    # Used up: the same temporary credentials again are a 400 naming the field.
    body["externalId"], body["connection"]["name"] = "user-9", "other"
    response = await planes.admin.post(f"/o/{ORG}/connections", json=body, headers=AUTH)
    assert response.status == 400
    fields = [f["field"] for f in (await response.json())["fields"]]
    assert fields == ["connection.credentials[0].credential.data.oauth1.oauthToken"]


def config(name: str, location: str, usages: str, **extra: Any) -> dict[str, Any]:
    return {"parameterName": name, "location": location, "usages": usages, **extra}


async def test_parameter_configs_are_placed_by_location_for_their_usages(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    configs = [
        config("realm", "LOCATION_HEADER_PARAMETER", "USAGE_UNKNOWN"),
        config("lang", "LOCATION_BODY", "USAGE_TEMP_CREDENTIAL_ENDPOINT", targetName="language"),
        config("role", "LOCATION_QUERY", "USAGE_TOKEN_REQUEST_ENDPOINT"),
        config("tenant", "LOCATION_HEADER", "USAGE_UNKNOWN", targetName="X-Tenant"),
        config("account", "LOCATION_ENDPOINT", "USAGE_UNKNOWN", required=True),
        config("debug", "LOCATION_IGNORE", "USAGE_UNKNOWN"),
    ]
    provider, planes = await start(
        aiohttp_server, make_planes, "sha256", "AUTH_STYLE_AUTHORIZATION_HEADER", configs
    )
    params = {"account": "acme", "realm": "R1", "lang": "en", "role": "admin", "tenant": "t1",
              "debug": "on"}  # fmt: skip
    location = await init_and_authorize(planes, externalId="user-6", params=params)
    callback = await follow(location)
    assert callback.status == 201, await callback.text()  # oauthlib verified both signatures
    temp, token = provider.seen["requesttoken"], provider.seen["accesstoken"]
    assert temp["headers"]["Authorization"].startswith('OAuth realm="R1", ')
    assert temp["form"] == {"language": "en"} and "role" not in temp["query"]
    assert token["query"] == {"role": "admin"} and "language" not in token["form"]
    for seen in (temp, token):
        assert seen["headers"]["X-Tenant"] == "t1"
        assert "debug" not in str(seen)
    # The realm stays on the token: API calls carry it too.
    response = await planes.proxy.get("/ns/records", headers={"X-Connection-Id": "user-6"})
    assert response.status == 200
    assert provider.seen["records"]["headers"]["Authorization"].startswith('OAuth realm="R1"')


async def test_connecting_again_updates_the_same_connection(
    aiohttp_server: Any, make_planes: MakePlanes
) -> None:
    provider, planes = await start(aiohttp_server, make_planes, "sha1", "AUTH_STYLE_QUERY")
    ids = []
    for _ in range(2):
        location = await init_and_authorize(planes, externalId="user-7", params={"account": "acme"})
        callback = await follow(location)
        assert callback.status == 201, await callback.text()
        ids.append((await callback.json())["connectionId"])
    assert ids[0] == ids[1] and len(provider.access_tokens) == 2
    newest = list(provider.access_tokens)[-1]
    provider.access_tokens = {newest: provider.access_tokens[newest]}  # the old token revoked
    response = await planes.proxy.get("/ns/records", headers={"X-Connection-Id": "user-7"})
    assert response.status == 200  # signed with the new token
