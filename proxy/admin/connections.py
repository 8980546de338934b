"""The connection paths of the management API (docs/admin-api.md): create from a template, list,
get, delete, and OpenInt's `GET /connection/{id}` with `include_secrets` and `refresh_policy`.

A created connection is checked exactly like one from `proxy.yaml` (`templates.build_connection` →
`compiled.compile_connection`), written to the store, and only then added to the live template
route: on any error nothing is written and nothing serves. Other processes serving the same store
(`run --workers N`) follow the change through `dataplane/sync.py`. Every read goes through
`connection_body.py` (secrets `""`) or `redact.to_json` (OpenInt: secrets only with
`include_secrets=true`).
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web

from ..config import models as m
from ..connections.compiled import CompiledConnection, credential_mismatch
from ..connections.identity import carried, material, same
from ..connections.templates import TemplateRoute, build_connection
from ..dataplane.sync import withdraw_connection
from ..errors import Conflict, FieldError, NotFound
from ..messages import TokenSet
from ..schemes.base import Scheme
from ..schemes.oauth1_exchanged import TOKEN_TYPE as OAUTH1_TOKEN_TYPE
from ..schemes.oauth1_exchanged import OAuth1ExchangedScheme
from ..schemes.oauth1_exchanged import token_value as oauth1_token_value
from ..schemes.oauth2 import OAuth2Scheme
from .connect_flow import check_unique, iso8601, keep_exchanged, save_connection, token_data
from .connection_body import connection_body
from .context import ADMIN, Admin, ValidationFailed, json_response, read_body
from .models import ConnectionCreate
from .oauth1_flow import exchange_oauth1_credential
from .oauth2 import exchange_code_credential
from .openint import openint_json, strip_prefix
from .redact import redacted_secrets, with_secrets_of

RefreshPolicy = Literal["none", "force", "auto"]
REFRESH_POLICIES: tuple[RefreshPolicy, ...] = ("none", "force", "auto")


async def create_connection(request: web.Request) -> web.Response:
    """CreateConnection: `EnvSystemConnectionCreate` → 201 `Connection` (redacted)."""
    admin = request.app[ADMIN]
    admin.check_organisation(request)
    body = await read_body(request, ConnectionCreate)
    route = admin.templates.get(body.connection_template_id)
    if route is None:
        raise ValidationFailed(
            "the body is invalid", [FieldError("connectionTemplateId", "no template with this id")]
        )
    fields = body.connection
    external_id = body.external_id or fields.external_id
    disagree = [
        FieldError(f"connection.{name}", message)
        for name, given, wanted, message in (
            (
                "connectionTemplateId",
                fields.connection_template_id,
                route.template.id,
                "differs from the body's connectionTemplateId",
            ),
            ("route", fields.route, route.template.route or "/", "is the template's route"),
            ("externalId", fields.external_id, external_id, "differs from the body's externalId"),
        )
        if given is not None and given != wanted
    ]
    if disagree:
        raise ValidationFailed("the body is invalid", disagree)
    given = with_template_secrets(route, fields.credentials)
    redacted = [
        FieldError(path, "redacted: supply the value")
        for index, entry in enumerate(given)
        if fits_its_scheme(route, index, entry)  # else the type is the problem, named below
        for path in redacted_secrets(entry, f"connection.credentials[{index}]")
    ]
    if redacted:
        raise ValidationFailed("the body is invalid", redacted)
    if fields.id is not None and admin.find(fields.id) is not None:
        raise Conflict("conflict", "a connection already has this id")
    taken = route.find_name(fields.name) or (route.get(external_id) if external_id else None)
    if taken is not None:
        # Before any code exchange: a refused create must not use up an authorization code.
        raise Conflict(
            "conflict", "a connection of this template already has this name or externalId"
        )
    now = iso8601(admin.clock())
    if route.catch_up is not None:
        # Connections another replica created a moment ago carry credential ids too.
        await route.catch_up()
    refuse_codes_for_ids_in_use(admin, given)
    exchanged: list[TokenSet] = []
    credentials = await exchange_codes(admin, route, given, exchanged)

    def build(entries: list[m.ConnectionCredentialInput]) -> CompiledConnection:
        compiled, problems = build_connection(
            route.template,
            name=fields.name,
            credentials=entries,
            base_url=fields.base_url,
            external_id=external_id,
            connection_id=fields.id,
            extra={
                "created_at": now,
                "updated_at": now,
                "system_id": fields.system_id,
                "forward_client_authorization": fields.forward_client_authorization,
                "rewrite_response_urls": fields.rewrite_response_urls,
            },
        )
        if compiled is None:
            raise ValidationFailed(
                "the connection is invalid",
                [FieldError(_under("connection", p.field), p.message) for p in problems],
            )
        return compiled

    compiled = build(credentials)
    shared = await share_credentials(admin, compiled, credentials)
    if shared is not None:
        compiled = build(shared)
    check_unique(route, compiled)
    keep_exchanged(compiled, exchanged)
    await save_connection(admin, route, compiled)
    return json_response(connection_json(admin, compiled), status=201)


def with_template_secrets(
    route: TemplateRoute, given: list[m.ConnectionCredentialInput]
) -> list[m.ConnectionCredentialInput]:
    """Each given `authSchemeConfig` with the secrets a read redacted (`""`) taken from the
    template's config at its index: a GET body POSTed back keeps the template's client or
    consumer secret, which its caller may never have seen."""
    configs = route.template.model.auth_scheme_configs
    out = []
    for index, entry in enumerate(given):
        auth = entry.auth_scheme_config
        if auth is not None and index < len(configs):
            filled = with_secrets_of(auth, configs[index])
            if filled is not auth:
                entry = entry.model_copy(update={"auth_scheme_config": filled})
        out.append(entry)
    return out


def fits_its_scheme(route: TemplateRoute, index: int, entry: m.ConnectionCredentialInput) -> bool:
    """Whether the credential's type fits its scheme (given, or the template's at `index`)."""
    configs = route.template.model.auth_scheme_configs
    auth = entry.auth_scheme_config or (configs[index] if index < len(configs) else None)
    if auth is None:
        return False
    pair = m.ConnectionCredential(auth_scheme_config=auth, credential=entry.credential)
    return credential_mismatch(pair) is None


async def exchange_codes(
    admin: Admin,
    route: TemplateRoute,
    given: list[m.ConnectionCredentialInput],
    exchanged: list[TokenSet] | None = None,
) -> list[m.ConnectionCredentialInput]:
    """Each `oauth2-code` credential of an `oauth2` authorizationCode scheme, and each `oauth1`
    credential of an `oauth1` scheme, exchanged for the token it stands for; the others as
    given. The OAuth 2.0 tokens obtained are appended to `exchanged`."""
    configs = route.template.model.auth_scheme_configs
    out: list[m.ConnectionCredentialInput] = []
    for index, entry in enumerate(given):
        auth = entry.auth_scheme_config or (configs[index] if index < len(configs) else None)
        cred = entry.credential
        if (
            isinstance(cred, m.OAuth2CodeCredential)
            and isinstance(auth, m.OAuth2SchemeConfig)
            and isinstance(auth.oauth2.grant, m.AuthorizationCodeGrant)
        ):
            token, obtained = await exchange_code_credential(admin, auth, cred)
            entry = entry.model_copy(update={"credential": token})
            if exchanged is not None:
                exchanged.append(obtained)
        elif isinstance(cred, m.OAuth1Credential) and isinstance(auth, m.OAuth1SchemeConfig):
            here = f"connection.credentials[{index}]"
            oauth1 = await exchange_oauth1_credential(admin, auth, cred, here)
            entry = entry.model_copy(update={"credential": oauth1})
        out.append(entry)
    return out


def refuse_codes_for_ids_in_use(admin: Admin, given: list[m.ConnectionCredentialInput]) -> None:
    """Before any exchange: a credential id another connection carries cannot be a code still
    to exchange (the token it would bring is not that credential's); 409, the code unused."""
    in_use = carried(admin.all_connections())
    for index, entry in enumerate(given):
        ident = entry.id or entry.credential.id
        exchanged = isinstance(entry.credential, m.OAuth2CodeCredential | m.OAuth1Credential)
        if ident and ident in in_use and exchanged:
            raise _id_conflict(index)


async def share_credentials(
    admin: Admin, compiled: CompiledConnection, given: list[m.ConnectionCredentialInput]
) -> list[m.ConnectionCredentialInput] | None:
    """One credential id, one credential (docs/admin-api.md): each credential of `compiled`
    whose id another connection carries must be that credential — the same secret data, its
    token the one it was given or one it has had since — else 409 `conflict`. It is then taken
    exactly as the other connection has it, so both share one token. The credentials to build
    with, or None when none was in use."""
    in_use = carried(admin.all_connections())
    out = list(given)
    taken = False
    pairs = zip(compiled.model.credentials, compiled.schemes, strict=True)
    for index, (entry, scheme) in enumerate(pairs):
        found = in_use.get(scheme.credential_id)
        if found is None:
            continue
        other, position = found
        existing = other.model.credentials[position]
        held = material(existing, other.schemes[position])
        tokens = await admin.tokens.tokens_of(scheme.credential_id)
        if not same(held, material(entry, scheme), tokens):
            raise _id_conflict(index)
        out[index] = m.ConnectionCredentialInput(
            id=scheme.credential_id,
            auth_scheme_config=existing.auth_scheme_config,
            credential=existing.credential,
        )
        taken = True
    return out if taken else None


def _id_conflict(index: int) -> Conflict:
    return Conflict(
        "conflict",
        "another connection carries this credential id with other secret data; one id names "
        "one credential (give another id, or the same data)",
        fields=[FieldError(f"connection.credentials[{index}].id", "in use by another credential")],
    )


async def list_connections(request: web.Request) -> web.Response:
    admin = request.app[ADMIN]
    admin.check_organisation(request)
    items = [await current_json(admin, c, policy="none") for c in admin.all_connections()]
    return json_response({"items": items})


async def get_connection(request: web.Request) -> web.Response:
    """GetConnection: secret values left out, the rest shown."""
    admin = request.app[ADMIN]
    admin.check_organisation(request)
    connection = _find(admin, request.match_info["connection_id"])
    return json_response(await current_json(admin, connection, policy="none"))


async def delete_connection(request: web.Request) -> web.Response:
    """204; the connection stops serving and its stored tokens are deleted."""
    admin = request.app[ADMIN]
    admin.check_organisation(request)
    async with admin.templates.changing:
        connection_id = request.match_info["connection_id"]
        connection = admin.find(connection_id)
        if connection is None:
            # A stored row that does not open under store.key is served by no one (the store
            # logs its id) but can still be deleted, freeing its name.
            if await admin.store.delete_connection(connection_id):
                return web.Response(status=204, headers={"Cache-Control": "no-store"})
            raise NotFound("not_found", "no connection has this id")
        if connection.id in admin.file_connections:
            raise Conflict("conflict", "this connection is defined in proxy.yaml; remove it there")
        await admin.store.delete_connection(connection.id)
        await withdraw_connection(admin.templates, admin.tokens, connection)
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


async def openint_get_connection(request: web.Request) -> web.Response:
    """OpenInt getConnection: `include_secrets` (default false), `refresh_policy` (default auto)."""
    admin = request.app[ADMIN]
    include_secrets = _flag(request, "include_secrets")
    policy = request.query.get("refresh_policy", "auto")
    if policy not in REFRESH_POLICIES:
        raise ValidationFailed(
            "bad query parameter",
            [FieldError("refresh_policy", "must be one of none, force, auto")],
        )
    wanted = request.match_info["connection_id"]
    connection = _find(admin, wanted if admin.find(wanted) else strip_prefix(wanted))
    model = await current_model(admin, connection, policy)
    template_id = model.connection_template_id
    route = admin.templates.get(template_id) if template_id else None
    shown = connection_json(admin, connection, model)
    health = {
        scheme.credential_id: admin.tokens.health(scheme.credential_id)
        for scheme in connection.schemes
        if isinstance(scheme, OAuth2Scheme)
    }
    expand = {part for value in request.query.getall("expand", []) for part in value.split(",")}
    unknown = expand - {"connector", ""}
    if unknown:
        raise ValidationFailed(
            "bad query parameter", [FieldError("expand", "the one expansion is 'connector'")]
        )
    return json_response(
        openint_json(
            connection,
            model,
            include_secrets=include_secrets,
            created_at=shown["createdAt"],
            updated_at=shown["updatedAt"],
            now=admin.clock(),
            health=health,
            template=route.template.model if route is not None else None,
            expand_connector="connector" in expand,
        )
    )


def connection_json(
    admin: Admin, connection: CompiledConnection, model: m.Connection | None = None
) -> dict[str, Any]:
    """The seed `Connection` (000/001) of `connection` (or of its current `model`): secrets
    `""`, every field the seed requires present (`connection_body.py`)."""
    return connection_body(
        model or connection.model,
        route=connection.route or "/",
        organisation_id=admin.organisation_id,
        loaded_at=iso8601(admin.loaded_at),
    )


async def current_json(
    admin: Admin, connection: CompiledConnection, *, policy: RefreshPolicy
) -> dict[str, Any]:
    """The seed `Connection` of `current_model()`."""
    return connection_json(admin, connection, await current_model(admin, connection, policy))


async def current_model(
    admin: Admin, connection: CompiledConnection, policy: RefreshPolicy
) -> m.Connection:
    """The connection with each token credential showing the token in use now.

    The file's or the API's token goes stale once a provider rotates it; the store holds the
    newest. `policy` says whether to refresh first: `auto` when expired or within the skew
    (what the data plane would do), `force` always, `none` never. An `oauth2-code` or `oauth1`
    credential that was exchanged reads as the `oauth2-token` / `oauth1-token` it became.
    """
    model = connection.model
    credentials = list(model.credentials)
    for index, (entry, scheme) in enumerate(zip(credentials, connection.schemes, strict=True)):
        cred = entry.credential
        replaced: m.Credential | None = None
        if isinstance(cred, m.OAuth2TokenCredential | m.OAuth2CodeCredential):
            token = await _token(admin, scheme, policy)
            replaced = _with_token(cred, token) if token is not None else None
        elif isinstance(cred, m.OAuth1Credential) and isinstance(scheme, OAuth1ExchangedScheme):
            token = await _stored_oauth1_token(admin, scheme)
            replaced = _as_oauth1_token(cred, token) if token is not None else None
        if replaced is not None:
            credentials[index] = entry.model_copy(update={"credential": replaced})
    return model.model_copy(update={"credentials": credentials})


async def _token(admin: Admin, scheme: Scheme, policy: RefreshPolicy) -> TokenSet | None:
    if not isinstance(scheme, OAuth2Scheme):
        return None
    tokens = admin.tokens
    if policy == "none":
        return await _stored_token(admin, scheme)
    if policy == "force":
        stale = await _stored_token(admin, scheme) or await tokens.current(scheme)
        return await tokens.refresh(scheme, stale)
    return await tokens.current(scheme)


async def _stored_token(admin: Admin, scheme: OAuth2Scheme) -> TokenSet | None:
    """The newest token without a refresh: the store's when it descends from this credential."""
    record = await admin.store.get_token(scheme.credential_id)
    seed = admin.store.fingerprint(scheme.settings.seed_identity())
    if record is None or record.seed_fingerprint != seed:
        return scheme.settings.seed_token
    return record.token


async def _stored_oauth1_token(admin: Admin, scheme: OAuth1ExchangedScheme) -> TokenSet | None:
    """The token an `oauth1` credential of the file was exchanged for, once it was."""
    record = await admin.store.get_token(scheme.credential_id)
    seed = admin.store.fingerprint(scheme.seed_identity())
    if record is None or record.seed_fingerprint != seed or record.token is None:
        return None
    return record.token if record.token.token_type == OAUTH1_TOKEN_TYPE else None


def _with_token(
    credential: m.OAuth2TokenCredential | m.OAuth2CodeCredential, token: TokenSet
) -> m.OAuth2TokenCredential:
    if isinstance(credential, m.OAuth2CodeCredential):
        return m.OAuth2TokenCredential(
            type="oauth2-token",
            id=credential.id,
            organisation_id=credential.organisation_id,
            name=credential.name,
            expires_at=credential.expires_at,
            data=token_data(token),
        )
    # The token's expiry lives in `data.oauth2Token.expiresAt`; the credential's own
    # `expiresAt` is when it is deleted (seed 001) and stays what a person wrote.
    data = token_data(token, credential.data.oauth2_token.scopes)
    return credential.model_copy(update={"data": data})


def _as_oauth1_token(credential: m.OAuth1Credential, token: TokenSet) -> m.OAuth1TokenCredential:
    return m.OAuth1TokenCredential(
        type="oauth1-token",
        id=credential.id,
        organisation_id=credential.organisation_id,
        name=credential.name,
        expires_at=credential.expires_at,
        data=m.OAuth1TokenData.model_validate({"oauth1Token": oauth1_token_value(token)}),
    )


def _find(admin: Admin, connection_id: str) -> CompiledConnection:
    connection = admin.find(connection_id)
    if connection is None:
        raise NotFound("not_found", "no connection has this id")
    return connection


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise ValidationFailed("bad query parameter", [FieldError(name, "must be true or false")])


def _under(prefix: str, field: str) -> str:
    if not field:
        return prefix
    return prefix + field if field.startswith("[") else f"{prefix}.{field}"
