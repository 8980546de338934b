"""Request bodies of the management API (docs/admin-api.md), in the seeds' shapes.

Same conventions as `config.models`: camelCase on the wire, unknown keys are errors, secrets are
`SecretStr`. The connection itself reuses the config models, so an API-created connection is
checked exactly like one from the file.
"""

from __future__ import annotations

from ..config import models as m

NonEmpty = m.NonEmpty


class ConnectionCreateFields(m.Model):
    """`EnvSystemConnectionCreate.connection`: route and schemes come from the template."""

    name: NonEmpty
    base_url: NonEmpty | None = None
    credentials: list[m.ConnectionCredentialInput] = []


class ConnectionCreate(m.Model):
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
