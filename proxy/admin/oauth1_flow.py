"""The OAuth 1.0a three-legged connect flow (RFC 5849 §2) for seed `AuthSchemeConfigOAuth1`
templates with `tokenAuth: false`.

- `initialise` (POST .../templates/{id}/oauth1/init): temporary credentials from
  `tempCredentialEndpoint` (§2.1, `oauth_callback` = the admin callback), kept in the store —
  sealed there, single use, 10 minutes — under `oauth1:<oauth_token>`; answers `{url}` = the
  `resourceOwnerAuthorizationEndpoint` with `oauth_token` (§2.2).
- `callback` (GET /connections/oauth1/callback): `oauth_token` + `oauth_verifier` → token
  credentials from `tokenEndpoint` (§2.3) → `oauth1-token` credential → connection created or
  updated → 201 in the callback shape of seed 003.

Each endpoint is a seed `Endpoint`: `{placeholders}` in its `url` come from the init body's
`params`; `parameterTransmission` puts the protocol parameters in the Authorization header, the
form body or the query (§3.5); `additionalParamConfigs` whose `usages` name this request (or
`USAGE_UNKNOWN`: every request) are placed by `location`. Requests never follow redirects.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from ..config import models as m
from ..connection import CompiledConnection
from ..errors import FieldError, InvalidRequest, NotFound, ProxyError
from ..schemes.base import new_nonce
from ..schemes.oauth1 import (
    METHOD_NAMES,
    SignatureMethod,
    authorization_header,
    base_string_uri,
    hmac_signature,
    normalize_parameters,
    signature_base_string,
)
from ..store import FlowState
from ..templates import CompiledTemplate, TemplateRoute, new_id
from .connections import iso8601, save_connection
from .context import ADMIN, Admin, ValidationFailed, json_response, read_body
from .oauth2 import attach_credential, connection_name
from .redact import to_json

CALLBACK_PATH = "/connections/oauth1/callback"
FLOW_TTL = 600.0  # temporary credentials are single use and expire after 10 minutes
STATE_PREFIX = "oauth1:"
MAX_RESPONSE_BYTES = 64 * 1024
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
TEMP = "USAGE_TEMP_CREDENTIAL_ENDPOINT"
TOKEN = "USAGE_TOKEN_REQUEST_ENDPOINT"


class OAuth1Init(m.SeedModel):
    """Ours: which connection the callback creates or updates, and the values for
    `{placeholders}` and parameter configs."""

    connection_name: m.NonEmpty | None = None
    external_id: m.NonEmpty | None = None
    params: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Signed:
    """One signed endpoint request; secrets stay out of `repr()` by leaving the fields out."""

    url: str
    headers: dict[str, str]
    body: bytes


def fill_url(template: str, params: Mapping[str, str], field: str) -> str:
    """`https://{accountId}.example.com/x` with `params["accountId"]` (percent-encoded)."""
    missing = [name for name in _PLACEHOLDER.findall(template) if name not in params]
    if missing:
        raise ValidationFailed(
            "the body is invalid",
            [FieldError(f"params.{name}", f"required by {field}") for name in missing],
        )
    return _PLACEHOLDER.sub(lambda match: quote(params[match.group(1)], safe=""), template)


def sign_request(
    method: str,
    url: str,
    *,
    oauth: Sequence[tuple[str, str]],
    consumer_secret: str,
    token_secret: str,
    signature_method: SignatureMethod,
    transmission: str,
    configs: Sequence[m.ParameterConfig],
    usage: str,
    params: Mapping[str, str],
) -> Signed:
    """RFC 5849 §3: sign `oauth` (+ the extra parameters) for `method url` and place them.

    Raises:
        ValidationFailed: a `required` parameter config without a value in `params`.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    headers: dict[str, str] = {}
    body_params: list[tuple[str, str]] = []
    header_params: list[tuple[str, str]] = []
    realm: str | None = None
    missing: list[FieldError] = []
    for config in configs:
        if config.location == "LOCATION_IGNORE" or config.usages not in (usage, "USAGE_UNKNOWN"):
            continue
        value = params.get(config.parameter_name)
        if value is None:
            if config.required:
                missing.append(FieldError(f"params.{config.parameter_name}", "required"))
            continue
        name = config.target_name or config.parameter_name
        match config.location:
            case "LOCATION_BODY":
                body_params.append((name, value))
            case "LOCATION_HEADER":
                headers[name] = value
            case "LOCATION_QUERY":
                query.append((name, value))
            case "LOCATION_HEADER_PARAMETER":
                if name == "realm":
                    realm = value  # §3.4.1.3.1: not signed
                else:
                    header_params.append((name, value))
            case "LOCATION_ENDPOINT":
                pass  # filled into the URL's {placeholders}
    if missing:
        raise ValidationFailed("the body is invalid", missing)
    protocol = [
        *oauth,
        ("oauth_nonce", new_nonce()),
        ("oauth_signature_method", METHOD_NAMES[signature_method]),
        ("oauth_timestamp", str(int(time.time()))),
        ("oauth_version", "1.0"),
    ]
    signed = [*query, *protocol, *header_params, *body_params]
    origin = f"{parts.scheme}://{parts.netloc}"
    base = signature_base_string(
        method, base_string_uri(origin, parts.path), normalize_parameters(signed)
    )
    signature = hmac_signature(base, consumer_secret, token_secret, signature_method)
    protocol.append(("oauth_signature", signature))
    match transmission:
        case "AUTH_STYLE_FORM":
            body_params += protocol
        case "AUTH_STYLE_QUERY":
            query += protocol
        case _:
            headers["Authorization"] = authorization_header(realm, [*protocol, *header_params])
            protocol = []
    if transmission != "AUTH_STYLE_AUTHORIZATION_HEADER" and (header_params or realm):
        headers["Authorization"] = authorization_header(realm, header_params)
    body = b""
    if body_params or method == "POST":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode(body_params, quote_via=quote).encode()
    target = urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote), "")
    )
    return Signed(target, headers, body)


