"""The OAuth 2.0 connect flow (docs/admin-api.md): authorization code with PKCE, RFC 6749 §4.1 +
RFC 7636.

`initialise` (Versori's InitialiseOAuth2Connection) builds the authorize URL and remembers the
flow in the store under an unguessable `state` (RFC 6749 §10.12: CSRF protection), bound to the
organisation, the template and the connection it will create or update, with the PKCE verifier
(RFC 7636 §4.1) and a 10-minute expiry. `callback` (Switchboard's) takes that state exactly once,
exchanges the code with the verifier (§4.1.3, RFC 7636 §4.5), and creates or updates the
connection with the new `oauth2-token` credential.

The code goes to the token endpoint through `TokenManager.exchange_code`, the one path for
token endpoint calls (client authentication Basic then form, `mtlsEnabled`, no redirects, its
timeout); the client secret always comes from the template, never from a request.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web

from ..config import models as m
from ..config.ids import new_id
from ..connections.compiled import CompiledConnection
from ..connections.templates import (
    CompiledTemplate,
    TemplateRoute,
)
from ..errors import FieldError, InvalidRequest, ProxyError
from ..messages import TokenSet
from ..schemes.base import SchemeConfigError
from ..schemes.oauth2 import (
    OAuth2Settings,
    TokenEndpointError,
    client_assertion_of,
    token_params,
)
from ..store import FlowState
from .connect_flow import (
    attach_credential,
    connection_name,
    init_request,
    iso8601,
    keep_exchanged,
    only_scheme,
    refuse,
    remember_flow,
    save_connection,
    take_flow,
    token_data,
)
from .context import ADMIN, Admin, ValidationFailed, json_response
from .models import OAuth2Init
from .redact import to_json

OFFLINE_ACCESS = "offline_access"
# What the proxy sets in the authorize URL; `additionalParams` may not replace them.
STANDARD_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "prompt",
        "code_challenge",
        "code_challenge_method",
    }
)


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2 S256: BASE64URL(SHA256(ASCII(code_verifier))), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_code_verifier() -> str:
    """RFC 7636 §4.1: 43–128 unreserved characters; 64 random bytes give 86."""
    return secrets.token_urlsafe(64)


def prompt_values(prompt: str | None) -> str | None:
    """Seed 002: several prompts may be joined by '+' (`consent+select_account`); OpenID
    Connect Core 1.0 §3.1.2.1 wants them space-delimited, which the URL then encodes."""
    if prompt is None:
        return None
    values = prompt.replace("+", " ").split()
    return " ".join(values) or None


def oauth2_scheme(template: CompiledTemplate) -> tuple[int, m.OAuth2SchemeConfig]:
    """The template's authorization-code scheme and its index; 400 when the flow cannot fill it.

    The flow yields one secret, the token: any other scheme of the template must be `none`.
    """
    found = only_scheme(
        template,
        m.OAuth2SchemeConfig,
        lambda auth: isinstance(auth.oauth2.grant, m.AuthorizationCodeGrant),
        "the connect flow needs a template whose only secret is one oauth2 "
        "authorizationCode scheme; create such connections with POST .../connections",
        "the template has no oauth2 authorizationCode scheme",
    )
    if found[1].oauth2.mtls_enabled or found[1].oauth2.mtls_credential_id:
        # mTLS towards the token endpoint needs a `certificate` credential beside the token.
        raise InvalidRequest(
            "validation_failed",
            "the connect flow cannot supply the certificate credential mtlsEnabled needs",
        )
    return found


async def initialise(request: web.Request) -> web.Response:
    """InitialiseOAuth2Connection → `{"url": authorize URL}`."""
    admin, route, body = await init_request(request, OAuth2Init)
    index, auth = oauth2_scheme(route.template)
    params = auth.oauth2
    grant = params.grant
    assert isinstance(grant, m.AuthorizationCodeGrant)
    extra_params = m.url_params(
        body.additional_params
        if body.additional_params is not None
        else params.additional_authorize_params
    )
    problems = [
        FieldError(f"additionalParams.{name}", "is set by the proxy itself")
        for name, _ in extra_params
        if name in STANDARD_PARAMS
    ]
    authorize_url = body.authorize_url or params.authorize_url
    if authorize_url is None:
        problems.append(FieldError("authorizeUrl", "required: the template has none"))
    elif not _is_http_url(authorize_url):
        problems.append(FieldError("authorizeUrl", "must be an absolute http(s) URL"))
    if problems:
        raise ValidationFailed("the body is invalid", problems)
    assert authorize_url is not None
    client_id = body.client_id or grant.authorization_code.client_id
    if client_id is None:
        raise ValidationFailed(
            "the body is invalid", [FieldError("clientId", "required: the template has none")]
        )
    # `defaultScopes` are what is requested; the template's `scopes` is only the catalogue.
    scopes = list(body.scopes if body.scopes is not None else params.default_scopes)
    if not body.disable_offline_access and OFFLINE_ACCESS not in scopes:
        scopes.append(OFFLINE_ACCESS)
    prompt = prompt_values(body.prompt)
    if prompt is None and all(name != "approval_prompt" for name, _ in extra_params):
        prompt = "login"

    state = secrets.token_urlsafe(32)
    verifier = new_code_verifier() if params.pkce else ""
    query: list[tuple[str, str]] = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", admin.redirect_uri),
    ]
    if scopes:
        query.append(("scope", " ".join(scopes)))  # RFC 6749 §3.3: space-delimited
    if prompt is not None:
        query.append(("prompt", prompt))
    if verifier:
        query += [("code_challenge", code_challenge(verifier)), ("code_challenge_method", "S256")]
    query += [("state", state), *extra_params]
    await remember_flow(
        admin,
        route,
        body,
        state=state,
        secret=verifier,
        redirect_uri=admin.redirect_uri,
        extra={
            "schemeIndex": index,
            "clientId": client_id,
            "scopes": scopes,
            "authorizeUrl": authorize_url,
        },
    )
    separator = "&" if urlsplit(authorize_url).query else "?"
    if authorize_url.endswith(("?", "&")):
        separator = ""
    url = authorize_url + separator + urlencode(query, quote_via=quote)
    return json_response({"url": url})


async def callback(request: web.Request) -> web.Response:
    """The provider's redirect: `code` + `state` → token → connection; 201 with the credential."""
    admin = request.app[ADMIN]
    query = request.query
    state = query.get("state", "")
    if "error" in query:
        # RFC 6749 §4.1.2.1: the provider's refusal, not a grant.
        raise await refuse(
            admin, state, query["error"], query.get("error_description", ""), client_secrets
        )
    missing = [FieldError(name, "required") for name in ("code", "state") if not query.get(name)]
    if missing:
        raise ValidationFailed("the callback needs code and state", missing)
    flow, route = await take_flow(admin, state, kind=None, what="state")
    index, auth = oauth2_scheme(route.template)
    auth = _chosen_config(auth, flow.extra)
    token = await exchange_code(admin, auth, flow, query["code"])
    connection = _connect(route, flow, index, auth, token, iso8601(admin.clock()))
    keep_exchanged(connection, [token])
    # Serving the updated connection forgets the superseded credential's token (dataplane/sync.py):
    # leaving it would keep a usable secret around.
    await save_connection(admin, route, connection)
    entry = connection.model.credentials[index]
    credential = entry.credential
    assert isinstance(credential, m.OAuth2TokenCredential)
    body = callback_credential(
        connection.schemes[index].credential_id,
        admin.organisation_id,
        credential.name or connection.name,
        credential.data.oauth2_token,
        connection.id,
    )
    return json_response(body, status=201)


