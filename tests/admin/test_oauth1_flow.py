"""The OAuth 1.0a three-legged connect flow against a provider the project did not write:
oauthlib's `RequestTokenEndpoint`, `AuthorizationEndpoint`, `AccessTokenEndpoint` and
`ResourceEndpoint` (RFC 5849 §2, §3) behind a small local server, for HMAC-SHA1 and HMAC-SHA256
and each seed `parameterTransmission`, with a templated endpoint URL; then a signed API call the
provider's resource endpoint accepts. Replayed and tampered callbacks get 400."""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from oauthlib.oauth1 import (
    AccessTokenEndpoint,
    AuthorizationEndpoint,
    RequestTokenEndpoint,
    RequestValidator,
    ResourceEndpoint,
)

from proxy.admin import create_admin_app
from tests.admin.conftest import AUTH, ORG, MakePlanes, Planes

CONSUMER_KEY = "acmeconsumerkey00000001"
CONSUMER_SECRET = "canary-consumer-secret-o1"


@dataclass
class Provider(RequestValidator):
    """The provider's storage; every protocol check is oauthlib's own."""

    request_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_tokens: dict[str, str] = field(default_factory=dict)
    nonces: set[str] = field(default_factory=set)
    api_calls: int = 0
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # last request per endpoint

    def __post_init__(self) -> None:
        super().__init__()

    enforce_ssl = False

    @property
    def realms(self) -> list[str]:
        return ["R1"]

    @property
    def dummy_client(self) -> str:
        return "dummyclientkey000000000"

    @property
    def dummy_request_token(self) -> str:
        return "dummyrequesttoken000000"

    @property
    def dummy_access_token(self) -> str:
        return "dummyaccesstoken0000000"

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == CONSUMER_KEY

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return CONSUMER_SECRET

    def validate_timestamp_and_nonce(self, client_key: str, timestamp: str, nonce: str,
                                     request: Any, request_token: Any = None,
                                     access_token: Any = None) -> bool:  # fmt: skip
        if nonce in self.nonces:
            return False
        self.nonces.add(nonce)
        return True

    def validate_redirect_uri(self, client_key: str, redirect_uri: str, request: Any) -> bool:
        return redirect_uri.endswith("/connections/oauth1/callback")

    def get_default_realms(self, client_key: str, request: Any) -> list[str]:
        return []

    def validate_requested_realms(self, client_key: str, realms: Any, request: Any) -> bool:
        return True

    def save_request_token(self, token: Any, request: Any) -> None:
        self.request_tokens[token["oauth_token"]] = {
            "secret": token["oauth_token_secret"],
            "callback": request.redirect_uri,
        }

    def get_request_token_secret(self, client_key: str, token: str, request: Any) -> str:
        return str(self.request_tokens[token]["secret"])

    def validate_request_token(self, client_key: str, token: str, request: Any) -> bool:
        return token in self.request_tokens

    def verify_request_token(self, token: str, request: Any) -> bool:
        return token in self.request_tokens

    def get_realms(self, token: str, request: Any) -> list[str]:
        return []

    def verify_realms(self, token: str, realms: Any, request: Any) -> bool:
        return True

    def save_verifier(self, token: str, verifier: dict[str, str], request: Any) -> None:
        self.request_tokens[token]["verifier"] = verifier["oauth_verifier"]

    def get_redirect_uri(self, token: str, request: Any) -> str:
        return str(self.request_tokens[token]["callback"])

    def validate_verifier(self, client_key: str, token: str, verifier: str, request: Any) -> bool:
        stored = self.request_tokens.get(token, {}).get("verifier")
        return stored is not None and secrets.compare_digest(stored, verifier)

    def invalidate_request_token(self, client_key: str, request_token: str, request: Any) -> None:
        self.request_tokens.pop(request_token, None)

    def save_access_token(self, token: Any, request: Any) -> None:
        self.access_tokens[token["oauth_token"]] = token["oauth_token_secret"]

    def validate_access_token(self, client_key: str, token: str, request: Any) -> bool:
        return token in self.access_tokens

    def get_access_token_secret(self, client_key: str, token: str, request: Any) -> str:
        return self.access_tokens[token]

    def validate_realms(self, client_key: str, token: str, request: Any, uri: Any = None,
                        realms: Any = None) -> bool:  # fmt: skip
        return True