async def post_form(signed: Signed, refused: int = 502) -> dict[str, str]:
    """POST the signed request; the form-encoded answer (§2.1, §2.3). A refusal (4xx) is
    `refused` (400 at the callback: a tampered or stale verifier is the caller's to retry);
    anything else is 502."""
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(
                signed.url, data=signed.body, headers=signed.headers, allow_redirects=False
            ) as response:
                raw = await response.content.read(MAX_RESPONSE_BYTES)
                status = response.status
    except (aiohttp.ClientError, TimeoutError):
        raise ProxyError(
            "oauth1_endpoint_failed", "the OAuth 1.0a endpoint could not be reached", status=502
        ) from None
    answer = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if status != 200 or "oauth_token" not in answer or "oauth_token_secret" not in answer:
        rejected = 400 <= status < 500
        raise ProxyError(
            "oauth1_endpoint_failed",
            "the OAuth 1.0a endpoint refused the request",
            status=refused if rejected else 502,
            proxy_status="proxy_internal_response" if rejected and refused < 500 else None,
            details=f"status {status}",
        )
    return answer


def oauth1_scheme(template: CompiledTemplate) -> tuple[int, m.OAuth1SchemeConfig]:
    """The template's three-legged `oauth1` scheme and its index; any other scheme must be none."""
    found: tuple[int, m.OAuth1SchemeConfig] | None = None
    for index, auth in enumerate(template.model.auth_scheme_configs):
        if found is None and isinstance(auth, m.OAuth1SchemeConfig) and not auth.oauth1.token_auth:
            found = (index, auth)
        elif not isinstance(auth, m.NoneSchemeConfig):
            raise InvalidRequest(
                "validation_failed",
                "the OAuth 1.0a connect flow needs a template whose only secret is one oauth1 "
                "scheme with tokenAuth false",
            )
    if found is None:
        raise InvalidRequest("validation_failed", "the template has no three-legged oauth1 scheme")
    return found


def _endpoints(auth: m.OAuth1SchemeConfig) -> tuple[m.Endpoint, m.Endpoint, m.Endpoint]:
    params = auth.oauth1
    temp, owner, token = (
        params.temp_credential_endpoint,
        params.resource_owner_authorization_endpoint,
        params.token_endpoint,
    )
    assert temp is not None and owner is not None and token is not None  # checked at load
    return temp, owner, token