def callback_credential(
    credential_id: str,
    organisation_id: str,
    name: str,
    token: m.OAuth2TokenValue,
    connection_id: str,
) -> dict[str, Any]:
    """Seed 003's credential: `type` from its enum (`OAuth2Refresh` for a token that can be
    refreshed, `Raw` for one used until it expires), `data` the non-secret fields as base64
    strings, `redactFields` the secret ones left out; plus our `connectionId`."""
    fields = to_json(token)
    redact = [
        name
        for name in ("accessToken", "refreshToken")
        if name in to_json(token, include_secrets=True)
    ]
    data = {
        key: base64.b64encode(_text(value).encode()).decode("ascii")
        for key, value in fields.items()
    }
    body: dict[str, Any] = {
        "id": credential_id,
        "organisationID": organisation_id,
        "name": name,
        "type": "OAuth2Refresh" if token.refresh_token is not None else "Raw",
        "data": data,
        "redactFields": redact,
        "connectionId": connection_id,
        # Seed 003: when the credential is deleted — never, as nobody asked for it; written as
        # Go's zero time, as the platform does. The access token's expiry is `data.expiresAt`,
        # renewed by every refresh.
        "expiresAt": m.GO_ZERO_TIME,
    }
    return body


def _text(value: Any) -> str:
    # `scopes` is a list: space-delimited, as OAuth writes scopes (RFC 6749 §3.3).
    return " ".join(value) if isinstance(value, list) else str(value)


def _chosen_config(auth: m.OAuth2SchemeConfig, extra: Any) -> m.OAuth2SchemeConfig:
    """The template's scheme with what init overrode (client id, scopes, authorize URL).

    The connection keeps these, so a refresh uses the client the code was issued to; the
    client secret stays the template's.
    """
    grant = auth.oauth2.grant
    assert isinstance(grant, m.AuthorizationCodeGrant)
    pair = grant.authorization_code.model_copy(update={"client_id": extra["clientId"]})
    params = auth.oauth2.model_copy(
        update={
            "authorize_url": extra["authorizeUrl"],
            "default_scopes": list(extra["scopes"]),
            "grant": grant.model_copy(update={"authorization_code": pair}),
        }
    )
    return auth.model_copy(update={"oauth2": params})