def provider_app(provider: Provider) -> web.Application:
    """`/{account}/requesttoken`, `/authorize`, `/accesstoken` and `/api/...`, all oauthlib."""

    def answer(headers: dict[str, str], body: str | None, status: int) -> web.Response:
        return web.Response(status=status, body=body or "", headers=headers)

    async def parts(request: web.Request) -> tuple[str, str, str, dict[str, str]]:
        uri = f"http://{request.host}{request.raw_path}"
        body = (await request.read()).decode()
        provider.seen[request.path.rsplit("/", 1)[1]] = {
            "query": dict(request.query),
            "headers": dict(request.headers),
            "form": dict(parse_qsl(body)),
        }
        return uri, request.method, body, dict(request.headers)

    async def request_token(request: web.Request) -> web.Response:
        return answer(*RequestTokenEndpoint(provider).create_request_token_response(
            *await parts(request)))  # fmt: skip

    async def authorize(request: web.Request) -> web.Response:
        # The resource owner consents: oauthlib redirects to the callback with a verifier.
        uri, method, body, headers = await parts(request)
        location, _, status = AuthorizationEndpoint(provider).create_authorization_response(
            uri, method, body, headers, realms=[]
        )
        return answer(location, None, status)

    async def access_token(request: web.Request) -> web.Response:
        return answer(*AccessTokenEndpoint(provider).create_access_token_response(
            *await parts(request)))  # fmt: skip

    async def api(request: web.Request) -> web.Response:
        valid, _ = ResourceEndpoint(provider).validate_protected_resource_request(
            *await parts(request)
        )
        provider.api_calls += 1
        return web.json_response({"valid": valid}, status=200 if valid else 401)

    app = web.Application()
    app.router.add_post("/{account}/requesttoken", request_token)
    app.router.add_get("/{account}/authorize", authorize)
    app.router.add_post("/{account}/accesstoken", access_token)
    app.router.add_route("*", "/{account}/api/{tail:.*}", api)
    return app


def template(
    origin: str, method: str, transmission: str, configs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    def endpoint(path: str) -> dict[str, Any]:
        return {
            "url": origin + "/{account}/" + path,
            "parameterTransmission": transmission,
            "additionalParamConfigs": configs or [],
        }

    return {
        "id": "netsuite",
        "route": "/ns",
        "baseUrl": origin + "/acme/api",
        "authSchemeConfigs": [
            {
                "type": "oauth1",
                "oauth1": {
                    "consumerKey": CONSUMER_KEY,
                    "consumerSecret": CONSUMER_SECRET,
                    "signatureMethod": method,
                    "tempCredentialEndpoint": endpoint("requesttoken"),
                    "resourceOwnerAuthorizationEndpoint": endpoint("authorize"),
                    "tokenEndpoint": endpoint("accesstoken"),
                },
            }
        ],
    }


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
    # The temporary credentials were single use: the genuine callback now fails too.
    replay = await follow(location)
    assert replay.status == 400
    assert (await replay.json())["code"] == "invalid_state"
    # A missing placeholder value names the parameter.
    response = await planes.admin.post(
        f"/o/{ORG}/templates/netsuite/oauth1/init", json={}, headers=AUTH
    )
    assert response.status == 400
    assert [f["field"] for f in (await response.json())["fields"]] == ["params.account"]


async def test_temporary_credentials_expire_after_ten_minutes(
    aiohttp_server: Any, make_planes: MakePlanes, aiohttp_client: Any
) -> None:
    _, planes = await start(aiohttp_server, make_planes, "sha1", "AUTH_STYLE_FORM")
    location = await init_and_authorize(planes, params={"account": "acme"})
    later: TestClient[Any, Any] = await aiohttp_client(
        create_admin_app(
            planes.runtime,
            templates=planes.templates,
            store=planes.store,
            clock=lambda: time.time() + 601,
        )
    )
    split = urlsplit(location)
    response = await later.get(f"{split.path}?{split.query}")
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
