"""OpenInt's `GET /connection/{id}` body (seed 004): a connection in OpenInt's snake_case shape.

`settings.oauth.credentials` holds the connection's OAuth 2.0 token (`access_token`,
`refresh_token`, `client_id`, `scope`, `expires_in`, `expires_at`, `token_type`, `raw`);
`settings.access_token` / `settings.api_key` / `settings.username` / `settings.password` hold
the static secrets the way OpenInt's connectors name them; `settings.credentials[]` lists every
credential of the connection (type, scheme, snake_case data) so nothing the connection holds is
missing. Secret values appear only with `include_secrets=true`. `status` comes from the token
manager: `disconnected` when re-authorisation is required, `error` while refreshes fail.

Pure: the handler (`connections.openint_get_connection`) gathers the current model, tokens and
health, this module only shapes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..config import models as m
from ..connections.compiled import CompiledConnection
from ..schemes.oauth2 import parse_expires_at
from .redact import to_json

ID_PREFIX = "conn_"
_STATUS_ORDER = {"healthy": 0, "error": 1, "disconnected": 2}
_WORD = re.compile(r"([a-z0-9])([A-Z])")
_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")


def to_snake(key: str) -> str:
    """`tokenType` → `token_type`, `oauth2Token` → `oauth2_token`, `mTLSEnabled` →
    `m_tls_enabled` (pydantic's `to_snake` splits digits too: `oauth_2`)."""
    return _WORD.sub(r"\1_\2", _ACRONYM.sub(r"\1_\2", key)).lower()


def strip_prefix(connection_id: str) -> str:
    """OpenInt ids start with `conn_`; ours are the same ids without it."""
    return connection_id.removeprefix(ID_PREFIX)


def snake(tree: Any) -> Any:
    """camelCase keys → snake_case, all the way down (`tokenType` → `token_type`)."""
    if isinstance(tree, dict):
        return {to_snake(key): snake(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [snake(item) for item in tree]
    return tree


def openint_json(
    connection: CompiledConnection,
    model: m.Connection,
    *,
    include_secrets: bool,
    created_at: str,
    updated_at: str,
    now: float,
    health: Mapping[str, tuple[str, str]],
    template: m.Template | None,
    expand_connector: bool,
) -> dict[str, Any]:
    """The seed 004 body of `connection` (its current `model`, tokens already filled in).

    Args:
        health: `(status, status_message)` per credential id, for the OAuth 2.0 ones.
    """
    status, message = "healthy", ""
    for state, text in health.values():
        if _STATUS_ORDER[state] > _STATUS_ORDER[status]:
            status, message = state, text
    connector_name = template.id if template is not None else connection.name
    body: dict[str, Any] = {
        "id": connection.id if connection.id.startswith(ID_PREFIX) else ID_PREFIX + connection.id,
        "connector_name": connector_name,
        "connector_config_id": model.connection_template_id or connection.id,
        # An OpenInt integration is an entry of its own catalogue; a proxy connection has none.
        "integration_id": "",
        "display_name": connection.name,
        "created_at": created_at,
        "updated_at": updated_at,
        "disabled": False,
        "status": status,
        "status_message": message,
        "metadata": {"base_url": model.base_url, "route": connection.route or "/"},
        "settings": _settings(connection, model, include_secrets, now, created_at, updated_at),
    }
    if model.external_id:
        body["customer_id"] = model.external_id
    if expand_connector:
        body["connector"] = _connector(connector_name, template, model)
    return body


def _settings(
    connection: CompiledConnection,
    model: m.Connection,
    include_secrets: bool,
    now: float,
    created_at: str,
    updated_at: str,
) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    listed: list[dict[str, Any]] = []
    for entry, scheme in zip(model.credentials, connection.schemes, strict=True):
        auth, cred = entry.auth_scheme_config, entry.credential
        data = to_json(cred.data, include_secrets=include_secrets)
        listed.append(
            {
                "id": scheme.credential_id,
                "type": cred.type,
                "auth_scheme": auth.type,
                "auth_scheme_config": snake(to_json(auth, include_secrets=include_secrets)),
                "data": snake(data),
            }
        )
        secrets = to_json(cred.data, include_secrets=True)
        match auth, cred:
            case m.OAuth2SchemeConfig(), m.OAuth2TokenCredential() if "oauth" not in settings:
                oauth = _oauth(auth, cred.data.oauth2_token, data, now)
                settings["oauth"] = {
                    "credentials": oauth,
                    "created_at": created_at,
                    "updated_at": updated_at,
                    "metadata": {},
                }
                if "access_token" in oauth:
                    settings.setdefault("access_token", oauth["access_token"])
            case m.BearerSchemeConfig(), m.StringCredential() if include_secrets:
                settings.setdefault("access_token", secrets["string"]["value"])
            case m.ApiKeySchemeConfig(), m.StringCredential() if include_secrets:
                settings.setdefault("api_key", secrets["string"]["value"])
            case m.BasicAuthSchemeConfig(), m.BasicAuthCredential():
                settings.setdefault("username", cred.data.basic_auth.username)
                if include_secrets:
                    settings.setdefault("password", secrets["basicAuth"].get("password", ""))
    settings["credentials"] = listed
    return settings


def _oauth(
    auth: m.OAuth2SchemeConfig,
    token: m.OAuth2TokenValue,
    shown: dict[str, Any],
    now: float,
) -> dict[str, Any]:
    """`settings.oauth.credentials` of seed 004, secrets only where `shown` has them."""
    value = shown["oauth2Token"]
    grant = auth.oauth2.grant
    client_id = None
    if isinstance(grant, m.AuthorizationCodeGrant):
        client_id = grant.authorization_code.client_id
    out: dict[str, Any] = {
        "token_type": token.token_type,
        "scope": " ".join(token.scopes),
        "raw": snake(value),
    }
    for name in ("accessToken", "refreshToken"):
        if name in value:
            out[to_snake(name)] = value[name]
    if client_id:
        out["client_id"] = client_id
    if token.expires_at:
        out["expires_at"] = token.expires_at
        expires = _timestamp(token.expires_at)
        if expires is not None:
            out["expires_in"] = max(0, int(expires - now))
    return out


def _timestamp(text: str) -> float | None:
    try:
        return parse_expires_at(text)
    except ValueError:
        return None


_AUTH_TYPES = {
    "oauth1": "OAUTH1",
    "api-key": "API_KEY",
    "bearer": "API_KEY",
    "basic-auth": "BASIC",
}


def _connector(name: str, template: m.Template | None, model: m.Connection) -> dict[str, Any]:
    """`expand=connector`: what kind of upstream this is and the scopes it offers."""
    auth_type, scopes = "CUSTOM", []
    for entry in model.credentials:
        auth = entry.auth_scheme_config
        if isinstance(auth, m.NoneSchemeConfig):
            continue
        if isinstance(auth, m.OAuth2SchemeConfig):
            cc = isinstance(auth.oauth2.grant, m.ClientCredentialsGrant)
            auth_type = "OAUTH2CC" if cc else "OAUTH2"
            scopes = [
                {"scope": s.name, "display_name": s.name, "description": s.description or ""}
                for s in auth.oauth2.scopes
            ]
        else:
            auth_type = _AUTH_TYPES.get(auth.type, "CUSTOM")
        break
    return {
        "name": name,
        "display_name": (template.name if template is not None else None) or name,
        "auth_type": auth_type,
        "scopes": scopes,
    }
