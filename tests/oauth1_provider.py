"""A real OAuth 1.0a provider the project did not write: oauthlib's `RequestTokenEndpoint`,
`AuthorizationEndpoint`, `AccessTokenEndpoint` and `ResourceEndpoint` (RFC 5849 §2, §3) behind a
small aiohttp app, and the three-legged template that connects to it. Shared by the connect-flow
tests and the tests of `oauth1` credentials in the file."""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from oauthlib.oauth1 import (
    AccessTokenEndpoint,
    AuthorizationEndpoint,
    RequestTokenEndpoint,
    ResourceEndpoint,
)

from tests.oauth1_verifier import SingleUseNonces

CONSUMER_KEY = "acmeconsumerkey00000001"
CONSUMER_SECRET = "canary-consumer-secret-o1"


@dataclass
class Provider(SingleUseNonces):
    """The provider's storage; every protocol check is oauthlib's own."""

    request_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_tokens: dict[str, str] = field(default_factory=dict)
    nonces: set[str] = field(default_factory=set)
    api_calls: int = 0
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # last request per endpoint
    hits: Counter[str] = field(default_factory=Counter)  # requests per endpoint

    def __post_init__(self) -> None:
        super().__init__()

    realms = ["R1"]
    dummy_client = "dummyclientkey000000000"
    dummy_request_token = "dummyrequesttoken000000"
    dummy_access_token = "dummyaccesstoken0000000"

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == CONSUMER_KEY

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return CONSUMER_SECRET

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
        name = request.path.rsplit("/", 1)[1]
        provider.hits[name] += 1
        provider.seen[name] = {
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
