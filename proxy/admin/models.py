"""Request bodies of the management API (docs/admin-api.md), in the seeds' shapes.

Same conventions as `config.models`: camelCase on the wire, unknown keys are errors, secrets are
`SecretStr`. The connection itself reuses the config models, so an API-created connection is
checked exactly like one from the file.
"""

from __future__ import annotations

from ..config import models as m

NonEmpty = m.NonEmpty


class ConnectionCreateFields(m.SeedModel):
    """`EnvSystemConnectionCreate.connection` (seed `ConnectionCreate`): route and schemes come
    from the template.

    The read-only fields of a `Connection` as GET returns it are accepted too, so a GET body
    with its secret fields filled in can be POSTed back: `id` is kept (409 when taken),
    `createdAt`/`updatedAt` are set by the proxy, `connectionTemplateId`, `route` and
    `externalId` must agree with the request.
    """

    name: NonEmpty
    # Go zero `""`: the template's baseUrl (seed 001); a host without a scheme gets https://.
    base_url: str | None = None
    credentials: list[m.ConnectionCredentialInput] = []
    id: NonEmpty | None = None
    created_at: str | None = None
    updated_at: str | None = None
    system_id: str | None = None
    connection_template_id: str | None = None
    route: str | None = None
    external_id: str | None = None
    forward_client_authorization: bool = False
    rewrite_response_urls: bool = True


class ConnectionCreate(m.SeedModel):
    """Versori's `EnvSystemConnectionCreate` (CreateConnection)."""

    connection_template_id: NonEmpty
    connection: ConnectionCreateFields
    external_id: NonEmpty | None = None


class OAuth2Init(m.SeedModel):
    """Versori's InitialiseOAuth2Connection body; each field overrides the template's.

    `connectionName` and `externalId` are ours: which connection the callback creates or updates
    (matched on `externalId`, else on the name).
    """

    authorize_url: NonEmpty | None = None
    client_id: NonEmpty | None = None
    scopes: list[NonEmpty] | None = None
    disable_offline_access: bool = False
    prompt: NonEmpty | None = None
    # Seed 002: a URL-encoded query string; when given it replaces the template's
    # `additionalAuthorizeParams`.
    additional_params: m.UrlParams | None = None
    connection_name: NonEmpty | None = None
    external_id: NonEmpty | None = None