def callback_uri(admin: Admin) -> str:
    return admin.redirect_uri.rsplit("/connections/", 1)[0] + CALLBACK_PATH


async def initialise(request: web.Request) -> web.Response:
    """Temporary credentials (§2.1) → `{"url": resource owner authorization URL}` (§2.2)."""
    admin = request.app[ADMIN]
    admin.check_organisation(request)
    route = admin.templates.get(request.match_info["template_id"])
    if route is None:
        raise NotFound("not_found", "no template has this id")
    body = await read_body(request, OAuth1Init)
    index, auth = oauth1_scheme(route.template)
    temp, owner, _ = _endpoints(auth)
    here = "authSchemeConfig.oauth1"
    temp_url = fill_url(temp.url, body.params, f"{here}.tempCredentialEndpoint.url")
    owner_url = fill_url(owner.url, body.params, f"{here}.resourceOwnerAuthorizationEndpoint.url")
    params = auth.oauth1
    signed = sign_request(
        "POST",
        temp_url,
        oauth=[
            ("oauth_callback", callback_uri(admin)),
            ("oauth_consumer_key", params.consumer_key.get_secret_value()),
        ],
        consumer_secret=params.consumer_secret.get_secret_value(),
        token_secret="",
        signature_method=params.signature_method,
        transmission=temp.parameter_transmission,
        configs=temp.additional_param_configs,
        usage=TEMP,
        params=body.params,
    )
    answer = await post_form(signed)
    await admin.store.put_flow(
        FlowState(
            state=STATE_PREFIX + answer["oauth_token"],
            code_verifier=answer["oauth_token_secret"],  # sealed by the store
            template_id=route.template.id,
            organisation_id=admin.organisation_id,
            redirect_uri=callback_uri(admin),
            expires_at=admin.clock() + FLOW_TTL,
            connection_name=body.connection_name,
            external_id=body.external_id,
            extra={"kind": "oauth1", "schemeIndex": index, "params": dict(body.params)},
        )
    )
    parts = urlsplit(owner_url)
    query = [
        *parse_qsl(parts.query, keep_blank_values=True),
        ("oauth_token", answer["oauth_token"]),
    ]
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    return json_response({"url": url})


async def callback(request: web.Request) -> web.Response:
    """`oauth_token` + `oauth_verifier` → token credentials (§2.3) → connection → 201."""
    admin = request.app[ADMIN]
    query = request.query
    missing = [
        FieldError(name, "required")
        for name in ("oauth_token", "oauth_verifier")
        if not query.get(name)
    ]
    if missing:
        raise ValidationFailed("the callback needs oauth_token and oauth_verifier", missing)
    flow = await admin.store.take_flow(STATE_PREFIX + query["oauth_token"], now=admin.clock())
    route = admin.templates.get(flow.template_id) if flow is not None else None
    if (
        flow is None
        or route is None
        or flow.organisation_id != admin.organisation_id
        or flow.extra.get("kind") != "oauth1"
    ):
        raise InvalidRequest(
            "invalid_state", "unknown, already used or expired oauth_token: start the flow again"
        )
    index, auth = oauth1_scheme(route.template)
    answer = await exchange_verifier(auth, flow, query["oauth_token"], query["oauth_verifier"])
    connection = _connect(admin, route, flow, index, auth, answer)
    await save_connection(admin, route, connection)
    credential = connection.model.credentials[index].credential
    assert isinstance(credential, m.OAuth1TokenCredential)
    shown = to_json(credential.data.oauth1_token)
    every = to_json(credential.data.oauth1_token, include_secrets=True)
    body: dict[str, Any] = {
        "id": connection.schemes[index].credential_id,
        "organisationID": admin.organisation_id,
        "name": credential.name or connection.name,
        "type": "Raw",  # seed 003: a value used as it is, no refresh
        "data": {key: _b64(value) for key, value in shown.items()},
        "redactFields": [name for name in every if name not in shown],
        "connectionId": connection.id,
    }
    return json_response(body, status=201)


