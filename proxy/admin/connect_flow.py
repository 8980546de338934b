"""What the two connect flows share (OAuth 2.0 in `oauth2.py`, OAuth 1.0a in `oauth1_flow.py`):
the template's one scheme the flow fills, the template the init request names and its validated
body, and the flow remembered in the store under its state until the provider's callback takes
it, once, within `FLOW_TTL` (docs/admin-api.md); then the connection the flow creates or updates
with its new credential, checked and saved exactly as `connections.py` saves one it creates
(written to the store first, served after), and the seed shapes a token is saved in.

The flows and `connections.py` import this module; it imports none of them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, overload

from aiohttp import web

from ..config import models as m
from ..config.ids import new_id
from ..connections.compiled import CompiledConnection
from ..connections.templates import (
    CompiledTemplate,
    TemplateRoute,
    build_connection,
    check_connection,
)
from ..dataplane.sync import credential_ids, serve_connection
from ..errors import Conflict, FieldError, InvalidRequest, NotFound, ProxyError
from ..messages import TokenSet
from ..schemes.oauth2 import OAuth2Scheme
from ..store import FlowState, StoreConflict, StoredConnection
from .context import ADMIN, Admin, ModelT, read_body
from .redact import to_json

S = TypeVar("S", bound=m.SchemeConfigBase)
# The secrets a template gives a flow (its client or consumer secret): never echoed back.
FlowSecrets = Callable[[CompiledTemplate], list[str]]
FLOW_TTL = 600.0  # a connect flow (OAuth 1.0a: its temporary credentials) expires after 10 min
_MAX_PROVIDER_TEXT = 300
# RFC 6749 §4.1.2.1: `error` and `error_description` are %x20-21 / %x23-5B / %x5D-7E.
_PROVIDER_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}
REDACTED = "[redacted]"


class FlowTarget(Protocol):
    """The connection an init body says the callback creates or updates."""

    @property
    def connection_name(self) -> str | None: ...

    @property
    def external_id(self) -> str | None: ...


async def init_request(
    request: web.Request, model: type[ModelT]
) -> tuple[Admin, TemplateRoute, ModelT]:
    """POST .../templates/{template_id}/<flow>/init: the management API of the request's
    organisation, the template (404 if no template has that id) and the body as `model`."""
    admin = request.app[ADMIN]
    admin.check_organisation(request)
    route = admin.templates.get(request.match_info["template_id"])
    if route is None:
        raise NotFound("not_found", "no template has this id")
    return admin, route, await read_body(request, model)


async def remember_flow(
    admin: Admin,
    route: TemplateRoute,
    target: FlowTarget,
    *,
    state: str,
    secret: str,
    redirect_uri: str,
    extra: dict[str, Any],
) -> None:
    """Store the started flow under `state` for the callback; `secret` (the PKCE verifier, the
    temporary token secret) is sealed by the store."""
    await admin.store.put_flow(
        FlowState(
            state=state,
            code_verifier=secret,
            template_id=route.template.id,
            organisation_id=admin.organisation_id,
            redirect_uri=redirect_uri,
            expires_at=admin.clock() + FLOW_TTL,
            connection_name=target.connection_name,
            external_id=target.external_id,
            extra=extra,
        )
    )


async def take_flow(
    admin: Admin, state: str, *, kind: str | None, what: str
) -> tuple[FlowState, TemplateRoute]:
    """The callback's flow, taken from the store (used up, whatever follows), and its template.
    400 `invalid_state` unless it is unexpired, of this organisation, of this flow's `kind`
    (`extra["kind"]`; none for OAuth 2.0) and its template still exists; `what` names the
    callback parameter that carried the state."""
    flow = await admin.store.take_flow(state, now=admin.clock())
    route = admin.templates.get(flow.template_id) if flow is not None else None
    if (
        flow is None
        or route is None
        or flow.organisation_id != admin.organisation_id
        or flow.extra.get("kind") != kind
    ):
        raise InvalidRequest(
            "invalid_state", f"unknown, already used or expired {what}: start the flow again"
        )
    return flow, route


def only_scheme(
    template: CompiledTemplate, kind: type[S], fits: Callable[[S], bool], mixed: str, absent: str
) -> tuple[int, S]:
    """The template's first scheme of `kind` that `fits` the flow, and its index. A connect flow
    yields one secret: any other scheme must be `none` (400 `mixed`); 400 `absent` if none fits."""
    found: tuple[int, S] | None = None
    for index, auth in enumerate(template.model.auth_scheme_configs):
        if found is None and isinstance(auth, kind) and fits(auth):
            found = (index, auth)
        elif not isinstance(auth, m.NoneSchemeConfig):
            raise InvalidRequest("validation_failed", mixed)
    if found is None:
        raise InvalidRequest("validation_failed", absent)
    return found


class ProviderRefusal(InvalidRequest):
    """400: the provider's redirect carried its refusal instead of a grant (RFC 6749 §4.1.2.1;
    OAuth 1.0a providers send `denied=<token>` or `error=`). `access_denied` when the user said
    no, `authorization_failed` for any other provider error."""

    def __init__(self, error: str, description: str, secrets: Sequence[str] = ()) -> None:
        error = provider_text(error, ()) or "access_denied"
        text = provider_text(description, secrets)
        super().__init__(
            "access_denied" if error == "access_denied" else "authorization_failed",
            "the provider did not authorise the connection",
            details=f"{error}: {text}" if text else error,
        )


def provider_text(text: str, secrets: Sequence[str]) -> str:
    """A provider's `error` / `error_description`, sanitised (docs/admin-api.md): characters
    outside RFC 6749's set become `?`, any secret of the flow the provider echoed (client or
    consumer secret, PKCE verifier, temporary token secret) becomes `[redacted]`, and the
    whole is cut to 300 characters. It is answered to the browser that carried it, never
    logged."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    cleaned = "".join(ch if ch in _PROVIDER_CHARS else "?" for ch in text)
    return cleaned[:_MAX_PROVIDER_TEXT]