async def exchange_code(
    admin: Admin,
    auth: m.OAuth2SchemeConfig,
    flow: FlowState | None,
    code: str,
    credential: m.Credential | None = None,
) -> TokenSet:
    """RFC 6749 §4.1.3 with the PKCE verifier (when the proxy's own `init` started the flow),
    through the token manager. `credential`: an `oauth2-code` credential whose
    `additionalParams` join the token request."""
    params = auth.oauth2
    grant = params.grant
    assert isinstance(grant, m.AuthorizationCodeGrant)
    if params.token_url is None or not _is_http_url(params.token_url):
        # The body's (or its template's) scheme config: the caller can give a usable one.
        raise ValidationFailed(
            "the connection is invalid",
            [
                FieldError(
                    "authSchemeConfig.oauth2.tokenUrl",
                    "an absolute http(s) URL is required to exchange an oauth2-code",
                )
            ],
        )
    pair = grant.authorization_code
    if pair.client_id is None:
        raise ValidationFailed(
            "the connection is invalid",
            [FieldError("authSchemeConfig.oauth2.grant.authorizationCode.clientId", "required")],
        )
    try:
        # `private_key_jwt`: the client secret field holds the key, never sent as a secret.
        assertion = client_assertion_of(
            params, pair.client_id, pair.client_secret, params.token_url, credential
        )
    except SchemeConfigError as exc:
        problem = FieldError(exc.field, exc.message)
        raise ValidationFailed("the connection is invalid", [problem]) from None
    settings = OAuth2Settings(
        grant="authorizationCode",
        token_url=params.token_url,
        client_id=pair.client_id,
        client_secret=pair.client_secret.get_secret_value(),
        scopes=tuple(params.default_scopes),
        additional_params=token_params(params, credential),
        mtls=params.mtls_enabled,
        client_auth=params.client_auth,
        client_assertion=assertion,
    )
    verifier = flow.code_verifier if flow is not None else None
    redirect_uri = flow.redirect_uri if flow is not None else admin.redirect_uri
    try:
        return await admin.tokens.exchange_code(settings, code, verifier or None, redirect_uri)
    except TokenEndpointError as failure:
        # A refused code (invalid_grant: wrong, used or expired code, verifier mismatch) is
        # the caller's to fix by starting again; anything else is the provider's failure.
        rejected = 400 <= failure.status < 500
        raise ProxyError(
            "code_exchange_failed",
            "the token endpoint refused the authorization code"
            if rejected
            else "the token endpoint failed",
            status=400 if rejected else 502,
            proxy_status="proxy_internal_response" if rejected else None,
            details=failure.error,
        ) from None


async def exchange_code_credential(
    admin: Admin, auth: m.OAuth2SchemeConfig, credential: m.OAuth2CodeCredential
) -> tuple[m.OAuth2TokenCredential, TokenSet]:
    """An `oauth2-code` credential (seed 001: "a temporary authorization code which will be
    exchanged for an oauth2-token"), exchanged once for the `oauth2-token` that replaces it;
    returned with the token exactly as obtained (`connections.keep_exchanged`).

    When its `state` is one the proxy's own `init` issued (a front end took the browser
    redirect and hands the code over), that flow's PKCE verifier and `redirect_uri` are used and
    the state is consumed; otherwise the `redirect_uri` is the proxy's callback and no verifier
    is sent. A refused code is a 400 carrying the provider's `error`.
    """
    value = credential.data.oauth2_code
    flow = None
    if value.state:
        flow = await admin.store.take_flow(value.state, now=admin.clock())
        if flow is not None and flow.organisation_id != admin.organisation_id:
            flow = None
    code = value.code.get_secret_value()
    token = await exchange_code(admin, auth, flow, code, credential)
    exchanged = m.OAuth2TokenCredential(
        type="oauth2-token",
        id=credential.id,
        organisation_id=credential.organisation_id,
        name=credential.name,
        expires_at=credential.expires_at,  # what the person wrote, never the token's expiry
        data=token_data(token),
    )
    return exchanged, token


def _connect(
    route: TemplateRoute,
    flow: FlowState,
    index: int,
    auth: m.OAuth2SchemeConfig,
    token: TokenSet,
    now: str,
) -> CompiledConnection:
    """The flow's connection with the new `oauth2-token` credential."""
    _, name = connection_name(route, flow)
    credential = m.OAuth2TokenCredential(
        type="oauth2-token",
        id=new_id(),
        name=name,
        data=token_data(token),
    )
    entry = m.ConnectionCredential(id=credential.id, auth_scheme_config=auth, credential=credential)
    return attach_credential(route, flow, index, entry, now, "code_exchange_failed")


def client_secrets(template: CompiledTemplate) -> list[str]:
    """The client secrets of a template's authorization-code schemes (never echoed back)."""
    return [
        auth.oauth2.grant.authorization_code.client_secret.get_secret_value()
        for auth in template.model.auth_scheme_configs
        if isinstance(auth, m.OAuth2SchemeConfig)
        and isinstance(auth.oauth2.grant, m.AuthorizationCodeGrant)
    ]


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)
