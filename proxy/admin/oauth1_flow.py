"""The OAuth 1.0a three-legged connect flow (RFC 5849 §2) for seed `AuthSchemeConfigOAuth1`
templates with `tokenAuth: false`.

- `initialise` (POST .../templates/{id}/oauth1/init): temporary credentials from
  `tempCredentialEndpoint` (§2.1, `oauth_callback` = the admin callback), kept in the store —
  sealed there, single use, 10 minutes — under `oauth1:<oauth_token>`; answers `{url}` = the
  `resourceOwnerAuthorizationEndpoint` with `oauth_token` (§2.2).
- `callback` (GET /connections/oauth1/callback): `oauth_token` + `oauth_verifier` → token
  credentials from `tokenEndpoint` (§2.3) → `oauth1-token` credential → connection created or
  updated → 201 in the callback shape of seed 003.

Each endpoint request (placeholders, `parameterTransmission`, `additionalParamConfigs`) is
built and sent by `tokens/oauth1_client.py`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from ..config import models as m
from ..config.ids import new_id
from ..connections.compiled import CompiledConnection
from ..connections.templates import CompiledTemplate, TemplateRoute
from ..errors import FieldError, ProxyError
from ..store import FlowState
from ..tokens.oauth1_client import (
    STATE_PREFIX,
    TEMP,
    endpoints,
    exchange_verifier,
    fill_url,
    post_signed,
    sign_request,
    token_value,
)
from .connect_flow import (
    attach_credential,
    connection_name,
    init_request,
    iso8601,
    only_scheme,
    refuse,
    remember_flow,
    save_connection,
    take_flow,
)
from .context import ADMIN, Admin, ValidationFailed, json_response
from .redact import to_json

CALLBACK_PATH = "/connections/oauth1/callback"
# Failed verifier exchanges a flow survives (exchange_or_keep).
MAX_FAILED_EXCHANGES = 5


class OAuth1Init(m.SeedModel):
    """Ours: which connection the callback creates or updates, and the values for
    `{placeholders}` and parameter configs."""

    connection_name: m.NonEmpty | None = None
    external_id: m.NonEmpty | None = None
    params: dict[str, str] = {}


def oauth1_scheme(template: CompiledTemplate) -> tuple[int, m.OAuth1SchemeConfig]:
    """The template's three-legged `oauth1` scheme and its index; any other scheme must be none."""
    return only_scheme(
        template,
        m.OAuth1SchemeConfig,
        lambda auth: not auth.oauth1.token_auth,
        "the OAuth 1.0a connect flow needs a template whose only secret is one oauth1 "
        "scheme with tokenAuth false",
        "the template has no three-legged oauth1 scheme",
    )


def callback_uri(admin: Admin) -> str:
    return admin.redirect_uri.rsplit("/connections/", 1)[0] + CALLBACK_PATH


async def initialise(request: web.Request) -> web.Response:
    """Temporary credentials (§2.1) → `{"url": resource owner authorization URL}` (§2.2)."""
    admin, route, body = await init_request(request, OAuth1Init)
    index, auth = oauth1_scheme(route.template)
    temp, owner, _ = endpoints(auth)
    here = "authSchemeConfig.oauth1"
    temp_url = fill_url(temp.url, body.params, f"{here}.tempCredentialEndpoint.url")
    owner_url = fill_url(owner.url, body.params, f"{here}.resourceOwnerAuthorizationEndpoint.url")
    params = auth.oauth1
    signed = sign_request(
        "POST",
        temp_url,
        oauth=[
            ("oauth_callback", callback_uri(admin)),
            ("oauth_consumer_key", params.consumer_key),
        ],
        consumer_secret=params.consumer_secret.get_secret_value(),
        token_secret="",
        signature_method=params.signature_method,
        transmission=temp.parameter_transmission,
        configs=temp.additional_param_configs,
        usage=TEMP,
        params=body.params,
    )
    answer = await post_signed(signed)
    await remember_flow(
        admin,
        route,
        body,
        state=STATE_PREFIX + answer["oauth_token"],
        secret=answer["oauth_token_secret"],
        redirect_uri=callback_uri(admin),
        extra={"kind": "oauth1", "schemeIndex": index, "params": dict(body.params)},
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
    if "denied" in query or "error" in query:
        # The user refused at the provider: `denied=<temporary token>` (the common OAuth 1.0a
        # convention) or an OAuth 2.0-style `error`.
        token = query.get("denied") or query.get("oauth_token", "")
        raise await refuse(
            admin,
            STATE_PREFIX + token if token else "",
            query.get("error") or "access_denied",
            query.get("error_description", ""),
            consumer_secrets,
        )
    missing = [
        FieldError(name, "required")
        for name in ("oauth_token", "oauth_verifier")
        if not query.get(name)
    ]
    if missing:
        raise ValidationFailed("the callback needs oauth_token and oauth_verifier", missing)
    state = STATE_PREFIX + query["oauth_token"]
    flow, route = await take_flow(admin, state, kind="oauth1", what="oauth_token")
    index, auth = oauth1_scheme(route.template)
    answer = await exchange_or_keep(
        admin, auth, flow, query["oauth_token"], query["oauth_verifier"]
    )
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
    answer = await exchange_or_keep(admin, auth, flow, value.oauth_token, verifier)
    return m.OAuth1TokenCredential.model_validate(
        {
            "type": "oauth1-token",
            "id": credential.id,
            "organisationId": credential.organisation_id,
            "name": credential.name,
            "data": {"oauth1Token": token_value(auth, flow, answer)},
        }
    )


async def exchange_or_keep(
    admin: Admin, auth: m.OAuth1SchemeConfig, flow: FlowState, oauth_token: str, verifier: str
) -> dict[str, str]:
    """`exchange_verifier`, with the flow put back when the exchange fails: a wrong verifier
    (anyone who saw the `oauth_token` can send one) must not use up the flow the real callback
    needs. The flow was taken from the store first, so two callbacks never exchange at once;
    after `MAX_FAILED_EXCHANGES` failures it stays used up, so verifiers cannot be tried
    without end (the provider's own limits aside), and it still expires after 10 minutes."""
    try:
        return await exchange_verifier(auth, flow, oauth_token, verifier)
    except ProxyError:
        failed = int(flow.extra.get("failed_exchanges", 0)) + 1
        if failed < MAX_FAILED_EXCHANGES:
            kept = dataclasses.replace(flow, extra={**flow.extra, "failed_exchanges": failed})
            await admin.store.put_flow(kept)
        raise


def consumer_secrets(template: CompiledTemplate) -> list[str]:
    """The consumer secrets of a template's oauth1 schemes (never echoed back)."""
    return [
        auth.oauth1.consumer_secret.get_secret_value()
        for auth in template.model.auth_scheme_configs
        if isinstance(auth, m.OAuth1SchemeConfig)
    ]


def _b64(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return base64.b64encode(text.encode()).decode("ascii")


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
            "data": {"oauth1Token": token_value(auth, flow, answer)},
        }
    )
    entry = m.ConnectionCredential(id=credential.id, auth_scheme_config=auth, credential=credential)
    now = iso8601(admin.clock())
    return attach_credential(route, flow, index, entry, now, "oauth1_endpoint_failed")