async def refuse(
    admin: Admin, state: str, error: str, description: str, flow_secrets: FlowSecrets
) -> ProviderRefusal:
    """The refusal to answer for a callback that carries the provider's `error`: its flow (by
    `state`, when given) is used up, so the same state can never complete later; nothing is
    created."""
    flow = await admin.store.take_flow(state, now=admin.clock()) if state else None
    route = admin.templates.get(flow.template_id) if flow is not None else None
    secrets: list[str] = []
    if flow is not None:
        secrets.append(flow.code_verifier)
        if route is not None:
            secrets += flow_secrets(route.template)
    return ProviderRefusal(error, description, secrets)


def connection_name(route: TemplateRoute, flow: FlowState) -> tuple[CompiledConnection | None, str]:
    """The connection a flow updates (matched on `externalId`, else on the name) and its name."""
    existing = route.get(flow.external_id) if flow.external_id else None
    if existing is None and flow.connection_name:
        existing = route.find_name(flow.connection_name)
    name = flow.connection_name or (existing.name if existing else None)
    return existing, name or flow.external_id or f"{route.template.id}-{new_id()[:8]}"


def attach_credential(
    route: TemplateRoute,
    flow: FlowState,
    index: int,
    entry: m.ConnectionCredential,
    now: str,
    failure: str,
) -> CompiledConnection:
    """Create the flow's connection with `entry` at `index`, or update the one it matches.

    A re-authorised connection gets a new credential id, so the old token is forgotten when
    the updated connection is served. `failure`: the error code when it does not compile.
    """
    existing, name = connection_name(route, flow)
    if existing is not None:
        credentials = list(existing.model.credentials)
        credentials[index] = entry
        compiled, problems = check_connection(
            existing.model.model_copy(update={"credentials": credentials, "updated_at": now})
        )
    else:
        inputs = [
            m.ConnectionCredentialInput(
                id=entry.id if i == index else None,
                auth_scheme_config=entry.auth_scheme_config if i == index else None,
                credential=entry.credential if i == index else m.NoneCredential(type="none"),
            )
            for i in range(len(route.template.model.auth_scheme_configs))
        ]
        compiled, problems = build_connection(
            route.template,
            name=name,
            credentials=inputs,
            external_id=flow.external_id,
            extra={"created_at": now, "updated_at": now},
        )
    if compiled is None:
        raise ProxyError(
            failure,
            "the token could not be used",
            status=502,
            fields=[FieldError(p.field, p.message) for p in problems],
        )
    if existing is None:
        check_unique(route, compiled)
    return compiled


