"""OAuth 1.0a endpoint requests (RFC 5849 §2) for seed `Endpoint`s, shared by the admin connect
flow (`admin/oauth1_flow.py`) and the exchange of an `oauth1` credential from the file
(`tokens/oauth1.py`).

`{placeholders}` in an endpoint `url` come from the flow's `params`; `parameterTransmission`
puts the protocol parameters in the Authorization header, the form body or the query (§3.5);
`additionalParamConfigs` whose `usages` name this request (or `USAGE_UNKNOWN`: every request)
are placed by `location`. The HTTP part (no redirects, no environment proxies, a bounded read,
failures by kind) is `endpoint.post_form`, shared with OAuth 2.0.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..config import models as m
from ..errors import FieldError, InvalidRequest, ProxyError
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
from ..schemes.oauth2 import TokenEndpointError
from ..store import FlowState
from .endpoint import endpoint_session, post_form

STATE_PREFIX = "oauth1:"  # a flow's store key: the prefix and its temporary oauth_token
MAX_RESPONSE_BYTES = 64 * 1024
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
TEMP = "USAGE_TEMP_CREDENTIAL_ENDPOINT"
TOKEN = "USAGE_TOKEN_REQUEST_ENDPOINT"


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
        raise InvalidRequest(
            "validation_failed",
            "the body is invalid",
            fields=[FieldError(f"params.{name}", f"required by {field}") for name in missing],
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
        raise InvalidRequest("validation_failed", "the body is invalid", fields=missing)
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


async def post_signed(signed: Signed, refused: int = 502) -> dict[str, str]:
    """POST the signed request (`endpoint.post_form`: no redirects, the transport failures
    mapped); the form-encoded answer (§2.1, §2.3), not RFC 6749's JSON. A refusal (4xx) is
    `refused` (400 at the callback: a tampered or stale verifier is the caller's to retry);
    anything else is 502."""
    try:
        async with endpoint_session(30) as session:
            status, raw = await post_form(
                session, signed.url, signed.body, signed.headers, limit=MAX_RESPONSE_BYTES
            )
    except TokenEndpointError:
        raise ProxyError(
            "oauth1_endpoint_failed", "the OAuth 1.0a endpoint could not be reached", status=502
        ) from None
    raw = raw[:MAX_RESPONSE_BYTES]
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


def endpoints(auth: m.OAuth1SchemeConfig) -> tuple[m.Endpoint, m.Endpoint, m.Endpoint]:
    params = auth.oauth1
    temp, owner, token = (
        params.temp_credential_endpoint,
        params.resource_owner_authorization_endpoint,
        params.token_endpoint,
    )
    assert temp is not None and owner is not None and token is not None  # checked at load
    return temp, owner, token


async def exchange_verifier(
    auth: m.OAuth1SchemeConfig,
    flow: FlowState,
    oauth_token: str,
    verifier: str,
    refused: int = 400,
) -> dict[str, str]:
    """RFC 5849 §2.3: temporary credentials + verifier → token credentials at tokenEndpoint,
    signed with the temporary secret the flow kept. A refusal is `refused` (400: the caller's
    to retry)."""
    _, _, token_endpoint = endpoints(auth)
    flow_params: dict[str, str] = dict(flow.extra.get("params", {}))
    url = fill_url(token_endpoint.url, flow_params, "authSchemeConfig.oauth1.tokenEndpoint.url")
    params = auth.oauth1
    signed = sign_request(
        "POST",
        url,
        oauth=[
            ("oauth_consumer_key", params.consumer_key),
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
    return await post_signed(signed, refused=refused)


def _realm(auth: m.OAuth1SchemeConfig, params: Mapping[str, str]) -> list[m.NameValue]:
    """A `realm` header parameter of the token endpoint also goes on every signed API call."""
    _, _, token = endpoints(auth)
    for config in token.additional_param_configs:
        name = config.target_name or config.parameter_name
        if config.location == "LOCATION_HEADER_PARAMETER" and name == "realm":
            value = params.get(config.parameter_name)
            if value is not None:
                return [m.NameValue(name="realm", value=value)]
    return []


def token_value(
    auth: m.OAuth1SchemeConfig, flow: FlowState, answer: Mapping[str, str]
) -> dict[str, Any]:
    """Seed `CredentialDataOAuth1Token` from the token endpoint's answer (§2.3)."""
    realm = _realm(auth, dict(flow.extra.get("params", {})))
    return {
        "token": answer["oauth_token"],
        "tokenSecret": answer["oauth_token_secret"],
        "additionalParams": [p.model_dump() for p in realm],
    }