async def exchange_verifier(
    auth: m.OAuth1SchemeConfig, flow: FlowState, oauth_token: str, verifier: str
) -> dict[str, str]:
    """RFC 5849 §2.3: temporary credentials + verifier → token credentials at tokenEndpoint,
    signed with the temporary secret the flow kept. A refusal is a 400."""
    _, _, token_endpoint = _endpoints(auth)
    flow_params: dict[str, str] = dict(flow.extra.get("params", {}))
    url = fill_url(token_endpoint.url, flow_params, "authSchemeConfig.oauth1.tokenEndpoint.url")
    params = auth.oauth1
    signed = sign_request(
        "POST",
        url,
        oauth=[
            ("oauth_consumer_key", params.consumer_key.get_secret_value()),
            ("oauth_token", oauth_token),
            ("oauth_verifier", verifier),
        ],
        consumer_secret=params.consumer_secret.get_secret_value(),
        token_secret=flow.code_verifier,
        signature_method=params.signature_method,
        transmission=token_endpoint.parameter_transmission,
        configs=token_endpoint.additional_param_configs,
        usage=TOKEN,
        params=flow_params,
    )
    return await post_form(signed, refused=400)


async def exchange_oauth1_credential(
    admin: Admin, auth: m.OAuth1SchemeConfig, credential: m.OAuth1Credential, here: str
) -> m.OAuth1TokenCredential:
    """A seed `oauth1` credential (`{state, oauthToken, oauthVerifier}`: a front end took the
    provider's redirect) exchanged once for the `oauth1-token` that replaces it. Only a flow
    this proxy's `oauth1/init` started knows the temporary secret; its state is used up."""
    value = credential.data.oauth1
    flow = await admin.store.take_flow(STATE_PREFIX + value.oauth_token, now=admin.clock())
    if flow is None or flow.organisation_id != admin.organisation_id:
        raise ValidationFailed(
            "the connection is invalid",
            [
                FieldError(
                    f"{here}.credential.data.oauth1.oauthToken",
                    "unknown, used or expired temporary credentials: start with oauth1/init",
                )
            ],
        )
    verifier = value.oauth_verifier.get_secret_value()
    answer = await exchange_verifier(auth, flow, value.oauth_token, verifier)
    return m.OAuth1TokenCredential.model_validate(
        {
            "type": "oauth1-token",
            "id": credential.id,
            "organisationId": credential.organisation_id,
            "name": credential.name,
            "data": {"oauth1Token": _token_value(auth, flow, answer)},
        }
    )


def _b64(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return base64.b64encode(text.encode()).decode("ascii")


def _realm(auth: m.OAuth1SchemeConfig, params: Mapping[str, str]) -> list[m.NameValue]:
    """A `realm` header parameter of the token endpoint also goes on every signed API call."""
    _, _, token = _endpoints(auth)
    for config in token.additional_param_configs:
        name = config.target_name or config.parameter_name
        if config.location == "LOCATION_HEADER_PARAMETER" and name == "realm":
            value = params.get(config.parameter_name)
            if value is not None:
                return [m.NameValue(name="realm", value=value)]
    return []


def _connect(
    admin: Admin,
    route: TemplateRoute,
    flow: FlowState,
    index: int,
    auth: m.OAuth1SchemeConfig,
    answer: Mapping[str, str],
) -> CompiledConnection:
    """The flow's connection with the new `oauth1-token` credential."""
    _, name = connection_name(route, flow)
    credential = m.OAuth1TokenCredential.model_validate(
        {
            "type": "oauth1-token",
            "id": new_id(),
            "name": name,
            "data": {"oauth1Token": _token_value(auth, flow, answer)},
        }
    )
    entry = m.ConnectionCredential(id=credential.id, auth_scheme_config=auth, credential=credential)
    now = iso8601(admin.clock())
    return attach_credential(route, flow, index, entry, now, "oauth1_endpoint_failed")


def _token_value(
    auth: m.OAuth1SchemeConfig, flow: FlowState, answer: Mapping[str, str]
) -> dict[str, Any]:
    """Seed `CredentialDataOAuth1Token` from the token endpoint's answer (§2.3)."""
    realm = _realm(auth, dict(flow.extra.get("params", {})))
    return {
        "token": answer["oauth_token"],
        "tokenSecret": answer["oauth_token_secret"],
        "additionalParams": [p.model_dump() for p in realm],
    }