def check_unique(route: TemplateRoute, connection: CompiledConnection) -> None:
    """`name` and `externalId` are unique within a template (409 otherwise)."""
    same_name = route.find_name(connection.name)
    if same_name is not None and same_name.id != connection.id:
        raise Conflict("conflict", "a connection of this template already has this name")
    external_id = connection.model.external_id
    if external_id:
        same = route.get(external_id)
        if same is not None and same.id != connection.id:
            raise Conflict("conflict", "a connection of this template already has this externalId")


def keep_exchanged(connection: CompiledConnection, exchanged: list[TokenSet]) -> None:
    """The tokens an exchange just brought become their credentials' seeds exactly as the
    provider gave them — their lifetime, their expiry to the microsecond — rather than as the
    credential data holds them (to the second, lifetime unknown): a 2-minute token is then
    refreshed 30 s before it expires, not at first use (docs/request-path.md)."""
    by_access = {token.access_token: token for token in exchanged}
    for scheme in connection.schemes:
        seed = scheme.settings.seed_token if isinstance(scheme, OAuth2Scheme) else None
        exact = by_access.get(seed.access_token) if seed is not None else None
        if isinstance(scheme, OAuth2Scheme) and exact is not None:
            scheme.settings = dataclasses.replace(scheme.settings, seed_token=exact)


async def save_connection(
    admin: Admin, route: TemplateRoute, connection: CompiledConnection
) -> None:
    """Write to the store (durable, with secrets), then serve: never the other way round.

    The OAuth 2.0 token state is written first: other replicas serve the connection as soon as
    its document is in the store, and must find its tokens as this process has them (an
    exchanged token with its lifetime), not seed them again from the document."""
    now = time.time()
    async with admin.templates.changing:
        before = admin.find(connection.id)
        fresh = credential_ids(connection) - (credential_ids(before) if before else set())
        await admin.tokens.adopt_connection(connection)
        try:
            await admin.store.put_connection(
                StoredConnection(
                    id=connection.id,
                    template_id=route.template.id,
                    name=connection.name,
                    external_id=connection.model.external_id,
                    document=to_json(connection.model, include_secrets=True),
                    created_at=now,
                    updated_at=now,
                )
            )
        except StoreConflict as exc:
            await admin.tokens.release(connection.id, fresh)
            message = f"a connection of this template already has this {exc.field}"
            raise Conflict("conflict", message) from None
        await serve_connection(route, admin.tokens, connection)


def token_data(token: TokenSet, scopes: list[str] | None = None) -> m.OAuth2TokenData:
    """A `TokenSet` in the seed's `oauth2Token` credential data shape."""
    value = {
        "accessToken": token.access_token,
        "refreshToken": token.refresh_token,
        "tokenType": token.token_type,
        "expiresAt": iso8601(token.expires_at),
        "scopes": token.scope.split() if token.scope else list(scopes or []),
    }
    return m.OAuth2TokenData.model_validate({"oauth2Token": value})


@overload
def iso8601(timestamp: float) -> str: ...
@overload
def iso8601(timestamp: None) -> None: ...
@overload
def iso8601(timestamp: float | None) -> str | None: ...
def iso8601(timestamp: float | None) -> str | None:
    """Unix seconds → `2025-01-31T12:00:00Z` (RFC 3339, UTC)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
